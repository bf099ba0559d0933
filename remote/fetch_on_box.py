"""Running box/fetch.py on the box: one SSH exec of the box's Python, one
JSON line on its stdin (the script's source and the plan), progress lines
back, then one result line. remote/fetch.py (URL, S3) and remote/kaggle.py
plan; this module carries the plan there and the result back."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

import box
from box import fetch as boxfetch
from box.layout import BoxLayout
from common.errors import RemoteError, UsageError

from .connection import during, exec_channel


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
    with during(
        conn,
        "the data's fetch on the box",
        "run the same command again: the box fetches what it lacks (an unfinished fetch is never used)",
    ):
        return _run_box(conn, python, plan, say)


def _run_box(conn, python: str, plan: dict, say: Callable[[str], None]) -> dict:
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


def fetched(result: dict, urls: int = 0) -> Fetched:
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


def base_plan(op: str, workdir: str, python: str, code_dir: str, quiet: bool) -> dict:
    return {"op": op, "data_root": data_root(workdir), "python": python, "code_dir": code_dir, "quiet": quiet}
