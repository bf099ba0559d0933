"""`down` when one of AWS's Describe calls keeps failing: it deletes every kind
it can find, names the kind it could not check, and exits non-zero; a second
`down` once the call works again converges. The fault is injected with
botocore's own event hooks (a `before-call` handler answers in AWS's place), as
a plain moto server answers DescribePlacementGroups: 500, not implemented."""

from __future__ import annotations

import contextlib

import pytest
from botocore.awsrequest import AWSResponse
from pvkit import aws, ec2, launch, live, moto_ami, moto_module, name  # noqa: F401

from common.errors import CloudError
from provision import lifecycle


@contextlib.contextmanager
def failing(client, operation: str, code: str = "InternalError", status: int = 500):
    """Every call of ``operation`` on ``client`` answered with an AWS error, until the block ends."""
    calls = []

    def answer(**kwargs):
        calls.append(operation)
        body = {
            "Error": {"Code": code, "Message": f"{operation} is not implemented"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse("https://127.0.0.1/", status, {}, None), body

    event = f"before-call.ec2.{operation}"
    client.meta.events.register(event, answer)
    try:
        yield calls
    finally:
        client.meta.events.unregister(event, answer)


def test_down_deletes_every_kind_it_can_find_when_one_describe_keeps_failing(aws, ec2, launch, name):
    launch()
    assert {r.kind for r in live(ec2, name)} >= {
        "instance",
        "vpc",
        "subnet",
        "security-group",
        "internet-gateway",
        "key-pair",
        "volume",
    }
    said: list[str] = []
    with failing(ec2, "DescribePlacementGroups") as calls, pytest.raises(CloudError) as e:
        lifecycle.destroy(aws, name, said.append)
    assert calls, "the injected fault was never reached"
    message = str(e.value)
    assert "could not check placement-groups (InternalError)" in message
    assert f"down --name {name}" in message  # the command that continues
    assert "\n" not in message
    # Everything but the kind it could not see is gone, each deletion said.
    assert live(ec2, name) == []
    assert any(s.startswith("terminating ") for s in said) and any("deleted vpc" in s for s in said)
    # The box's state is kept until a `down` has checked every kind: the second one converges.
    assert lifecycle.destroy(aws, name, said.append) == []


def test_a_kind_that_cannot_be_deleted_does_not_stop_the_rest(aws, ec2, launch, name):
    launch()
    with failing(ec2, "DeleteKeyPair", code="UnauthorizedOperation", status=403), pytest.raises(CloudError) as e:
        lifecycle.destroy(aws, name, lambda s: None)
    assert f"could not delete key-pair trainbox-{name} (UnauthorizedOperation)" in str(e.value)
    assert "left behind: key-pair" in str(e.value)
    assert {r.kind for r in live(ec2, name)} == {"key-pair"}
    lifecycle.destroy(aws, name, lambda s: None)
    assert live(ec2, name) == []
