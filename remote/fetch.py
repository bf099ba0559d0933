"""The laptop side of ``--data`` from a URL, S3 or Kaggle (remote/kaggle.py): plan here, download there.

The box does the downloading (box/fetch.py, standard library only),
so data never crosses the laptop's uplink. What the box receives is one JSON
line on the stdin of one SSH exec: boxfetch's source and a plan. For S3 the
laptop lists the prefix with its own credentials and puts presigned GET URLs
(PRESIGN_EXPIRES_S) in the plan, only for objects the box does not already
hold with the same ETag. No credential, profile or token is ever written to
the box, and the exec carries no environment.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

import box
from box import fetch as boxfetch
from box.layout import DATA_COMPLETE, BoxLayout
from common.errors import CloudError, RemoteError, UsageError

from .connection import exec_channel, run
from .datasource import KaggleSource, S3Source, UrlSource

PRESIGN_EXPIRES_S = 900


@dataclass
class Fetched:
    """What the box holds for a source, after a fetch."""

    key: str
    path: str  # the folder to train on, on the box
    bytes: int
    files: int
    cached: bool  # it was all there already; nothing downloaded
    downloaded: int = 0
    fetched: list[str] = field(default_factory=list)  # S3: objects downloaded this time
    deleted: list[str] = field(default_factory=list)  # S3: objects removed this time
    urls_handed: int = 0  # S3: presigned URLs put in the plan; Kaggle: the signed URL
    test_path: str | None = None  # Kaggle's unlabelled test/ folder, for `model predict`
    how: str = "fetched by the box"


def data_root(workdir: str) -> str:
    return BoxLayout(workdir).data_root


def box_command(python: str) -> str:
    return f"{shlex.quote(python)} -u -c {shlex.quote(boxfetch.BOOTSTRAP)}"


def run_box(conn, python: str, plan: dict, say: Callable[[str], None]) -> dict:
    """Run boxfetch.main(plan) on the box, streaming its progress lines to say; its result, or an error."""
    payload = json.dumps({"script": box.source("fetch"), "plan": plan}) + "\n"
    channel = exec_channel(conn, box_command(python))
    result = error = None
    buf = b""
    try:
        channel.sendall(payload.encode())
        channel.shutdown_write()
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("@@result "):
                    result = json.loads(text[9:])
                elif text.startswith("@@error "):
                    error = json.loads(text[8:])
                elif text.strip():
                    say(text)
        status = channel.recv_exit_status()
        err = b""
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
    finally:
        channel.close()
    if error is not None:
        cls = UsageError if error.get("code") == 2 else RemoteError
        raise cls(error["message"])
    if status != 0 or result is None:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {status}"]
        raise RemoteError(f"fetching the data failed on the box: {tail[0]}", f"is {python} a Python 3 on the box?")
    return result


def _fetched(result: dict, urls: int = 0) -> Fetched:
    return Fetched(
        result["key"],
        result["path"],
        result["bytes"],
        result["files"],
        result["cached"],
        result.get("downloaded", 0),
        result.get("fetched", []),
        result.get("deleted", []),
        urls,
        result.get("test_path"),
    )


def _base_plan(op: str, workdir: str, python: str, code_dir: str, quiet: bool) -> dict:
    return {"op": op, "data_root": data_root(workdir), "python": python, "code_dir": code_dir, "quiet": quiet}


def fetch_url(
    conn,
    source: UrlSource,
    workdir: str,
    python: str,
    code_dir: str,
    quiet: bool = False,
    say: Callable[[str], None] = lambda s: None,
) -> Fetched:
    plan = _base_plan("url", workdir, python, code_dir, quiet)
    plan.update(
        key=source.key, source=str(source), url=source.url, sha256=source.sha256, kind=source.kind, name=source.name
    )
    return _fetched(run_box(conn, python, plan, say))


# ---------------------------------------------------------------- S3


def s3_client():
    """An S3 client with the laptop's credentials; AWS_ENDPOINT_URL (a moto server) is honoured."""
    from common.aws import Cloud

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Cloud(region, os.environ.get("AWS_ENDPOINT_URL") or None).client("s3")


def list_s3(client, source: S3Source) -> dict[str, dict]:
    """{relative path: {"etag", "size", "key"}} of every object under the prefix; CloudError if none or refused."""
    from common.aws import aws_errors

    found: dict[str, dict] = {}
    with aws_errors(f"list {source}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=source.bucket, Prefix=source.prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(source.prefix) :]
                if not rel or rel.endswith("/"):
                    continue  # folder markers
                if rel.startswith("/") or ".." in rel.split("/"):
                    raise UsageError(f"object {obj['Key']} has a path trainbox will not write", "rename it in S3")
                found[rel] = {"etag": obj["ETag"].strip('"'), "size": obj["Size"], "key": obj["Key"]}
    if not found:
        raise CloudError(f"{source} holds no objects", "check the bucket and prefix (`aws s3 ls " + str(source) + "`)")
    return found


def box_manifest(conn, workdir: str, key: str) -> dict[str, str]:
    """The box's {relative path: ETag} of a complete S3 entry, or {}."""
    d = shlex.quote(f"{data_root(workdir)}/{key}")
    text = run(
        conn,
        f"[ -e {d}/{boxfetch.ENTRY} ] && cat {d}/{boxfetch.MANIFEST} 2>/dev/null; true",
        "reading the box's S3 manifest",
    )
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def fetch_s3(
    conn,
    source: S3Source,
    workdir: str,
    python: str,
    code_dir: str,
    quiet: bool = False,
    say: Callable[[str], None] = lambda s: None,
    client=None,
) -> Fetched:
    from common.aws import aws_errors

    client = client or s3_client()
    listing = list_s3(client, source)
    have = box_manifest(conn, workdir, source.key)
    need = [rel for rel, o in listing.items() if have.get(rel) != o["etag"]]
    urls = {}
    with aws_errors(f"sign URLs for {source}"):
        for rel in need:
            urls[rel] = client.generate_presigned_url(
                "get_object", Params={"Bucket": source.bucket, "Key": listing[rel]["key"]}, ExpiresIn=PRESIGN_EXPIRES_S
            )
    if need:
        # Listing does not prove read access: check one object before the box tries them all.
        with aws_errors(f"read {source}"):
            client.head_object(Bucket=source.bucket, Key=listing[need[0]]["key"])
    plan = _base_plan("s3", workdir, python, code_dir, quiet)
    plan.update(
        key=source.key,
        source=str(source),
        name=str(source),
        objects={rel: {"etag": o["etag"], "size": o["size"]} for rel, o in listing.items()},
        urls=urls,
    )
    return _fetched(run_box(conn, python, plan, say), len(urls))


def fetch(
    conn,
    source,
    workdir: str,
    python: str,
    code_dir: str,
    quiet: bool = False,
    say: Callable[[str], None] = lambda s: None,
) -> Fetched:
    if isinstance(source, UrlSource):
        return fetch_url(conn, source, workdir, python, code_dir, quiet, say)
    if isinstance(source, S3Source):
        return fetch_s3(conn, source, workdir, python, code_dir, quiet, say)
    if isinstance(source, KaggleSource):
        from .kaggle import fetch_kaggle

        return fetch_kaggle(conn, source, workdir, python, code_dir, quiet, say)
    raise UsageError(f"{source} is not a URL, S3 or Kaggle source")


def ls(conn, workdir: str, python: str) -> list[dict]:
    return run_box(
        conn, python, {"op": "ls", "data_root": data_root(workdir), "complete_marker": DATA_COMPLETE}, lambda s: None
    )["entries"]


def rm(conn, workdir: str, python: str, key: str) -> dict:
    return run_box(conn, python, {"op": "rm", "data_root": data_root(workdir), "key": key}, lambda s: None)
