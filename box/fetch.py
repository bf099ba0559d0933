"""The box side of ``--data`` from a URL, S3 or Kaggle: standard library only.

This file is never imported on the box: the laptop (remote/fetch.py) sends
its source and a JSON plan as one line on the stdin of a single SSH exec,
``python3 -c BOOTSTRAP``, which runs ``main(plan)``. Nothing else reaches the
box: no credential, no profile, no environment variable. S3 objects arrive
as presigned GET URLs that expire within minutes, a Kaggle file as the
signed URL Kaggle redirected the laptop to (or as an archive the laptop
pushed into ``<data>/.incoming/<key>/``, when Kaggle gave no URL).

The cache, ``<data>/<key>/``: an entry exists only when it is complete, with
``.trainbox-entry.json`` (source, data_dir, bytes, files) written inside
before the entry is renamed into place. Work happens in ``<data>/.tmp/``
(removed on any failure); a URL's download grows in ``<data>/.partial/``, so
a dropped connection resumes with an HTTP Range request.

stdout, one line each: progress (bytes, rate, ETA) unless quiet; the last
line is ``@@result JSON`` or ``@@error JSON`` ({"code": 2|3, "message"}).

Why ~470 lines: it travels as one file (its source is the payload), so the
download with resume, the parallel S3 fetch, the archive extraction with its
safety checks, and the cache live together; splitting it would mean shipping
several files for one SSH exec.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor

ENTRY = ".trainbox-entry.json"
MANIFEST = ".trainbox-manifest.json"
ORGANIZED = ".organized"
INCOMING = ".incoming"  # <data>/.incoming/<key>/: an archive the laptop pushed (Kaggle without a link)
TEST_DIRS = ("test", "test1")
ARCHIVES = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tar.xz": "tar",
}  # Kaggle's unlabelled images, kept for `model predict`
CHUNK = 1 << 20
ATTEMPTS = 6
TIMEOUT_S = 30
KAGGLE_NAME = re.compile(r"^(cat|dog)\.\d+\.(jpe?g|png)$", re.IGNORECASE)
SPLITS = ("train", "validation")


class Failure(Exception):
    """One line for the user, and the exit code (2 bad input, 3 fetch failed)."""

    def __init__(self, message: str, code: int = 3):
        super().__init__(message)
        self.code = code


def emit(kind: str, payload: dict) -> None:
    sys.stdout.write(f"@@{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


class Progress:
    """Bytes so far, rate and ETA, at most twice a second (and once at the end)."""

    def __init__(self, what: str, total: int | None, quiet: bool, done: int = 0):
        self.what, self.total, self.quiet = what, total, quiet
        self.done = self.start_done = done
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if now - self.last >= 0.5:
                self.last = now
                self.show()

    def show(self, final: bool = False) -> None:
        if self.quiet:
            return
        took = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start_done) / took
        line = f"{self.what}: {human(self.done)}"
        if self.total:
            line += f" of {human(self.total)} ({100 * self.done / self.total:.0f}%)"
        line += f", {human(rate)}/s"
        if final:
            line += f", done in {took:.1f}s"
        elif self.total and rate > 0:
            line += f", ETA {max(self.total - self.done, 0) / rate:.0f}s"
        print(line, flush=True)


def say(plan: dict, line: str) -> None:
    if not plan.get("quiet"):
        print(line, flush=True)


# ---------------------------------------------------------------- download


def _open(url: str, offset: int):
    req = urllib.request.Request(url, headers={"User-Agent": "trainbox-fetch"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)


def _where(url: str) -> str:
    """The URL without its query string: a presigned URL's signature stays out of messages."""
    return url.split("?", 1)[0]


def download(url: str, dest: str, progress: Progress | None, resume: bool = True) -> int:
    """Download url into dest, resuming what dest holds; the byte count. Failure on 4xx/5xx or after retries."""
    for attempt in range(ATTEMPTS):
        have = os.path.getsize(dest) if resume and os.path.exists(dest) else 0
        try:
            resp = _open(url, have)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # we already hold every byte
                return have
            if e.code >= 500 and attempt + 1 < ATTEMPTS:
                time.sleep(min(0.2 * 2**attempt, 3))
                continue
            raise Failure(f"{_where(url)} answered {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            if attempt + 1 < ATTEMPTS:
                time.sleep(min(0.2 * 2**attempt, 3))
                continue
            why = getattr(e, "reason", e)
            raise Failure(f"cannot reach {_where(url)} ({why})") from None
        with resp:
            partial = resp.status == 206
            if not partial:  # the server ignored the Range: the whole body again, from byte 0
                have = 0
                if progress is not None:
                    progress.done = 0
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            if progress is not None and progress.total is None and expected:
                progress.total = expected
            if progress is not None and attempt and have:
                progress.done = have
            got = have
            try:
                with open(dest, "ab" if partial else "wb") as f:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        got += len(chunk)
                        if progress is not None:
                            progress.add(len(chunk))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise
                got = -1  # the link dropped mid-body; resume below
            except Exception:  # noqa: BLE001 (http.client.IncompleteRead and friends: the link dropped)
                got = -1
            if got >= 0 and (expected is None or got == expected):
                return got
        if attempt + 1 < ATTEMPTS:
            if progress is not None and not progress.quiet:
                print(f"connection dropped at {human(os.path.getsize(dest))}; resuming", flush=True)
            continue
    raise Failure(f"the download of {_where(url)} kept breaking off after {ATTEMPTS} attempts")


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- extract and layout


def _inside(base: str, name: str) -> bool:
    target = os.path.realpath(os.path.join(base, name))
    return target == base or target.startswith(base + os.sep)


def extract(archive: str, kind: str, dest: str) -> None:
    base = os.path.realpath(dest)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if not _inside(base, name):
                        raise Failure(f"the archive holds a path outside its folder ({name}); refusing it", 2)
                z.extractall(dest)
        else:
            with tarfile.open(archive, "r:*") as t:
                members = t.getmembers()
                for m in members:
                    if not _inside(base, m.name) or m.issym() or m.islnk() or m.isdev():
                        raise Failure(f"the archive holds a link, device or outside path ({m.name}); refusing it", 2)
                if hasattr(tarfile, "data_filter"):
                    t.extractall(dest, members=members, filter="data")
                else:
                    t.extractall(dest, members=members)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise Failure(f"the download is not a readable {kind} archive ({e})", 2) from None


def expand_inner(plan: dict, stage: str) -> None:
    """Archives inside the archive, at its top (Kaggle's competition zip holds train.zip and
    test.zip): each is extracted where it lies, then removed."""
    for e in _visible(stage):
        kind = next((k for ext, k in ARCHIVES.items() if e.name.lower().endswith(ext)), None) if e.is_file() else None
        if kind is None:
            continue
        say(plan, f"extracting {e.name}")
        extract(e.path, kind, stage)
        _remove(e.path)


def _visible(d: str) -> list[os.DirEntry]:
    return [e for e in os.scandir(d) if not e.name.startswith(".") and e.name != "__MACOSX"]


def find_root(top: str) -> tuple[str, str]:
    """(the dataset's folder inside top, 'course' | 'kaggle'), or Failure (exit 2) naming what was found."""
    root = top
    while True:
        entries = _visible(root)
        names = {e.name for e in entries if e.is_dir()}
        if set(SPLITS) <= names:
            return root, "course"
        files = [e.name for e in entries if e.is_file()]
        if any(KAGGLE_NAME.match(n) for n in files):
            return root, "kaggle"
        if "train" in names and any(KAGGLE_NAME.match(e.name) for e in _visible(os.path.join(root, "train"))):
            return os.path.join(root, "train"), "kaggle"  # Kaggle's whole download: train/ beside test/ and a CSV
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0].path
            continue
        found = ", ".join(sorted(e.name + ("/" if e.is_dir() else "") for e in entries)[:6]) or "nothing"
        rel = os.path.relpath(root, top)
        raise Failure(
            f"the data has neither train/ and validation/ folders nor Kaggle's flat cat.N.jpg/dog.N.jpg files "
            f"(found in {'its top folder' if rel == '.' else rel}: {found})",
            2,
        )


def organize(plan: dict, src: str, dst: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = plan["code_dir"] + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    say(plan, "Kaggle's flat layout: organizing it into train/ and validation/ (python -m model organize)")
    p = subprocess.run(
        [plan["python"], "-m", "model", "organize", "--src", src, "--dst", dst, "--seed", str(plan.get("seed", 0))],
        env=env,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Failure(f"organizing the Kaggle layout failed: {tail[0]}", 2 if p.returncode == 2 else 3)


def finish_layout(plan: dict, stage: str) -> tuple[str, str | None]:
    """(data_dir, test_dir), relative to the entry: a Kaggle layout is organized into
    stage/.organized, and its test/ folder beside the flat train/ is linked in there
    (hard links: the download's own tree stays as it was, for S3's next compare)."""
    root, kind = find_root(stage)
    if kind != "kaggle":
        data_dir = os.path.relpath(root, stage)
    else:
        organized = os.path.join(stage, ORGANIZED)
        organize(plan, root, organized)
        data_dir = ORGANIZED
        parent = os.path.dirname(root)
        for name in TEST_DIRS:
            src = os.path.join(parent, name)
            if parent != root and os.path.isdir(src) and not os.path.exists(os.path.join(organized, name)):
                shutil.copytree(src, os.path.join(organized, name), copy_function=os.link)
    test_dir = next(
        (
            os.path.normpath(os.path.join(data_dir, n))
            for n in TEST_DIRS
            if os.path.isdir(os.path.join(stage, data_dir, n))
        ),
        None,
    )
    return data_dir, test_dir


def tree_size(d: str) -> tuple[int, int]:
    total = files = 0
    for dirpath, _, names in os.walk(d):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def write_entry(plan: dict, stage: str, layout: tuple[str, str | None]) -> dict:
    size, files = tree_size(stage)
    data_dir, test_dir = layout
    entry = {
        "key": plan["key"],
        "source": plan["source"],
        "data_dir": data_dir,
        "bytes": size,
        "files": files,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if test_dir:
        entry["test_dir"] = test_dir
    with open(os.path.join(stage, ENTRY), "w") as f:
        json.dump(entry, f)
    return entry


def install(stage: str, final: str, tmp: str) -> None:
    """Swap stage into final: an old copy is moved aside first, so final is either absent or complete."""
    if os.path.exists(final):
        trash = os.path.join(tmp, os.path.basename(final) + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
        os.rename(stage, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(stage, final)


def read_entry(final: str) -> dict | None:
    try:
        with open(os.path.join(final, ENTRY)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- operations


def fetch_url(plan: dict, final: str, tmp: str) -> dict:
    entry = read_entry(final)
    if entry is not None:
        say(plan, f"{plan['source']}: cached on the box ({human(entry['bytes'])}), nothing downloaded")
        return {**entry, "cached": True, "downloaded": 0}
    if plan.get("archive"):  # pushed by the laptop: nothing to download
        return _install_archive(plan, final, tmp, pushed_archive(plan), 0)
    partial_dir = os.path.join(plan["data_root"], ".partial")
    os.makedirs(partial_dir, exist_ok=True)
    partial = os.path.join(partial_dir, plan["key"] + ".download")
    if os.path.exists(partial) and not plan.get("quiet"):
        print(f"resuming the download at {human(os.path.getsize(partial))}", flush=True)
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    progress = Progress(f"download {plan['name']}", None, plan.get("quiet", False), done=have)
    try:
        got = download(plan["url"], partial, progress)
    except Failure as e:
        if "answered 4" in str(e):
            _remove(partial)
        raise
    progress.show(final=True)
    return _install_archive(plan, final, tmp, partial, got)


def pushed_archive(plan: dict) -> str:
    """The archive the laptop pushed, which must lie in <data>/.incoming/<key>/."""
    path = os.path.realpath(plan["archive"])
    incoming = os.path.realpath(os.path.join(plan["data_root"], INCOMING, plan["key"]))
    if os.path.dirname(path) != incoming or not os.path.isfile(path):
        raise Failure(f"the pushed archive {plan['archive']} is not in {incoming}; run it again")
    return path


def _install_archive(plan: dict, final: str, tmp: str, partial: str, got: int) -> dict:
    """Verify, extract, lay out and install the whole download in partial, which is removed after."""
    if plan.get("sha256"):
        actual = sha256_of(partial)
        if actual != plan["sha256"]:
            _remove(partial)
            raise Failure(
                f"sha256 mismatch for {plan['source']}: expected {plan['sha256']}, got {actual}; "
                "the file changed or the hash is wrong"
            )
    # The download is whole from here on: whatever happens next, it is not kept
    # (only a download cut short stays in .partial/, to resume).
    try:
        stage = os.path.join(tmp, plan["key"] + ".stage")
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
        say(plan, f"extracting {plan['name']}")
        extract(partial, plan["kind"], stage)
        if plan.get("expand_inner"):
            expand_inner(plan, stage)
        entry = write_entry(plan, stage, finish_layout(plan, stage))
        install(stage, final, tmp)
    finally:
        _remove(partial)
        if plan.get("archive"):
            shutil.rmtree(os.path.dirname(partial), ignore_errors=True)
    return {**entry, "cached": False, "downloaded": got}


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def read_manifest(final: str) -> dict:
    try:
        with open(os.path.join(final, MANIFEST)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def fetch_s3(plan: dict, final: str, tmp: str) -> dict:
    """Mirror the listing into the entry: hard-link what is unchanged, download the rest in parallel."""
    listing: dict = plan["objects"]  # rel -> {"etag", "size"}
    urls: dict = plan["urls"]  # rel -> presigned GET URL, for the objects the box lacks
    old = read_manifest(final) if read_entry(final) is not None else {}
    keep = {rel for rel, o in listing.items() if old.get(rel) == o["etag"] and os.path.isfile(os.path.join(final, rel))}
    need = sorted(set(listing) - keep)
    missing = [rel for rel in need if rel not in urls]
    if missing:
        raise Failure(
            f"the box's copy changed while the laptop planned ({len(missing)} objects without a URL); run it again"
        )
    deleted = sorted(set(old) - set(listing))
    entry = read_entry(final) if not need and not deleted else None
    if entry is not None:
        say(plan, f"{plan['source']}: up to date on the box ({len(listing)} objects), nothing downloaded")
        return {**entry, "cached": True, "downloaded": 0, "fetched": [], "deleted": []}
    stage = os.path.join(tmp, plan["key"] + ".stage")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    for rel in keep:
        dst = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(os.path.join(final, rel), dst)
    total = sum(listing[rel]["size"] for rel in need)
    progress = Progress(f"s3 {len(need)} objects", total, plan.get("quiet", False))

    def one(rel: str) -> int:
        dst = os.path.join(stage, rel)
        if not os.path.realpath(dst).startswith(os.path.realpath(stage) + os.sep):
            raise Failure(f"object {rel} would land outside the dataset folder; refusing it", 2)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        return download(urls[rel], dst, progress, resume=False)

    with ThreadPoolExecutor(max_workers=plan.get("parallel", 8)) as pool:
        got = sum(pool.map(one, need))
    progress.show(final=True)
    say(plan, f"s3: {len(need)} fetched, {len(keep)} up to date, {len(deleted)} removed")
    with open(os.path.join(stage, MANIFEST), "w") as f:
        json.dump({rel: o["etag"] for rel, o in listing.items()}, f)
    entry = write_entry(plan, stage, finish_layout(plan, stage))
    install(stage, final, tmp)
    return {**entry, "cached": False, "downloaded": got, "fetched": need, "deleted": deleted}


def list_entries(data_root: str, complete_marker: str) -> list[dict]:
    """The cache's entries; a folder pushed from the laptop is complete once it holds complete_marker."""
    out: list[dict] = []
    if not os.path.isdir(data_root):
        return out
    for e in sorted(os.scandir(data_root), key=lambda e: e.name):
        if e.name.startswith(".") or not e.is_dir():
            continue
        entry = read_entry(e.path)
        if entry is None:
            size, files = tree_size(e.path)
            complete = os.path.exists(os.path.join(e.path, complete_marker))
            entry = {
                "key": e.name,
                "source": "pushed from the laptop" if complete else "incomplete push",
                "bytes": size,
                "files": files,
                "data_dir": ".",
            }
        out.append(entry)
    return out


def remove_entry(data_root: str, key: str) -> dict:
    final = os.path.join(data_root, key)
    if "/" in key or key.startswith(".") or not os.path.isdir(final):
        raise Failure(f"the box has no cached dataset {key!r}", 2)
    size, files = tree_size(final)
    tmp = os.path.join(data_root, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    trash = os.path.join(tmp, key + ".rm")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(final, trash)  # gone from the cache at once, even if the delete is cut short
    shutil.rmtree(trash, ignore_errors=True)
    _remove(os.path.join(data_root, ".partial", key + ".download"))
    return {"key": key, "bytes": size, "files": files}


def run(plan: dict) -> dict:
    op = plan["op"]
    data_root = plan["data_root"]
    if op == "ls":
        return {"entries": list_entries(data_root, plan["complete_marker"])}
    if op == "rm":
        return remove_entry(data_root, plan["key"])
    final = os.path.join(data_root, plan["key"])
    tmp = os.path.join(data_root, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    stage = os.path.join(tmp, plan["key"] + ".stage")
    try:
        result = fetch_url(plan, final, tmp) if op == "url" else fetch_s3(plan, final, tmp)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result["path"] = os.path.normpath(os.path.join(final, result["data_dir"]))
    if result.get("test_dir"):
        result["test_path"] = os.path.normpath(os.path.join(final, result["test_dir"]))
    return result


def main(plan: dict) -> int:
    try:
        emit("result", run(plan))
        return 0
    except Failure as e:
        emit("error", {"code": e.code, "message": str(e)})
        return e.code
    except OSError as e:
        if e.errno == errno.ENOSPC:
            emit("error", {"code": 3, "message": f"the box's disk is full ({e.filename or 'writing the dataset'})"})
        else:
            emit("error", {"code": 3, "message": f"{type(e).__name__} on the box: {e}"})
        return 3


# The one-liner the laptop runs: read {"script", "plan"} from the first stdin line, run main(plan).
BOOTSTRAP = (
    "import json,sys;m=json.loads(sys.stdin.readline());g={'__name__':'trainbox_boxfetch'};"
    "exec(compile(m['script'],'trainbox_boxfetch.py','exec'),g);sys.exit(g['main'](m['plan']))"
)
