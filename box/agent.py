"""trainbox's agent on the box: spot notices and resumes at boot (standard library only).

systemd starts it at every boot as the login user (trainbox-agent.service,
installed by the user-data). It does two things, both from the run
folders under ``RUNS`` (the files the job machinery writes: ``run.sh``,
``pid``, ``boot_id``, ``exit_code``, ``stopped``):

- At start, it resumes every run that was interrupted: started in an earlier
  boot (its ``boot_id`` is not this boot's), no ``exit_code``, not stopped by
  the user (``remote stop`` writes ``stopped``). Every process of an earlier
  boot is gone, so no pid is read or signalled. It runs the run's own
  ``run.sh`` again (which resumes from the model's saved state) and records
  each resume in the run's ``events`` file.
- Then it polls IMDSv2's ``spot/instance-action`` every ``--interval``
  seconds. When a notice appears (AWS gives two minutes), it asks each run of
  this boot that is still going to save now (the ``save-now`` file, which the
  model's callback sees at its next batch end) and records the notice.
  On SIGTERM (the box is being stopped: ``provision stop``, the cost guard)
  it asks the same, so a clean stop loses no more than a spot interruption.

The IMDS address follows botocore's convention, AWS_EC2_METADATA_SERVICE_ENDPOINT
(the sandbox serves a stand-in on 127.0.0.1). Events are JSON lines:
{"event": "spot-notice"|"stopping"|"resumed"|"left-stopped", "at": UNIX_TIME, ...}.

On a --recover box (TRAINBOX_STORE set, from STORE_ENV_FILE) it also keeps the runs in S3
(box/keep.py): at start, before the resume, it restores the store's unfinished runs that this
instance lacks (a new instance of the group); at every poll, and once the runs answered a spot
notice or a stop with a save, it mirrors this boot's runs there.

A run the user stopped (``remote stop``) and never finished is left alone, and
says so once in its events (``left-stopped``) and in the agent's journal.
The user-data installs this file, box/runfolder.py and box/layout.py (a --recover box's:
box/s3.py and box/keep.py too) as the package ``box`` in
``AGENT_DIR`` and runs ``python3 -m box.agent`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from box.layout import (
    RUN_EVENTS,
    RUN_EXIT_CODE,
    RUN_PID,
    RUN_SAVE_REQUEST,
    RUN_SCRIPT,
    RUNS_RESUMING,
    BoxLayout,
)
from box.runfolder import RunFolder, detach, run_folders

IMDS_DEFAULT = "http://169.254.169.254"
NOTICE_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_S = 21600
HTTP_TIMEOUT_S = 2.0

# The run folder's files this agent writes (box/layout.py names them all).
EVENTS = RUN_EVENTS
SAVE_REQUEST = RUN_SAVE_REQUEST
RESUMING = RUNS_RESUMING  # in RUNS while a resume is under way: the cost guard counts the box busy
PID_WAIT_S = 10.0  # how long the resume marker waits for the resumed runs' pids
STOP_WAIT_S = 30.0  # how long a shutdown is held for the saves (the unit's TimeoutStopSec is above it)


def this_boot() -> str:
    """This boot's id (systemd-nspawn gives each container boot its own)."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def start_job(run: RunFolder) -> None:
    """Run the run's own run.sh again, detached (a new session, no terminal, as the job machinery does)."""
    for name in (RUN_PID, RUN_EXIT_CODE):
        try:
            os.unlink(os.path.join(run.path, name))
        except FileNotFoundError:
            pass
    detach(["bash", RUN_SCRIPT], run.path)


def resume_interrupted(runs: str, boot: str, pid_wait_s: float = PID_WAIT_S) -> list[RunFolder]:
    """Start every interrupted run again; the ones started.

    The marker stays until each started run has written its pid (or
    ``pid_wait_s`` passed), so the cost guard, which counts a run busy by its
    pid, never sees a gap between "interrupted" and "running again". A marker
    left by a boot that ended mid-resume is removed first.
    """
    marker = os.path.join(runs, RESUMING)
    try:
        os.unlink(marker)
    except FileNotFoundError:
        pass
    todo = [r for r in run_folders(runs) if r.interrupted(boot)]
    if not todo:
        return []
    open(marker, "w").close()
    try:
        for run in todo:
            run.record("resumed", after_boot=run.boot_id)
            start_job(run)
        deadline = time.monotonic() + pid_wait_s
        while time.monotonic() < deadline and not all(r._has(RUN_PID) for r in todo):
            time.sleep(0.05)
    finally:
        os.unlink(marker)
    return todo


def note_left_stopped(runs: str, boot: str) -> list[RunFolder]:
    """The runs the user stopped, each told once (in its events) that no boot resumes it."""
    told = []
    for run in run_folders(runs):
        # Once per stop: a run resumed by the user and stopped again starts a new boot_id.
        if run.left_by_user(boot) and not any(
            e.get("event") == "left-stopped" and e.get("boot") == run.boot_id for e in run.events()
        ):
            run.record("left-stopped", boot=run.boot_id)
            told.append(run)
    return told


class Imds:
    """IMDSv2: a session token (PUT), then GETs that carry it."""

    def __init__(self, endpoint: str | None = None):
        self.endpoint = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
        self._token: str | None = None
        self._token_until = 0.0

    def _token_now(self) -> str:
        if self._token is None or time.monotonic() >= self._token_until:
            req = urllib.request.Request(
                f"{self.endpoint}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
                self._token = r.read().decode().strip()
            self._token_until = time.monotonic() + TOKEN_TTL_S - 60
        return self._token

    def get(self, path: str) -> str | None:
        """The text at path (``/latest/meta-data/...``), or None where IMDS has nothing (404)."""
        req = urllib.request.Request(self.endpoint + path, headers={"X-aws-ec2-metadata-token": self._token_now()})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 401:  # the token expired early: a fresh one next time
                self._token = None
            if e.code in (401, 404):
                return None
            raise

    def spot_notice(self) -> dict | None:
        """The instance-action document ({"action": "stop", "time": ...}) once AWS has sent one, else None."""
        text = self.get(NOTICE_PATH)
        return None if text is None else json.loads(text or "{}")


def ask_going_runs_to_save(runs: str, boot: str, event: str, **fields) -> list[RunFolder]:
    going = [r for r in run_folders(runs) if r.going(boot)]
    for run in going:
        run.ask_to_save()
        run.record(event, **fields)
    return going


SAVE_WAIT_S = 90.0  # after a spot notice, how long the mirror waits for the runs' saves


class Agent:
    def __init__(self, runs: str, imds: Imds, boot: str, log=print, keeper=None):
        self.runs, self.imds, self.boot, self.log = runs, imds, boot, log
        self.noticed: str | None = None  # the notice already acted on (AWS repeats it until the stop)
        # A --recover box's (box/keep.py): its runs mirrored to S3, and restored on a new instance.
        self.keeper = keeper

    def at_boot(self) -> None:
        if self.keeper is not None:
            self.restore()
        for run in note_left_stopped(self.runs, self.boot):
            self.log(f"not resuming {os.path.basename(run.path)}: stopped by the user (`remote stop`)")
        for run in resume_interrupted(self.runs, self.boot):
            self.log(f"resumed {os.path.basename(run.path)} (interrupted in boot {run.boot_id})")

    def restore(self) -> None:
        """The store's unfinished runs this instance lacks, brought back before the resume (the
        runs folder's resuming marker keeps the cost guard off meanwhile)."""
        os.makedirs(self.runs, exist_ok=True)
        marker = os.path.join(self.runs, RESUMING)
        open(marker, "w").close()
        try:
            self.keeper.start_bootstrap()
            self.keeper.restore()
        except Exception as e:  # noqa: BLE001 (S3 or a disk: said, and the local runs resume anyway)
            self.log(f"restoring runs from S3: {e}")
        finally:
            os.unlink(marker)

    def mirror(self, final: bool = False) -> None:
        if self.keeper is None:
            return
        try:
            self.keeper.mirror(final)
        except Exception as e:  # noqa: BLE001 (S3 away: said, tried again at the next poll)
            self.log(f"mirroring runs to S3: {e}")

    def poll_once(self) -> None:
        self.notice_once()
        self.mirror()

    def notice_once(self) -> None:
        try:
            notice = self.imds.spot_notice()
        except (OSError, ValueError) as e:  # IMDS unreachable or garbled: say so, try again next tick
            self.log(f"IMDS: {e}")
            return
        if notice is None:
            return
        key = json.dumps(notice, sort_keys=True)
        if key == self.noticed:
            return
        self.noticed = key
        saved = ask_going_runs_to_save(self.runs, self.boot, "spot-notice", notice=notice)
        self.log(f"spot notice {notice}: asked {len(saved)} run(s) to save now")
        if self.keeper is not None:
            # What the runs save now is what a new instance resumes from: in S3 once they have.
            deadline = time.monotonic() + SAVE_WAIT_S
            while time.monotonic() < deadline and any(r.still_asked() for r in saved):
                time.sleep(0.2)
            self.mirror()

    def stopping(self, wait_s: float = STOP_WAIT_S) -> None:
        """Ask each going run to save, and wait (up to wait_s) until each has (or has ended).

        systemd waits for this unit's stop before its last step, which kills
        what is left at once: a job outside any unit that stops it gently
        (started over SSH with no login session, or in a container) would
        get no chance to save otherwise.
        """
        asked = ask_going_runs_to_save(self.runs, self.boot, "stopping")
        self.log(f"the box is stopping: asked {len(asked)} run(s) to save now")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(r.still_asked() for r in asked):
            time.sleep(0.05)
        late = [os.path.basename(r.path) for r in asked if r.still_asked()]
        if late:
            self.log(f"no save from {', '.join(late)} within {wait_s:.0f}s")
        self.mirror(final=True)  # this instance's last word: a new one need not wait for it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trainbox-agent", description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--runs", help="the box's runs folder (absolute)")
    where.add_argument("--workdir", help="trainbox's workdir (box/layout.py; a relative one is under $HOME)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between IMDS polls (default: %(default)s)")
    args = p.parse_args(argv)
    log = lambda s: print(f"trainbox-agent: {s}", flush=True)  # noqa: E731 (journald takes stdout)
    runs = args.runs or BoxLayout(args.workdir).at_home(os.path.expanduser("~")).runs
    imds, boot = Imds(), this_boot()
    keeper = None
    if os.environ.get("TRAINBOX_STORE"):  # a --recover box (STORE_ENV_FILE)
        from box import keep

        try:
            keeper = keep.keeper(runs, boot, imds, log)
        except ValueError as e:
            log(f"not keeping runs in S3: {e}")
    agent = Agent(runs, imds, boot, log, keeper)
    # The runs it resumes are its children and it never waits for them: let the kernel
    # reap them, or each would linger as a zombie that `kill -0` (the guard, `remote
    # status`, a follower's `tail --pid`) takes for a job still running.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    def on_term(*_) -> None:
        agent.stopping()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    agent.at_boot()
    while True:
        agent.poll_once()
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
