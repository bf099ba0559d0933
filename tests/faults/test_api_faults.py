"""AWS's API faults on the wire, into up, start, stop, image and down.

The fault is AWS's answer as botocore receives it: a `before-send` hook
answers in AWS's place, so the request never reaches the moto server on
127.0.0.1 (nothing happens there, as on EC2 when it throttles), and botocore's
retry machinery (common/aws.py: adaptive mode, 8 retries) sees exactly what
it would see from EC2: a throttle (RequestLimitExceeded, HTTP 503), no
capacity (InsufficientInstanceCapacity), an instance not yet visible right
after RunInstances (InvalidInstanceID.NotFound: EC2's eventual consistency),
or a read that times out."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from pvkit import live, name, opts  # noqa: F401

from common.aws import Cloud
from common.errors import CloudError
from provision import images, lifecycle
from provision.up import up

THROTTLE = ("RequestLimitExceeded", 503)
NO_CAPACITY = ("InsufficientInstanceCapacity", 500)
NOT_YET = ("InvalidInstanceID.NotFound", 400)
TIMEOUT = "timeout"


@dataclass
class Tally:
    calls: int = 0
    sends: int = 0
    faults: int = 0

    @property
    def retried(self) -> int:
        """Sends botocore made again (its retries), beyond one per call."""
        return self.sends - self.calls


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **kwargs):
        yield self._data


@contextlib.contextmanager
def on_the_wire(cloud, operation: str, fault, times: int | None = 1, after: str | None = None, service: str = "ec2"):
    """The first `times` sends of operation (None: every one) get fault instead of
    AWS's answer; with `after`, only sends made once operation `after` was called.
    Yields the tally: calls (of operation by trainbox), sends (botocore's retries
    included) and faults (sends that got the fault)."""
    client = cloud.client(service)
    tally = Tally()
    seen = {"after": after is None}

    def mark(model, **kwargs):
        if model.name == after:
            seen["after"] = True
        elif model.name == operation and seen["after"]:
            tally.calls += 1

    def send(request, **kwargs):
        if not seen["after"]:
            return None
        tally.sends += 1
        if times is not None and tally.faults >= times:
            return None  # on to moto: AWS answers again
        tally.faults += 1
        if fault == TIMEOUT:
            raise ReadTimeoutError(endpoint_url=request.url)
        code, status = fault
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>injected by the test</Message>"
            "</Error></Errors><RequestID>fault</RequestID></Response>"
        ).encode()
        return AWSResponse(request.url, status, {}, _Body(body))

    event = f"before-send.{client.meta.service_model.endpoint_prefix}.{operation}"
    client.meta.events.register_first(event, send)
    client.meta.events.register("before-call", mark)
    try:
        yield tally
    finally:
        client.meta.events.unregister(event, send)
        client.meta.events.unregister("before-call", mark)


@pytest.fixture
def aws(moto_endpoint, monkeypatch, tmp_path):
    """AWS played by the moto server (not moto in process: its hook would run the request anyway)."""
    monkeypatch.chdir(tmp_path)
    return Cloud("us-east-1", moto_endpoint)


@pytest.fixture
def ec2(aws):
    return aws.client("ec2")


@pytest.fixture
def launch(aws, ec2, name):
    """`up` in process against the moto server (no SSH wait); returns (box, messages)."""
    ami = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["Deep Learning AMI Ubuntu*"]}])
    ami_id = ami["Images"][0]["ImageId"]

    def _launch(**kw):
        said: list[str] = []
        box = up(aws, opts(**{"ami": ami_id, "name": name, **kw}), said.append)
        return box, said

    return _launch


def kinds(ec2, name: str) -> list[str]:
    return sorted(r.kind for r in live(ec2, name))


# ---------------------------------------------------------------- up


@pytest.mark.parametrize(
    "operation,fault",
    [
        ("RunInstances", THROTTLE),
        ("CreateVpc", THROTTLE),
        ("DescribeVpcs", TIMEOUT),
        ("AuthorizeSecurityGroupIngress", THROTTLE),
    ],
)
def test_up_rides_through_a_transient_fault_with_botocores_retries(aws, ec2, launch, name, operation, fault):
    with on_the_wire(aws, operation, fault, times=2) as t:
        box, said = launch()
    assert t.faults == 2 and t.retried == 2, f"two faults, each retried by botocore: {t}"
    assert kinds(ec2, name).count("instance") == 1 and kinds(ec2, name).count("vpc") == 1
    assert box.instance_id


def test_up_waits_out_an_instance_not_yet_visible_after_run_instances(aws, ec2, launch, name):
    """EC2's eventual consistency: right after RunInstances, Describe may not know the id yet."""
    with on_the_wire(aws, "DescribeInstances", NOT_YET, times=2, after="RunInstances") as t:
        box, said = launch()
    assert t.faults == 2 and box.instance_id
    assert kinds(ec2, name).count("instance") == 1


@pytest.mark.slow  # botocore retries each zone's HTTP 500 eight times first: about 35 s
def test_up_with_no_capacity_in_any_zone_is_one_line_and_the_second_up_converges(aws, ec2, launch, name):
    with on_the_wire(aws, "RunInstances", NO_CAPACITY, times=None) as t, pytest.raises(CloudError) as e:
        launch()
    assert t.calls >= 2, f"every zone was tried: {t}"
    assert "\n" not in str(e.value) and "capacity" in str(e.value).lower()
    assert "instance" not in kinds(ec2, name), "no instance was made"
    before = kinds(ec2, name)
    box, said = launch()  # capacity is back: the same command again
    after = kinds(ec2, name)
    assert after.count("instance") == 1 and [k for k in after if k != "instance" and k != "volume"] == before
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []


@pytest.mark.slow
def test_up_throttled_past_every_retry_fails_in_one_line_and_leaves_nothing_after_down(aws, ec2, launch, name):
    with on_the_wire(aws, "CreateSecurityGroup", THROTTLE, times=None) as t, pytest.raises(CloudError) as e:
        launch()
    assert (t.calls, t.sends) == (1, 9), f"botocore's adaptive mode: the first attempt, 8 retries, then the error: {t}"
    assert "AWS kept throttling the requests, even after retries" in str(e.value) and "\n" not in str(e.value)
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []


# ---------------------------------------------------------------- start, stop, image, down


@pytest.mark.parametrize(
    "operation,fault", [("StopInstances", THROTTLE), ("StartInstances", THROTTLE), ("DescribeInstances", TIMEOUT)]
)
def test_stop_and_start_ride_through_a_transient_fault(aws, ec2, launch, name, operation, fault):
    launch()
    with on_the_wire(aws, operation, fault, times=2) as t:
        stopped = lifecycle.stop(aws, name)
        started = lifecycle.start(aws, name)
    assert t.faults == 2 and t.retried == 2, t
    assert stopped.state == "stopped" and lifecycle.find_instance(aws, name).state == "running" and started


@pytest.mark.parametrize("operation,fault", [("CreateImage", THROTTLE), ("DescribeImages", TIMEOUT)])
def test_image_rides_through_a_transient_fault(aws, ec2, launch, name, operation, fault):
    launch()
    with on_the_wire(aws, operation, fault, times=2, after="StopInstances") as t:
        made = images.create(aws, name, lambda s: None, "spec1", prepare_box=lambda box: "cpu", poll_s=0)
    assert t.faults == 2 and t.retried == 2 and made.id.startswith("ami-"), t
    assert kinds(ec2, name).count("image") == 1, "one image: the retried CreateImage made no second"
    lifecycle.destroy(aws, name, lambda s: None)
    assert {r.kind for r in live(ec2, name)} == {"image", "snapshot"}, "down keeps the image (unless --images)"
    images.remove_images(aws, [made.id], lambda s: None)
    assert live(ec2, name) == []


@pytest.mark.parametrize(
    "operation,fault", [("TerminateInstances", THROTTLE), ("DeleteVpc", THROTTLE), ("DescribeSubnets", TIMEOUT)]
)
def test_down_rides_through_a_transient_fault_and_leaves_nothing(aws, ec2, launch, name, operation, fault):
    launch()
    with on_the_wire(aws, operation, fault, times=2) as t:
        lifecycle.destroy(aws, name, lambda s: None)
    assert t.faults == 2 and t.retried == 2, t
    assert live(ec2, name) == []
