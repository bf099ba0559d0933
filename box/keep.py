"""A --recover box's runs kept in S3, and restored on whichever instance the group starts next.

The instance of a --recover box (an Auto Scaling group of one spot instance, provision/recover.py)
can be terminated with its disk. So the agent (box/agent.py) mirrors each run of this boot to the
box's prefix in trainbox's bucket (box/layout.py, "A --recover box's runs in S3"), and the
agent on the replacement restores every unfinished run from there before it resumes the
interrupted runs as after any reboot. Standard library only; S3 through box/s3.py with the
instance role's credentials. The box is recovering when TRAINBOX_STORE=s3://bucket/prefix is
set (the user-data writes it to STORE_ENV_FILE).

Mirror, at every agent poll and right after the runs answered a spot notice with a save:
- the run's run.json and run.sh, its own files (log, events, resumed, exit_code, stopped) and
  every file of out/ whose size or mtime changed (a file gone locally is deleted in S3);
- its code, the project_dir as one tar.gz keyed by the sha256 of its content, once;
- its data, the data set's folder as one tar per data key, once, whatever its source: S3 and
  Kaggle data came through URLs that expire within minutes, and box/fetch.py, which could fetch
  a URL's again, does not fit in the user-data (AWS's 16 KB) beside this module and box/s3.py;
- state.json last, whenever anything else was written.
What was uploaded is remembered (size and mtime per file): a poll where nothing changed makes
no request. The first look at a run lists its prefix once (an agent restarted mid-run does not
upload it all again). A finished or stopped run gets a last mirror, then no more.

Restore, at boot: each run under <prefix>runs/ whose state.json says neither finished nor
stopped and which the local runs folder lacks comes back at the same absolute paths (every
instance of the group has the same login user and workdir): code, data, run.sh, run.json,
its files and out/. Then it waits, bounded, for the run's environment (the user-data's
bootstrap builds it at first boot) and records ``restored`` in the run's events; the agent's
resume_interrupted starts it, since its boot_id is an earlier instance's.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from box.layout import (
    BOOTSTRAP,
    DATA,
    READY_MARKER,
    RUN_BOOT_ID,
    RUN_EVENTS,
    RUN_EXIT_CODE,
    RUN_LOG,
    RUN_OUT,
    RUN_PID,
    RUN_PID_START,
    RUN_RESUMED,
    RUN_SCRIPT,
    RUN_SPEC,
    RUN_STOPPED,
    STORE_BOOTSTRAP,
    STORE_CODE,
    STORE_DATA,
    STORE_RUN_CODE,
    STORE_RUN_FILES,
    STORE_RUN_OUT,
    STORE_RUN_SCRIPT,
    STORE_RUN_STATE,
    STORE_RUNS,
)
from box.runfolder import RunFolder, detach, run_folders
from box.s3 import S3, CredentialSource, S3Error

STORE_ENV = "TRAINBOX_STORE"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
# The run folder's own files; pid and boot_id too, so that a restored run is one an earlier boot
# cut off (box/agent.py's RunFolder.interrupted), which the agent resumes.
OWN_FILES = (RUN_LOG, RUN_EVENTS, RUN_RESUMED, RUN_EXIT_CODE, RUN_STOPPED, RUN_PID, RUN_PID_START, RUN_BOOT_ID)
READY_WAIT_S = 1800.0  # how long a restore waits for the run's environment (a first-boot build)
HEARTBEAT_S = 30.0  # a going run's state.json is written at least this often, changed or not
QUIET_S = 3 * HEARTBEAT_S  # a run whose state is older than this is no other instance's any more
QUIET_WAIT_S = 900.0  # at most this long a restore waits for another instance to let a run go
QUIET_POLL_S = 2.0  # meanwhile, how often it reads the run's state again
SKIP_DIRS = ("__pycache__",)


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str  # ends with "/" (or is empty)

    @classmethod
    def parse(cls, url: str) -> Store:
        """s3://bucket/prefix/ (TRAINBOX_STORE)."""
        if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
            raise ValueError(f"{STORE_ENV}={url!r} is not s3://BUCKET/PREFIX")
        bucket, _, prefix = url[5:].partition("/")
        return cls(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")

    def run(self, run_id: str) -> str:
        return f"{self.prefix}{STORE_RUNS}/{run_id}/"

    def code(self, digest: str) -> str:
        return f"{self.prefix}{STORE_CODE}/{digest}.tar.gz"

    def data(self, key: str) -> str:
        return f"{self.prefix}{STORE_DATA}/{key}.tar"


def tree_digest(top: str) -> str:
    """The sha256 of a folder's content: each file's path, exec bit and bytes, in order."""
    h = hashlib.sha256()
    for rel, path in walk_files(top):
        st = os.stat(path)
        h.update(f"{rel}\0{int(bool(st.st_mode & 0o100))}\0{st.st_size}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def walk_files(top: str) -> list[tuple[str, str]]:
    """(relative path, path) of every regular file under top, sorted; links and caches skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append((os.path.relpath(path, top), path))
    return out


def pack(top: str, dest: str, gz: bool) -> None:
    with tarfile.open(dest, "w:gz" if gz else "w") as tar:
        for rel, path in walk_files(top):
            tar.add(path, arcname=rel, recursive=False)


def unpack(archive: str, dest: str) -> None:
    """Extract into dest, refusing any member that would land outside it or is not a plain file or folder."""
    base = os.path.realpath(dest)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.realpath(os.path.join(base, m.name))
            if not (m.isfile() or m.isdir()) or (target != base and not target.startswith(base + os.sep)):
                raise S3Error("BadArchive", f"{archive}: member {m.name!r} is not a file inside the archive")
        os.makedirs(base, exist_ok=True)
        for m in members:
            tar.extract(m, base)


class Keeper:
    """The runs folder's mirror in the store, and its restore on a new instance."""

    def __init__(
        self,
        s3: S3,
        store: Store,
        runs: str,
        boot: str,
        instance: str,
        log: Callable[[str], None] = print,
    ):
        self.s3, self.store, self.runs, self.boot, self.instance, self.log = s3, store, runs, boot, instance, log
        self.workdir = os.path.dirname(os.path.abspath(runs))
        self.sent: dict[str, tuple[int, int]] = {}  # key -> (size, mtime_ns) of what was uploaded
        self.listed: set[str] = set()  # runs whose prefix was listed once
        self.archives: set[str] = set()  # code and data keys known to be in the store
        self.coded: set[str] = set()  # runs whose code archive is named in the store
        self.states: dict[str, dict] = {}  # run id -> the state last written (without "at")
        self.done: set[str] = set()  # runs over and mirrored a last time
        self.bootstrap: subprocess.Popen | None = None  # the environment's build this instance started
        self.beats: dict[str, float] = {}  # run id -> when its state was last written (monotonic)
        self.final = False  # the mirror under way is this instance's last (it is shutting down)

    # ------------------------------------------------------------ mirror

    def mirror(self, final: bool = False) -> int:
        """Mirror every run of this boot; how many objects were written or deleted. final: this
        instance is shutting down, its last mirror (said in each run's state)."""
        self.final = final
        n = 0
        for run in run_folders(self.runs):
            rid = os.path.basename(run.path)
            if rid in self.done or run.boot_id != self.boot or not os.path.exists(os.path.join(run.path, RUN_SCRIPT)):
                continue
            over = run.finished or run.stopped_by_user
            try:
                n += self.mirror_run(run)
            except (S3Error, OSError) as e:
                self.log(f"mirroring {rid} to s3://{self.store.bucket}/{self.store.run(rid)}: {e}")
                continue
            if over:
                self.done.add(rid)
        return n

    def mirror_run(self, run: RunFolder) -> int:
        rid = os.path.basename(run.path)
        base = self.store.run(rid)
        if rid not in self.listed:
            self._seed(base)
            self.listed.add(rid)
        n = 0
        spec = _read_json(os.path.join(run.path, RUN_SPEC))
        n += self._file(base + RUN_SPEC, os.path.join(run.path, RUN_SPEC))
        n += self._file(base + STORE_RUN_SCRIPT, os.path.join(run.path, RUN_SCRIPT))
        for name in OWN_FILES:
            n += self._file(f"{base}{STORE_RUN_FILES}/{name}", os.path.join(run.path, name))
        out_dir = os.path.join(run.path, _out_name(spec))
        out_base = f"{base}{STORE_RUN_OUT}/"
        here = {out_base + rel: path for rel, path in walk_files(out_dir)} if os.path.isdir(out_dir) else {}
        for key, path in here.items():
            n += self._file(key, path)
        for key in [k for k in self.sent if k.startswith(out_base) and k not in here]:
            n += self._file(key, os.path.join(out_dir, key[len(out_base) :]))  # gone: deleted in S3 too
        # The code and data archives last, in a try of their own: a big one (or one S3 refuses)
        # never holds the checkpoints back; the run's state names what is in the store so far.
        if spec is not None:
            try:
                n += self._code(spec, rid)
                n += self._data(spec)
            except (S3Error, OSError) as e:
                self.log(f"{rid}: its code or data is not in the store yet (tried again at the next poll): {e}")
        state = {
            "exit_code": _exit_code(run),
            "stopped": run.stopped_by_user,
            "instance": self.instance,
            "final": self.final,
        }
        beat = time.monotonic() - self.beats.get(rid, 0.0) >= HEARTBEAT_S  # this instance still has it
        if n or beat or self.states.get(rid) != state:
            self.s3.put_bytes(base + STORE_RUN_STATE, json.dumps({**state, "at": round(time.time(), 3)}).encode())
            self.states[rid] = state
            self.beats[rid] = time.monotonic()
            n += 1
        return n

    def _seed(self, base: str) -> None:
        """What the store already holds of a run, taken as sent where the size matches and it is no
        older (S3 keeps whole seconds: a second's grace)."""
        for obj in self.s3.list(base):
            self.sent.setdefault(obj.key, (obj.size, int((obj.modified + 1) * 1e9)))

    def _file(self, key: str, path: str) -> int:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if key in self.sent:
                self.s3.delete(key)
                del self.sent[key]
                return 1
            return 0
        was = self.sent.get(key)
        if was is not None and was[0] == st.st_size and (was[1] == st.st_mtime_ns or was[1] > st.st_mtime_ns):
            return 0
        try:
            self.s3.put_file(key, path)
        except FileNotFoundError:
            return 0  # removed while being read: the next poll sees it gone
        self.sent[key] = (st.st_size, st.st_mtime_ns)
        return 1

    def _archive(self, key: str, top: str, gz: bool) -> int:
        """top as one archive at key, unless the store has it already."""
        if key in self.archives:
            return 0
        if any(o.key == key for o in self.s3.list(key)):
            self.archives.add(key)
            return 0
        fd, tmp = tempfile.mkstemp(prefix=".trainbox-keep-", suffix=".tar", dir=self.workdir)
        os.close(fd)
        try:
            pack(top, tmp, gz)
            self.s3.put_file(key, tmp)
        finally:
            os.unlink(tmp)
        self.archives.add(key)
        return 1

    def _code(self, spec: dict, rid: str) -> int:
        project = spec.get("project_dir")
        if not project or not os.path.isdir(project) or rid in self.coded:
            return 0
        digest = tree_digest(project)
        n = self._archive(self.store.code(digest), project, gz=True)
        # Which archive is this run's: beside its spec (the store's copy of run.json has it).
        self.s3.put_bytes(self.store.run(rid) + STORE_RUN_CODE, digest.encode())
        self.coded.add(rid)
        return n + 1

    def _data(self, spec: dict) -> int:
        data = spec.get("data")
        if not data or not data.get("key"):
            return 0
        folder = os.path.join(self.workdir, DATA, data["key"])
        if not os.path.isdir(folder):
            return 0
        return self._archive(self.store.data(data["key"]), folder, gz=False)

    # ------------------------------------------------------------ restore

    def start_bootstrap(self) -> bool:
        """An instance's first boot: the store's bootstrap (the environment's build, which the
        user-data has no room for), started detached as the user-data starts it; True if started."""
        path = os.path.join(self.workdir, BOOTSTRAP)
        key = self.store.prefix + STORE_BOOTSTRAP
        if os.path.exists(path) or not any(o.key == key for o in self.s3.list(key)):
            return False
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self.s3.get_file(key, path)
        os.chmod(path, 0o700)
        self.bootstrap = detach(["bash", path], os.path.expanduser("~"))
        self.log(f"started the environment's bootstrap from s3://{self.store.bucket}/{key}")
        return True

    def _quiet_state(self, rid: str, wait_s: float) -> dict:
        """The run's state once no other instance still mirrors it. With capacity rebalancing AWS
        launches the new instance before it terminates the old one, whose agent mirrors the run
        until it is gone: resuming it here meanwhile would run it twice, the old one writing over
        the new one's objects. Bounded: an instance whose clock is off is waited for no longer."""
        deadline = time.monotonic() + wait_s
        said = False
        while True:
            state = json.loads(self.s3.get_bytes(self.store.run(rid) + STORE_RUN_STATE))
            over = state.get("exit_code") is not None or state.get("stopped")
            fresh = time.time() - float(state.get("at") or 0) < QUIET_S and not state.get("final")
            if over or state.get("instance") == self.instance or not fresh or time.monotonic() >= deadline:
                return state
            if not said:
                self.log(f"{rid}: {state.get('instance')} still mirrors it; waiting for that instance to be gone")
                said = True
            time.sleep(QUIET_POLL_S)

    def restore(self, ready_wait_s: float = READY_WAIT_S, quiet_wait_s: float = QUIET_WAIT_S) -> list[str]:
        """Bring back every unfinished run the store has and this instance lacks; their ids."""
        root = f"{self.store.prefix}{STORE_RUNS}/"
        objects: dict[str, dict[str, int]] = {}
        for obj in self.s3.list(root):
            rid, _, rest = obj.key[len(root) :].partition("/")
            if rid and rest:
                objects.setdefault(rid, {})[rest] = obj.size
        restored = []
        for rid, names in sorted(objects.items()):
            if os.path.exists(os.path.join(self.runs, rid)) or STORE_RUN_STATE not in names:
                continue
            try:
                state = self._quiet_state(rid, quiet_wait_s)
                if state.get("exit_code") is not None or state.get("stopped"):
                    continue  # over, or stopped by the user: stays so
                self.restore_run(rid, names, state, ready_wait_s)
            except (S3Error, OSError, ValueError, http.client.HTTPException, tarfile.TarError) as e:
                self.log(f"could not restore {rid} from s3://{self.store.bucket}/{self.store.run(rid)}: {e}")
                shutil.rmtree(os.path.join(self.runs, rid + ".restoring"), ignore_errors=True)
                continue
            restored.append(rid)
        return restored

    def restore_run(self, rid: str, names: dict[str, int], state: dict, ready_wait_s: float) -> None:
        base = self.store.run(rid)
        spec = json.loads(self.s3.get_bytes(base + RUN_SPEC))
        if STORE_RUN_CODE in names and spec.get("project_dir"):
            digest = self.s3.get_bytes(base + STORE_RUN_CODE).decode().strip()
            self._unpack(self.store.code(digest), spec["project_dir"], replace=True)
        env_link = spec.get("env_link")
        if env_link:
            self._wait_ready(env_link, ready_wait_s, rid)
        data = spec.get("data") or {}
        if data.get("key"):
            folder = os.path.join(self.workdir, DATA, data["key"])
            if not os.path.isdir(folder):
                self._unpack(self.store.data(data["key"]), folder, replace=False)
        # The run folder is made beside and renamed into place: the agent never sees half a run.
        stage = os.path.join(self.runs, rid + ".restoring")
        shutil.rmtree(stage, ignore_errors=True)
        for rest in names:
            if rest in (STORE_RUN_STATE, STORE_RUN_CODE):
                continue
            if rest.startswith(f"{STORE_RUN_FILES}/"):
                local = rest[len(STORE_RUN_FILES) + 1 :]
            elif rest.startswith(f"{STORE_RUN_OUT}/"):
                local = _out_name(spec) + rest[len(STORE_RUN_OUT) :]
            else:
                local = rest  # run.json, run.sh
            dest = os.path.normpath(os.path.join(stage, local))
            if not dest.startswith(stage + os.sep):
                raise S3Error("BadKey", f"{base}{rest} would land outside the run folder")
            self.s3.get_file(base + rest, dest)
            st = os.stat(dest)
            self.sent[base + rest] = (st.st_size, st.st_mtime_ns)
        os.rename(stage, os.path.join(self.runs, rid))
        self.listed.add(rid)
        run = RunFolder(os.path.join(self.runs, rid))
        run.record("restored", from_instance=state.get("instance"), instance=self.instance)
        self.log(f"restored {rid} from s3://{self.store.bucket}/{base} (it ran on {state.get('instance')})")

    def _unpack(self, key: str, dest: str, replace: bool) -> None:
        parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".trainbox-keep-", dir=parent)
        os.close(fd)
        stage = tempfile.mkdtemp(prefix=".trainbox-keep-", dir=parent)
        try:
            self.s3.get_file(key, tmp)
            unpack(tmp, stage)
            if replace and os.path.isdir(dest):
                shutil.rmtree(dest)
            if not os.path.exists(dest):
                os.rename(stage, dest)
        finally:
            os.unlink(tmp)
            shutil.rmtree(stage, ignore_errors=True)

    def _wait_ready(self, env_link: str, wait_s: float, rid: str) -> None:
        marker = os.path.join(env_link, READY_MARKER)
        deadline = time.monotonic() + wait_s
        while not os.path.exists(marker):
            if self.bootstrap is not None and self.bootstrap.poll() is not None and not os.path.exists(marker):
                # Ended, not ready (its status is the kernel's: the agent ignores SIGCHLD): said once.
                self.log(
                    f"{rid}: the environment's build ended and {env_link} is not ready: see {self.workdir}/setup.log"
                )
                return
            if time.monotonic() >= deadline:
                self.log(f"{rid}: the environment {env_link} is not ready after {wait_s:.0f}s; restoring it anyway")
                return
            time.sleep(1.0)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            value = json.load(f)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _out_name(spec: dict | None) -> str:
    out = (spec or {}).get("out") or RUN_OUT
    return out if "/" not in out.strip("/") and out not in ("", ".", "..") else RUN_OUT


def _exit_code(run: RunFolder) -> int | None:
    text = run._read(RUN_EXIT_CODE)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def keeper(runs: str, boot: str, imds, log: Callable[[str], None] = print, environ=None) -> Keeper | None:
    """The box's Keeper when it is recovering (TRAINBOX_STORE set), else None."""
    env = os.environ if environ is None else environ
    url = env.get(STORE_ENV)
    if not url:
        return None
    store = Store.parse(url)
    try:
        instance = (imds.get(INSTANCE_ID_PATH) or "").strip() or "unknown"
    except (OSError, ValueError):
        instance = "unknown"
    s3 = S3(store.bucket, env.get("AWS_REGION"), env.get("AWS_ENDPOINT_URL_S3"), CredentialSource(imds, env))
    return Keeper(s3, store, runs, boot, instance, log)
