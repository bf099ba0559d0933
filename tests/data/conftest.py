"""Fixtures for `--data` from a URL or S3: archives of a tiny image set, an
HTTP server on 127.0.0.1 that counts requests (and can drop a connection),
and a counting pass-through in front of the moto server.

NETWORK RULE: everything here listens on and connects to 127.0.0.1 only.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provision import procs
from testkit import synth_image_set

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the data


@pytest.fixture(scope="session")
def image_set(tmp_path_factory) -> Path:
    """A generated two-class set in the course's layout (train/, validation/), 32 px."""
    return synth_image_set(tmp_path_factory.mktemp("images") / "set")


def tar_gz(root: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(root, arcname=top)
    return buf.getvalue()


def zip_of(root: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, f"{top}/{p.relative_to(root)}")
    return buf.getvalue()


@pytest.fixture(scope="session")
def archives(image_set) -> dict[str, bytes]:
    """set.tar.gz and set.zip of image_set; flat.zip in Kaggle's flat layout; odd.tar.gz in neither layout."""
    jpgs = sorted(image_set.rglob("*.jpg"))
    cats = [p for p in jpgs if p.parent.name == "cats"]
    dogs = [p for p in jpgs if p.parent.name == "dogs"]
    flat = io.BytesIO()
    with zipfile.ZipFile(flat, "w") as z:
        for animal, files in (("cat", cats), ("dog", dogs)):
            for i, p in enumerate(files):
                z.write(p, f"train/{animal}.{i}.jpg")
    odd = io.BytesIO()
    with tarfile.open(fileobj=odd, mode="w:gz") as t:
        for name in ("readme.txt", "images.csv"):
            info = tarfile.TarInfo(f"stuff/{name}")
            info.size = 3
            t.addfile(info, io.BytesIO(b"abc"))
    return {"/set.tar.gz": tar_gz(image_set, "set"), "/set.zip": zip_of(image_set, "set"),
            "/flat.zip": flat.getvalue(), "/odd.tar.gz": odd.getvalue()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- HTTP server


@dataclass
class FileServer:
    """Serves files from memory with Range support; logs (path, Range header) of every request."""

    port: int
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing, once

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


@pytest.fixture
def file_server(archives):
    state = FileServer(0, dict(archives))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            rng = self.headers.get("Range")
            state.requests.append((path, rng))
            data = state.files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-", 1)[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = state.drop_after.pop(path, None)
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the link drops mid-body
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield state
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- a named box


@pytest.fixture
def box_flags(box) -> list[str]:
    """CLI flags for the `box` fixture: a box record whose workdir is box.workdir.

    (With --host the workdir would be ~/trainbox of the login user: outside the test's temp dir.)
    """
    from common import state

    state.save(state.BoxState(name="loop", region="us-east-1", instance_id="i-loop", instance_type="local",
                              ssh_host=box.host, ssh_user=box.user, key_path=box.identity, ssh_port=box.port,
                              workdir=box.workdir, python=box.python))
    return ["--name", "loop"]


# ---------------------------------------------------------------- S3


def environs_with(pids: list[int], needle: bytes) -> list[int]:
    found = []
    for pid in pids:
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@dataclass
class S3Proxy:
    """A pass-through to moto that counts presigned GETs and, during each, reads
    the environment of every process the box's sshd has started."""

    url: str
    secret: bytes
    sshd_pid: int
    presigned: list[str] = field(default_factory=list)
    box_pids_seen: set[int] = field(default_factory=set)
    leaks: list[int] = field(default_factory=list)


@pytest.fixture
def s3(moto_endpoint, ssh_host, monkeypatch):
    """A bucket on moto with a distinctive secret key; AWS_ENDPOINT_URL is the counting proxy."""
    import boto3

    secret = "tbx-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATRAINBOXTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    info = json.loads((ssh_host.dir / "server" / "server.json").read_text())
    upstream = moto_endpoint.split("//", 1)[1]
    proxy = S3Proxy("", secret.encode(), info["pid"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self, method):
            if "Signature=" in self.path:  # a presigned GET: the box is downloading now
                proxy.presigned.append(self.path.split("?", 1)[0])
                pids = procs.descendants(proxy.sshd_pid)
                proxy.box_pids_seen.update(pids)
                proxy.leaks += environs_with(pids, proxy.secret)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            c = http.client.HTTPConnection(upstream, timeout=30)
            c.request(method, self.path, body=body, headers={k: v for k, v in self.headers.items()})
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
            c.close()

        def do_GET(self):
            self._forward("GET")

        def do_HEAD(self):
            self._forward("HEAD")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    direct = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint)
    direct.create_bucket(Bucket="cats")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy, direct
    server.shutdown()
    server.server_close()


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
            hits.append(str(p))
    return hits
