"""Shared helpers and fixtures for provision's tests (imported by name: a second
conftest.py would shadow tests/conftest.py, which test_e2e imports from):
moto in process, a Cloud whose EC2 client can be made to fail at one call,
and a launched box.

NETWORK RULE: nothing here connects to an address moto hands out; `up` runs
with wait=False (no SSH wait) or in the sandbox (127.0.0.1).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from common.aws import Cloud
from provision.up import UpOptions

CIDR = "203.0.113.7/32"


def client_error(code: str, operation: str = "Op", message: str = "injected by the test"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class Faulty:
    """A boto3 client that raises at the given call of one method.

    ``after=True`` makes the real call first, then raises (the resource
    exists; the caller never hears of it: an interrupt at the worst moment).
    """

    def __init__(self, client, method: str, exc: BaseException, nth: int = 1, after: bool = False, times: int = 1):
        self._client, self._method, self._exc, self._nth, self._after, self._times = (
            client,
            method,
            exc,
            nth,
            after,
            times,
        )
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name != self._method:
            return attr

        def wrapped(*args, **kwargs):
            self.calls += 1
            failing = self._nth <= self.calls < self._nth + self._times
            if failing and not self._after:
                raise self._exc
            result = attr(*args, **kwargs)
            if failing:
                raise self._exc
            return result

        return wrapped


class Recorder:
    """A boto3 client that notes, in ``calls``, the name of every method called on it."""

    def __init__(self, client, calls: list[str]):
        self._client, self._calls = client, calls

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def recorded(*args, **kwargs):
            self._calls.append(name)
            return attr(*args, **kwargs)

        return recorded


@dataclass(frozen=True)
class WrappedCloud(Cloud):
    """A Cloud whose clients pass through ``wrap(service, client)``."""

    wrap: Callable = field(default=None, compare=False, hash=False)

    def client(self, service: str):
        c = super().client(service)
        return self.wrap(service, c) if self.wrap else c


_names = itertools.count(1)


@pytest.fixture(scope="module")
def moto_module():
    """One in-process moto per test module: a fresh moto backend costs about
    a second of CPU per region, so tests share one and keep apart by box name."""
    from moto import mock_aws

    mock = mock_aws()
    mock.start()
    yield mock  # mock.reset(): a fresh, empty AWS (a test of many cases, each alone)
    mock.stop()


@pytest.fixture
def aws(moto_module, monkeypatch, tmp_path):
    """The Cloud of moto in process; the working directory is a temp dir (no trainbox.toml)."""
    monkeypatch.chdir(tmp_path)
    return Cloud("us-east-1")


@pytest.fixture
def name() -> str:
    """A box name of this test's own (the module's moto is shared)."""
    return f"t{next(_names)}"


@pytest.fixture
def ec2(aws):
    return aws.client("ec2")


@pytest.fixture
def moto_ami(ec2) -> str:
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["Deep Learning AMI Ubuntu*"]}]
    )["Images"]
    return images[0]["ImageId"]


def opts(**kw) -> UpOptions:
    base = dict(ssh_cidr=CIDR, wait=False)
    base.update(kw)
    return UpOptions(**base)


def live(ec2, name: str | None = None) -> list:
    """Tagged resources that still exist (terminated instances are gone)."""
    from provision.inventory import tagged_resources

    return [
        r for r in tagged_resources(ec2, "us-east-1", name) if not (r.kind == "instance" and r.state == "terminated")
    ]


@pytest.fixture
def launch(aws, moto_ami, name):
    """Run `up` in process against moto (no SSH wait); returns (box, messages)."""
    from provision.up import up

    def _launch(cloud=None, **kw):
        said: list[str] = []
        kw.setdefault("ami", moto_ami)
        kw.setdefault("name", name)
        box = up(cloud or aws, opts(**kw), said.append)
        return box, said

    return _launch


# ---------------------------------------------------------------- the sandbox's box

SSH = shutil.which("ssh")


@pytest.fixture
def sandbox_box(moto_endpoint, tmp_path, monkeypatch):
    """A box `up` made in the sandbox: moto on 127.0.0.1, a real sshd on 127.0.0.1."""
    from provision import lifecycle
    from provision.up import up
    from sandbox import boxes

    monkeypatch.chdir(tmp_path)
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    box = up(cloud, UpOptions(), lambda s: None)
    yield box
    lifecycle.destroy(cloud, box.name, lambda s: None)


def run_ssh(box, *command: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run command on the box with trainbox's own ssh options (pinned host key)."""
    from common import paths
    from provision import sshcmd

    argv = sshcmd.ssh_argv(SSH, box, str(paths.known_hosts()), list(command), options=["-o", "BatchMode=yes"])
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)


@pytest.fixture
def group_box(moto_endpoint, tmp_path, monkeypatch):
    """A --recover box `up` made in the sandbox (the process box): (its cloud, its state)."""
    from provision import lifecycle
    from provision.up import up
    from sandbox import boxes

    monkeypatch.chdir(tmp_path)
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    box = up(cloud, UpOptions(spot=True, recover=True), lambda s: None)
    yield cloud, box
    lifecycle.destroy(cloud, box.name, lambda s: None)
