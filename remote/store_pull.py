"""A --recover box's run brought home from S3 when no instance of its group answers (issue 25).

The box's agent mirrors each run to ``<prefix>runs/<run>/`` in trainbox's bucket (the layout
is box/layout.py's, "A --recover box's runs in S3"; the bucket and prefix are in the box's
state, ``extra["store"]``, written by provision/boxstore.py). The laptop reads it with its own
credentials (the box never has them) and lays it out as a pull over SSH does
(remote/results.py): ``out/*`` at the top, the log as ``train.log``, the run folder's own
files by their names. Each file is written to a ``.part`` name and renamed, and a download
cut short removes its ``.part``: nothing half-written looks whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from box import layout as names
from common.errors import CloudError, RemoteError, TrainboxError, name_flag

from .results import LOCAL_LOG, PULLED, RUN_FILES, UnsafeEntry, _read_pulled, _write_pulled, safe_path


@dataclass(frozen=True)
class Pulled:
    files: list[str]
    where: str  # s3://bucket/prefix/runs/<run>/
    exit_code: int | None
    stopped: bool

    @property
    def label(self) -> str:
        """As JobState.label says it (the run is not running: no instance has it)."""
        if self.exit_code is None:
            return "stopped" if self.stopped else "interrupted (no instance has it now)"
        return "succeeded" if self.exit_code == 0 else f"failed (exit {self.exit_code})"


def store_of(box_name: str | None) -> tuple[Any, str, str] | None:
    """(an S3 client, bucket, prefix) of a --recover box, from its state; None for any other box."""
    if not box_name:
        return None
    from common import state
    from common.aws import Cloud

    try:
        box = state.load(box_name)
    except state.CorruptState:
        return None
    if box is None:
        return None
    store = (box.extra or {}).get("store")
    if not store or not (box.extra or {}).get("group"):
        return None
    return Cloud.of_box(box.region, box.endpoint_url).client("s3"), store["bucket"], store["prefix"]


def local_name(rel: str, out: str = names.RUN_OUT) -> str | None:
    """Where an object under ``<prefix>runs/<run>/`` lies at home, as results.results_rename maps the box's."""
    parts = rel.split("/")
    if parts[0] == names.STORE_RUN_OUT and len(parts) > 1:
        mapped = "/".join(parts[1:])
        return mapped if mapped != PULLED else None
    if parts == [names.STORE_RUN_SCRIPT]:
        return names.RUN_SCRIPT
    if len(parts) == 2 and parts[0] == names.STORE_RUN_FILES:
        if parts[1] == names.RUN_LOG:
            return LOCAL_LOG
        return parts[1] if parts[1] in RUN_FILES else None
    return None


def pull_run(s3, bucket: str, prefix: str, run_id: str, local_dir: Path) -> Pulled:
    """Every file of the run in S3 into local_dir; RemoteError when S3 has no such run."""
    from botocore.exceptions import BotoCoreError, ClientError

    under = f"{prefix}{names.STORE_RUNS}/{run_id}/"
    where = f"s3://{bucket}/{under}"
    try:
        objects = [
            o
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under)
            for o in page.get("Contents", [])
        ]
        if not objects:
            raise RemoteError(f"run {run_id} is not in {where}", "`remote runs` lists the runs started from here")
        local_dir.mkdir(parents=True, exist_ok=True)
        pulled = _read_pulled(local_dir)
        written: list[str] = []
        for o in objects:
            rel = o["Key"][len(under) :]
            name = local_name(rel)
            if name is None:
                continue
            try:
                target = safe_path(local_dir, name)
            except UnsafeEntry:
                raise RemoteError(
                    f"refused an unsafe key in {where} ({rel}); nothing was written outside {local_dir}"
                ) from None
            _download(s3, bucket, o["Key"], target, o["LastModified"].timestamp())
            written.append(name)
            st = target.stat()
            pulled[name] = [st.st_size, int(st.st_mtime)]
        _write_pulled(local_dir, pulled)
        state = _state(s3, bucket, under)
    except (ClientError, BotoCoreError) as e:
        raise CloudError(
            f"reading run {run_id} from {where} failed ({e})",
            f"run `remote pull {run_id}` again: what is home is whole",
        ) from e
    code = state.get("exit_code")
    return Pulled(written, where, code if isinstance(code, int) else None, bool(state.get("stopped")))


def _download(s3, bucket: str, key: str, target: Path, mtime: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with open(tmp, "wb") as f:
            while chunk := body.read(1 << 20):
                f.write(chunk)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, target)
    except BaseException:  # a cut download, a full disk, Ctrl-C: no partial file is left
        tmp.unlink(missing_ok=True)
        raise


def _state(s3, bucket: str, under: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        got = json.loads(s3.get_object(Bucket=bucket, Key=under + names.STORE_RUN_STATE)["Body"].read())
    except (ClientError, ValueError):  # no state yet, or a garbled one
        return {}
    return got if isinstance(got, dict) else {}


def pull_unfetched(box: str, run_ids: list[str], say: Callable[[str], None]) -> list[str]:
    """Before a --recover box's prefix is deleted: the given runs (not home, not pulled over SSH)
    from S3. Returns those still not home, each named in a warning with what to do."""
    from .records import load_record

    found = store_of(box)
    if found is None or not run_ids:
        return run_ids
    left = []
    for run_id in run_ids:
        rec = load_record(run_id)
        if rec is None:
            continue
        try:
            got = pull_into_record(found, rec, final=True)
        except TrainboxError as e:
            say(f"warning: run {run_id} was not brought home from S3 ({e}); `remote pull {run_id}{name_flag(box)}`")
            left.append(run_id)
            continue
        say(f"pulled run {run_id} ({len(got.files)} files) from {got.where} into {rec.local_dir}")
    return left


def pull_into_record(found: tuple, rec, final: bool):
    """Pull the run rec names from the store found (``store_of``) into its local folder, and
    record what S3 says of it. final: the box is going (`down`), so the run counts as pulled;
    else only once it is over (a run still going is resumed by the group's next instance)."""
    from .records import save_record

    s3, bucket, prefix = found
    got = pull_run(s3, bucket, prefix, rec.run_id, Path(rec.local_dir))
    rec.pulled = final or got.exit_code is not None or got.stopped
    rec.exit_code, rec.last_seen = got.exit_code, got.label
    save_record(rec)
    return got
