"""Fixtures for the box's environment: a throwaway login user per test behind
a real sshd on 127.0.0.1, and a package index on 127.0.0.1 serving small
wheels written by the test (nothing is downloaded: the bootstrap's install
path runs for real, offline).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import pwd
import re
import secrets
import subprocess
import sysconfig
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from remote import setup

USER_PREFIX = "tbx"


# ---------------------------------------------------------------- wheels


def make_wheel(d: Path, dist: str, version: str, files: dict[str, str | bytes], extras: tuple[str, ...] = ()) -> Path:
    """A valid py3-none-any wheel of ``files``, written directly as a zip."""
    name = re.sub(r"[-_.]+", "_", dist)
    info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n" + "".join(
        f"Provides-Extra: {e}\n" for e in extras
    )
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: trainbox-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in contents.items():
        data = text if isinstance(text, bytes) else text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    out = d / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, text in contents.items():
            z.writestr(path, text)
    return out


FAKE_TF = (
    'import os\n__version__ = "{v}"\n'
    "class config:\n"
    "    @staticmethod\n"
    "    def list_physical_devices(kind=None):\n"
    "        return []\n"
)


def fake_wheels(d: Path, laptop_site: bool = False) -> None:
    """One wheel per pin of remote.setup. laptop_site: no modules, but a .pth
    that puts this laptop's site-packages (real TensorFlow, Keras, ...) on the
    box env's path, so real training works with nothing downloaded."""
    d.mkdir(parents=True, exist_ok=True)
    v = setup.TF_VERSION
    if laptop_site:
        site = sysconfig.get_paths()["purelib"]
        make_wheel(d, "tensorflow-cpu", v, {"trainbox_laptop_site.pth": site + "\n"})
    else:
        make_wheel(d, "tensorflow-cpu", v, {"tensorflow/__init__.py": FAKE_TF.format(v=v)})
        make_wheel(d, "tensorflow", v, {"tensorflow/__init__.py": FAKE_TF.format(v=v)}, extras=("and-cuda",))
    jax_files = (
        {}
        if laptop_site
        else {"jax/__init__.py": f'__version__ = "{setup.JAX_VERSION}"\ndef devices():\n    return []\n'}
    )
    make_wheel(d, "jax", setup.JAX_VERSION, jax_files, extras=("cuda12",))
    keras_files = {} if laptop_site else {"keras/__init__.py": f'__version__ = "{setup.KERAS_VERSION}"\n'}
    make_wheel(d, "keras", setup.KERAS_VERSION, keras_files)
    for req in setup.MODEL_REQUIREMENTS + (setup.JUPYTER,):
        dist, low = re.split(r">=|==", req)
        files = {} if laptop_site else {f"fake_{dist}/__init__.py": ""}
        make_wheel(d, dist, low + ".0" if low.count(".") < 2 else low, files)


def uv_wheel(d: Path) -> Path:
    """uv's wheel, made from the binary that the `uv` package of the dev extra
    installed on this machine: the real uv, with nothing downloaded."""
    import uv

    binary = Path(uv.find_uv_bin())
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    return make_wheel(d, "uv", version, {f"uv-{version}.data/scripts/uv": binary.read_bytes()})


# ---------------------------------------------------------------- a package index on 127.0.0.1


@dataclass
class Index:
    """A PEP 503 simple index over a directory; a gated file is held back until released."""

    dir: Path
    url: str = ""
    gates: dict = field(default_factory=dict)
    served: list = field(default_factory=list)
    requested: list = field(default_factory=list)

    def gate(self, filename: str) -> threading.Event:
        self.gates[filename] = threading.Event()
        return self.gates[filename]

    def release_all(self) -> None:
        for event in self.gates.values():
            event.set()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def serve_index(d: Path) -> tuple[Index, http.server.ThreadingHTTPServer]:
    index = Index(d)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/html") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):  # uv asks before it downloads; not a download (neither requested nor served)
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "files" and (index.dir / parts[1]).is_file():
                return self._send(200, (index.dir / parts[1]).read_bytes(), "application/octet-stream")
            self._send(404, b"not found")

        def do_GET(self):
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                files = [
                    f.name
                    for f in sorted(index.dir.glob("*.whl"))
                    if _normal(f.name.split("-")[0]) == _normal(parts[1])
                ]
                if not files:
                    return self._send(404, b"not found")
                links = "".join(f'<a href="/files/{f}">{f}</a>\n' for f in files)
                return self._send(200, f"<html><body>\n{links}</body></html>".encode())
            if len(parts) == 2 and parts[0] == "files" and (index.dir / parts[1]).is_file():
                index.requested.append(parts[1])
                gate = index.gates.get(parts[1])
                if gate is not None:
                    gate.wait(120)
                index.served.append(parts[1])
                return self._send(200, (index.dir / parts[1]).read_bytes(), "application/octet-stream")
            self._send(404, b"not found")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return index, server


@pytest.fixture
def index(tmp_path) -> Index:
    """Fake wheels of every pin (fake modules: fast to import), served on 127.0.0.1."""
    fake_wheels(tmp_path / "wheels")
    idx, server = serve_index(tmp_path / "wheels")
    yield idx
    idx.release_all()
    server.shutdown()


@pytest.fixture
def uv_index(tmp_path) -> Index:
    """The fake wheels of every pin and the real uv's wheel, served on 127.0.0.1."""
    fake_wheels(tmp_path / "uv-wheels")
    uv_wheel(tmp_path / "uv-wheels")
    idx, server = serve_index(tmp_path / "uv-wheels")
    yield idx
    server.shutdown()


@pytest.fixture
def laptop_index(tmp_path) -> Index:
    """Wheels that make the laptop's own TensorFlow and Keras importable in the box env."""
    fake_wheels(tmp_path / "laptop-wheels", laptop_site=True)
    idx, server = serve_index(tmp_path / "laptop-wheels")
    yield idx
    server.shutdown()


# ---------------------------------------------------------------- throwaway login users behind sshd


@dataclass(frozen=True)
class BoxUser:
    name: str
    home: Path
    port: int
    key: Path

    @property
    def host(self) -> str:
        return f"{self.name}@127.0.0.1:{self.port}"

    def target(self, workdir: str = "trainbox"):
        from remote.target import Target

        return Target("127.0.0.1", self.port, self.name, str(self.key), workdir)

    def remote(self, *args: str) -> list[str]:
        """`remote` CLI arguments for this user's box."""
        return ["remote", *args, "--host", self.host, "--identity", str(self.key)]


@pytest.fixture(scope="session")
def users_sshd():
    """An sshd on 127.0.0.1 that admits the key for any user named tbx*."""
    from common import paths
    from sandbox import sshd

    # Users other than root read the authorized keys: a world-traversable dir.
    d = Path(tempfile.mkdtemp(prefix="trainbox-users-sshd-"))
    d.chmod(0o755)
    private, public = sshd.new_private_key()
    key = d / "client_key"
    paths.write_private(key, private)
    server = sshd.start(d / "server", [public], users=[f"{USER_PREFIX}*"])
    (d / "server").chmod(0o755)
    (d / "server" / "authorized_keys").chmod(0o644)
    yield server, key
    sshd.stop(d / "server")


@pytest.fixture
def box_user(users_sshd, trainbox_home) -> BoxUser:
    """A fresh login user (cold home, cold caches), removed afterwards."""
    from common import hostkeys

    server, key = users_sshd
    name = f"{USER_PREFIX}{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    subprocess.run(["usermod", "-p", "*", name], check=True)
    hostkeys.pin("127.0.0.1", server.port, [server.host_key])
    user = BoxUser(name, Path(pwd.getpwnam(name).pw_dir), server.port, key)
    yield user
    kill_user_processes(user.home.stat().st_uid)
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def kill_user_processes(uid: int) -> None:
    """SIGKILL, by pid, each process of this test's own throwaway user."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), 9)
            except (OSError, ProcessLookupError):
                pass
