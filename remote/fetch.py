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

from box import fetch as boxfetch
from box.layout import DATA_COMPLETE
from common.errors import CloudError, UsageError

from . import fetch_on_box
from .connection import run
from .datasource import KaggleSource, S3Source, UrlSource
from .fetch_on_box import Fetched

PRESIGN_EXPIRES_S = 900


def fetch_url(
    conn,
    source: UrlSource,
    workdir: str,
    python: str,
    code_dir: str,
    quiet: bool = False,
    say: Callable[[str], None] = lambda s: None,
) -> Fetched:
    plan = url_plan(source, workdir, python, code_dir, quiet)
    return fetch_on_box.fetched(fetch_on_box.run_box(conn, python, plan, say))


def url_plan(source: UrlSource, workdir: str, python: str, code_dir: str, quiet: bool) -> dict:
    """box/fetch.py's plan for a URL (also kept in run.json: a --recover box's new instance fetches it again)."""
    plan = fetch_on_box.base_plan("url", workdir, python, code_dir, quiet)
    plan.update(
        key=source.key, source=str(source), url=source.url, sha256=source.sha256, kind=source.kind, name=source.name
    )
    return plan


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
    d = shlex.quote(f"{fetch_on_box.data_root(workdir)}/{key}")
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
    plan = fetch_on_box.base_plan("s3", workdir, python, code_dir, quiet)
    plan.update(
        key=source.key,
        source=str(source),
        name=str(source),
        objects={rel: {"etag": o["etag"], "size": o["size"]} for rel, o in listing.items()},
        urls=urls,
    )
    return fetch_on_box.fetched(fetch_on_box.run_box(conn, python, plan, say), len(urls))


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
    return fetch_on_box.run_box(
        conn,
        python,
        {"op": "ls", "data_root": fetch_on_box.data_root(workdir), "complete_marker": DATA_COMPLETE},
        lambda s: None,
    )["entries"]


def rm(conn, workdir: str, python: str, key: str) -> dict:
    return fetch_on_box.run_box(
        conn, python, {"op": "rm", "data_root": fetch_on_box.data_root(workdir), "key": key}, lambda s: None
    )
