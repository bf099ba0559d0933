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

from common import procs
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
    return {
        "/set.tar.gz": tar_gz(image_set, "set"),
        "/set.zip": zip_of(image_set, "set"),
        "/flat.zip": flat.getvalue(),
        "/odd.tar.gz": odd.getvalue(),
    }


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- HTTP server


@dataclass
class FileServer:
    """Serves files from memory with Range support; logs (path, Range header) of every request."""

    port: int
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (full path with query, headers)
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
            state.headers.append((self.path, dict(self.headers.items())))
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

    state.save(
        state.BoxState(
            name="loop",
            region="us-east-1",
            instance_id="i-loop",
            instance_type="local",
            ssh_host=box.host,
            ssh_user=box.user,
            key_path=box.identity,
            ssh_port=box.port,
            workdir=box.workdir,
            python=box.python,
        )
    )
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


# ---------------------------------------------------------------- Kaggle


@pytest.fixture(scope="session")
def kaggle_archives(image_set) -> dict[str, bytes]:
    """Kaggle's shapes: a competition's whole download (a zip of train.zip, test.zip and a CSV, as
    dogs-vs-cats-redux-kernels-edition is), its train.zip alone, and a dataset's zip (flat train/ and test/)."""
    jpgs = sorted(image_set.rglob("*.jpg"))
    flat = {
        f"train/{animal}.{i}.jpg": p.read_bytes()
        for animal in ("cat", "dog")
        for i, p in enumerate(q for q in jpgs if q.parent.name == animal + "s")
    }
    test = {f"test/{i + 1}.jpg": p.read_bytes() for i, p in enumerate(jpgs[:7])}

    def zipped(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
        return buf.getvalue()

    train_zip, test_zip = zipped(flat), zipped(test)
    whole = zipped({"train.zip": train_zip, "test.zip": test_zip, "sample_submission.csv": b"id,label\n1,0.5\n"})
    return {"whole": whole, "train.zip": train_zip, "dataset": zipped({**flat, **test})}


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(entry.name))
    return out


@dataclass
class BoxWatch:
    """Samples every process below the box's sshd (each SSH session's shell, tar, boxfetch, organize)
    while the test runs, and records any whose environment or command line holds a needle."""

    sshd_pid: int
    needles: list[bytes]
    seen: set[int] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)  # the command lines sampled
    leaks: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        children = _children()
        todo, found = [self.sshd_pid], []
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        for pid in found:
            for part in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{part}").read_bytes()
                except OSError:
                    continue
                self.seen.add(pid)
                if part == "cmdline":
                    self.commands.add(data.replace(b"\0", b" ").decode(errors="replace")[:300])
                if any(n in data for n in self.needles):
                    self.leaks.append(f"pid {pid} {part}: {data[:200]!r}")

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.sample()


@dataclass
class KaggleStandIn:
    """Kaggle's download RPCs (kagglesdk's POST /v1/<service>/<method>) on 127.0.0.1.

    Each request must carry the user's credential (basic auth with the key, or
    a Bearer token); the answer is a 302 to ``storage`` (a FileServer, with a
    signature in the query) or, with ``redirect = False``, the file itself.
    """

    url: str
    storage: FileServer
    username: str
    key: str
    token: str
    watch: BoxWatch
    competitions: dict[str, dict] = field(default_factory=dict)  # name -> {"all", "files", "rules"}
    datasets: dict[str, dict] = field(default_factory=dict)  # owner/slug -> {"all"}
    redirect: bool = True
    location: str | None = None  # a Location to answer with instead of the storage URL
    calls: list[tuple[str, dict, bool]] = field(default_factory=list)  # (method, body, credential ok)

    @property
    def basic(self) -> str:
        import base64

        return base64.b64encode(f"{self.username}:{self.key}".encode()).decode()

    @property
    def needles(self) -> list[bytes]:
        return [self.key.encode(), self.token.encode(), self.basic.encode()]

    def env(self, laptop_home: Path, how: str = "key") -> dict[str, str]:
        env = {"TRAINBOX_KAGGLE_API": self.url, "HOME": str(laptop_home)}
        if how == "key":
            env.update(KAGGLE_USERNAME=self.username, KAGGLE_KEY=self.key)
        return env


@pytest.fixture
def kaggle_api(file_server, kaggle_archives, ssh_host, monkeypatch):
    for var in [v for v in os.environ if v.startswith("KAGGLE_")]:
        monkeypatch.delenv(var)
    info = json.loads((ssh_host.dir / "server" / "server.json").read_text())
    suffix = os.urandom(8).hex()
    key, token = f"tbxkey{suffix}", f"KGAT_tbxtoken{suffix}"
    watch = BoxWatch(info["pid"], [])
    api = KaggleStandIn("", file_server, "student", key, token, watch)
    watch.needles = api.needles
    api.competitions["dogs-vs-cats-redux-kernels-edition"] = {
        "all": kaggle_archives["whole"],
        "files": {"train.zip": kaggle_archives["train.zip"]},
        "rules": True,
    }
    api.competitions["closed-rules"] = {"all": kaggle_archives["whole"], "files": {}, "rules": False}
    api.datasets["student/flat-cats"] = {"all": kaggle_archives["dataset"]}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, code: int, body: bytes, ctype: str = "application/json", headers: dict | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def error(self, code: int, message: str):
            self.answer(code, json.dumps({"code": code, "message": message}).encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            method = self.path.removeprefix("/v1/")
            ok = self.headers.get("Authorization") in (f"Basic {api.basic}", f"Bearer {api.token}")
            api.calls.append((method, body, ok))
            if not ok:
                return self.error(401, "Unauthenticated")
            if method.startswith("competitions.CompetitionApiService/DownloadDataFile"):
                comp = api.competitions.get(body.get("competitionName", ""))
                if comp is None:
                    return self.error(404, "Competition not found")
                if not comp["rules"]:
                    return self.error(
                        403, "You must accept this competition's rules before you'll be able to download files."
                    )
                if method.endswith("DownloadDataFiles"):
                    data, name = comp["all"], body["competitionName"] + ".zip"
                elif body.get("fileName") in comp["files"]:
                    data, name = comp["files"][body["fileName"]], body["fileName"]
                else:
                    return self.error(404, "File not found")
            elif method == "datasets.DatasetApiService/DownloadDataset":
                ds = api.datasets.get(f"{body.get('ownerSlug')}/{body.get('datasetSlug')}")
                if ds is None:
                    return self.error(404, "Dataset not found")
                data, name = ds["all"], body["datasetSlug"] + ".zip"
            else:
                return self.error(404, f"no such method {method}")
            if not api.redirect:
                return self.answer(
                    200, data, "application/zip", {"Content-Disposition": f"attachment; filename={name}"}
                )
            path = f"/kaggle-data/{os.urandom(4).hex()}/{name}"
            api.storage.files[path] = data
            signed = api.location or api.storage.url(path) + f"?Expires=1999999999&Signature={os.urandom(16).hex()}"
            self.answer(302, b"", "text/plain", {"Location": signed})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    sampler = threading.Thread(target=watch.run, daemon=True)
    sampler.start()
    yield api
    watch.stop.set()
    sampler.join(timeout=10)
    server.shutdown()
    server.server_close()
