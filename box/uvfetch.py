"""uv's newest wheel for this machine, straight from the index: the bootstrap's fast path.

Standard library only, run by the box's own python3 before any environment
exists (templates/bootstrap.sh.j2 renders this file into itself and runs it
as ``python3 - TOOLS [--index-url URL] [--find-links LOC]... [--no-index]``):
no pip start-up, no resolver. The wheel's uv binary is inflated as it
arrives (each member's size is in its local header), so there is no wait for
the whole wheel; its sha256 is checked against the index's before uv is put
in place at ``TOOLS/bin/uv``. A wheel ``pip download`` left in ``TOOLS/dl``
is used instead of the network. Exit 0 and one line ``uv: NAME from URL``,
or a non-zero exit with the reason.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import html.parser
import io
import json
import os
import platform
import re
import struct
import sys
import urllib.parse as up
import urllib.request as ur
import zipfile
import zlib

ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())


class Links(html.parser.HTMLParser):
    """The files of a PEP 503 HTML page: [(filename, absolute url)], yanked ones left out."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base
        self.files: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if tag == "a" and d.get("href") and "data-yanked" not in d:
            u = up.urljoin(self.base, d["href"])
            self.files.append((up.urldefrag(u)[0].rsplit("/", 1)[-1], u))


def request(url: str, headers: dict | None = None) -> ur.Request:
    """A request for url; user:password@ in it becomes basic auth (urllib would take it for the host)."""
    p = up.urlsplit(url)
    headers = dict(headers or {})
    if "@" in p.netloc:
        import base64

        user, _, host = p.netloc.rpartition("@")
        headers["Authorization"] = "Basic " + base64.b64encode(up.unquote(user).encode()).decode()
        url = up.urlunsplit(p._replace(netloc=host))
    return ur.Request(url, headers=headers)


def shown(url: str) -> str:
    """url as it may be printed: credentials replaced by ***."""
    p = up.urlsplit(url)
    return up.urlunsplit(p._replace(netloc="***@" + p.netloc.rpartition("@")[2])) if "@" in p.netloc else url


def page(url: str) -> list[tuple[str, str]]:
    """PEP 691 JSON or PEP 503 HTML: [(filename, url#sha256=...)]."""
    headers = {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1", "Accept-Encoding": "gzip"}
    with ur.urlopen(
        request(url, headers), timeout=30
    ) as r:  # gzip if the index will: uv's page on PyPI is 2.6 MB of JSON
        body, base, kind = r.read(), r.geturl(), r.headers.get("Content-Type", "")
        body = gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" else body
    if "json" in kind:
        return [
            (f["filename"], up.urljoin(base, f["url"]) + "#sha256=" + f.get("hashes", {}).get("sha256", ""))
            for f in json.loads(body)["files"]
            if not f.get("yanked")
        ]
    p = Links(base)
    p.feed(body.decode("utf-8", "replace"))
    return p.files


def version(name: str, arch: str = ARCH) -> tuple[int, ...] | None:
    """uv's wheels are py3-none-<platform>; None: not for this machine, or a pre-release."""
    m = re.fullmatch(r"uv-(\d+(?:\.\d+)*)-py3-none-([\w.]+)\.whl", name)
    if m is None or not any(
        t == "any" or (t.startswith("manylinux") and t.endswith("_" + arch)) for t in m.group(2).split(".")
    ):
        return None
    return tuple(map(int, m.group(1).split(".")))


def candidates(tools: str, find_links: list[str], index_url: str, no_index: bool) -> tuple[list, list[str]]:
    """Every uv wheel on offer ([(name, url)]) and the locations that could not be read."""
    files = [
        (os.path.basename(f), "file://" + os.path.abspath(f)) for f in glob.glob(os.path.join(tools, "dl", "uv-*.whl"))
    ]
    errors = []
    for loc in (
        [] if files else find_links + ([] if no_index else [index_url.rstrip("/") + "/uv/"])
    ):  # none if pip download put one there
        try:
            files += (
                [(n, "file://" + os.path.abspath(os.path.join(loc, n))) for n in os.listdir(loc)]
                if os.path.isdir(loc)
                else page(loc)
            )
        except OSError as e:  # like pip: an unreachable location is skipped
            errors.append(f"{shown(loc)}: {e}")
    return files, errors


class Reader:
    """The wheel's bytes, read from the network as needed; all of them kept, for the hash."""

    def __init__(self, stream):
        self.stream, self.data, self.pos = stream, bytearray(), 0

    def need(self, n: int) -> bytes:
        while len(self.data) < self.pos + n:
            chunk = self.stream.read(1 << 16)
            if not chunk:
                raise EOFError("the wheel ended early")
            self.data.extend(chunk)
        self.pos += n
        return bytes(self.data[self.pos - n : self.pos])

    def rest(self) -> bytes:
        self.data.extend(self.stream.read())
        return bytes(self.data)


def extract_streaming(rd: Reader, out) -> None:
    """Write the wheel's uv binary to out as its bytes arrive; ValueError/EOFError if the wheel is not streamable."""
    while True:
        sig, flags, method, size, nlen, elen = struct.unpack("<4s2xHH8xI4xHH", rd.need(30))
        if sig != b"PK\x03\x04" or flags & 8 or method not in (0, 8):
            raise ValueError("not streamable")
        member = rd.need(nlen).decode()
        rd.need(elen)
        if not member.endswith(".data/scripts/uv"):
            rd.need(size)
            continue
        z = zlib.decompressobj(-15) if method == 8 else None
        for at in range(0, size, 1 << 16):
            chunk = rd.need(min(1 << 16, size - at))
            out.write(z.decompress(chunk) if z else chunk)
        if z and not z.eof:
            raise ValueError("truncated")
        out.write(z.flush() if z else b"")
        return


def install(url: str, tools: str) -> None:
    """Fetch the wheel at url (``#sha256=`` checked when given) and put its uv at TOOLS/bin/uv."""
    url, frag = up.urldefrag(url)
    tmp = os.path.join(tools, "bin", "uv.tmp")
    with ur.urlopen(request(url), timeout=60) as r, open(tmp, "wb") as out:
        rd = Reader(r)
        try:
            extract_streaming(rd, out)
        except (ValueError, EOFError, zlib.error):  # else: the whole wheel, then unzip (which checks the CRC)
            out.seek(0)
            out.truncate()
            with zipfile.ZipFile(io.BytesIO(rd.rest())) as zf:
                out.write(zf.read(next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))))
        data = rd.rest()  # the rest of the wheel, for its hash
    want = frag.partition("sha256=")[2]
    if want and hashlib.sha256(data).hexdigest() != want:
        os.remove(tmp)
        sys.exit("sha256 mismatch: " + shown(url))
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(tools, "bin", "uv"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tools")
    # The index comes in the environment, as pip's does (never on a command line: it may carry credentials).
    ap.add_argument("--index-url", default=os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/")
    ap.add_argument("--find-links", action="append", default=[])
    ap.add_argument("--no-index", action="store_true")
    a = ap.parse_args(argv)
    files, errors = candidates(a.tools, a.find_links, a.index_url, a.no_index)
    wheels = [f for f in files if version(f[0])]
    if not wheels:
        sys.exit("no uv wheel for this machine; " + "; ".join(errors))
    name, url = max(wheels, key=lambda f: version(f[0]) or ())
    install(url, a.tools)
    print("uv: " + name + " from " + shown(up.urldefrag(url)[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
