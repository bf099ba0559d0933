"""Shared fixtures: a private TRAINBOX_HOME per test, a real OpenSSH sshd and
a moto server on 127.0.0.1 (each started once per session).

NETWORK RULE: tests connect to 127.0.0.1 only. moto hands out public IPs for
instances: they are fake, and nothing here ever connects to them.
"""

from __future__ import annotations

import getpass
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# moto lacks EC2 placement groups (a multi-node box's): the tests' moto, in
# process and as a server, answers them as the sandbox's does.
from sandbox import motoplace  # noqa: E402

motoplace.install()


def _machine_cache() -> Path:
    """This machine's cache as trainbox finds it outside the tests (common.paths.cache_dir's rule)."""
    if os.environ.get("TRAINBOX_CACHE"):
        return Path(os.environ["TRAINBOX_CACHE"]).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("trainbox")).resolve()


MACHINE_CACHE = _machine_cache()


@pytest.fixture(autouse=True)
def trainbox_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own TRAINBOX_HOME and TRAINBOX_CACHE, and fake AWS
    credentials. The cache's rootfs/ is the machine's (the container box's
    root file system: minutes to build, keyed by its recipe, never rebuilt for
    a test); nothing else a test caches (Kaggle's downloads) reaches it."""
    home = tmp_path / "trainbox-home"
    home.mkdir()
    monkeypatch.setenv("TRAINBOX_HOME", str(home))
    cache = tmp_path / "trainbox-cache"
    cache.mkdir()
    (MACHINE_CACHE / "rootfs").mkdir(parents=True, exist_ok=True)
    (cache / "rootfs").symlink_to(MACHINE_CACHE / "rootfs", target_is_directory=True)
    monkeypatch.setenv("TRAINBOX_CACHE", str(cache))
    monkeypatch.setenv("TRAINBOX_MACHINE_CACHE", str(MACHINE_CACHE))
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # The sandbox's process box unless a test asks for the container box
    # (tests/sandbox_box/ do, with `--sandbox-box container`).
    monkeypatch.setenv("TRAINBOX_SANDBOX_BOX", "process")
    # Functions with caches keyed on the environment must start clean.
    from common import aws
    from provision import config

    aws._client.cache_clear()
    config._toml.cache_clear()
    return home


# ---------------------------------------------------------------- sshd


@dataclass(frozen=True)
class SshHost:
    """A real sshd on 127.0.0.1 that admits ``key`` for ``user``."""

    port: int
    user: str
    key: Path
    host_key: str
    dir: Path

    @property
    def spec(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def ssh_host(tmp_path_factory) -> SshHost:
    from common import paths
    from sandbox import sshd

    d = tmp_path_factory.mktemp("sshd")
    private, public = sshd.new_private_key()
    key = d / "client_key"
    paths.write_private(key, private)
    server = sshd.start(d / "server", [public])
    yield SshHost(server.port, getpass.getuser(), key, server.host_key, d)
    sshd.stop(d / "server")


@pytest.fixture
def pinned(ssh_host, trainbox_home) -> SshHost:
    """ssh_host with its host key pinned in this test's TRAINBOX_HOME."""
    from common import hostkeys

    hostkeys.pin("127.0.0.1", ssh_host.port, [ssh_host.host_key])
    return ssh_host


@pytest.fixture
def box(pinned, tmp_path):
    """A remote.Target on the test sshd with its own working directory."""
    from remote.target import Target

    workdir = tmp_path / "box"
    return Target("127.0.0.1", pinned.port, pinned.user, str(pinned.key), str(workdir), python=sys.executable)


@pytest.fixture
def conn(box):
    from remote.connection import connect

    c = connect(box, timeout=10)
    yield c
    c.close()


# ---------------------------------------------------------------- moto server


@pytest.fixture(scope="session")
def moto_server() -> str:
    """A moto server on 127.0.0.1 for tests that run the real CLI in a subprocess."""
    from moto.server import ThreadedMotoServer

    from common.procs import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server, monkeypatch) -> str:
    """The session moto server, emptied for this test and named in AWS_ENDPOINT_URL."""
    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


# ---------------------------------------------------------------- the CLIs

from testkit import Result, processes_mentioning, run_cli, tagged  # noqa: E402,F401 (re-exported)


@pytest.fixture
def cli():
    return run_cli
