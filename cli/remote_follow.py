"""Following a run to its end and bringing its results home (`remote run|train`, `logs --follow`).

It rides through an interruption: a provisioned box that is away (a spot stop,
a stopped box) is waited for, and its address asked of AWS anew
(provision.lifecycle), since it may change. A --recover box's group may have
replaced the instance (issue 25): the state moves to the new one
(provision/recover.py follow), the follower says so once, waits (bounded) until
the new instance answers and its agent has restored and resumed the run from
S3, then follows the log on from the byte it had (the restored log is the same).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys

from common.cliutil import say
from common.errors import MEANING, SIGKILLED, SIGTERMED, RemoteError, TrainboxError, TrainingFailed
from remote import builtin, orchestrate, records
from remote.target import Target

from .remote_reach import PROG, connect_box, name_flags, print_reattach

REPLACEMENT_WAIT_S = 1800.0  # a new instance: launch, boot, environment, the run restored from S3


class _Follower:
    """connect() for a followed run: the box as it is now (``_current``), and on a --recover box
    whose group replaced the instance, the new instance once its agent has resumed the run."""

    def __init__(self, args, target: Target, rec: records.RunRecord):
        from common import state
        from provision import recover

        self.args, self.target, self.run_id = args, target, rec.run_id
        box = state.load(target.box) if target.box else None
        self.grouped = bool(recover.group_of_box(box))
        # The instance the run was started on: the state may have moved on since (another
        # command followed the group first), and then the first connect says so and waits too.
        since = (
            [r for r in ((box.extra or {}).get("replaced") or []) if r.get("at", 0) >= rec.created - 1.0] if box else []
        )
        self.instance = since[0]["instance"] if since else (box.instance_id if box is not None else None)
        self.deadline: float | None = None  # set while a replacement is awaited

    def __call__(self):
        from box.layout import BoxLayout
        from remote import job
        from remote.connection import run

        t = self._group_instance() if self.grouped else _current(self.target)
        if self.deadline is None:
            return connect_box(self.args, t)
        run_dir = BoxLayout(t.workdir).run(self.run_id)
        waiting = (
            f"waiting for {self.instance} to answer SSH and resume run {self.run_id} "
            f"(its agent restores it from S3; up to {_span(REPLACEMENT_WAIT_S)}); Ctrl-C detaches"
        )
        conn = None
        try:
            conn = connect_box(self.args, t)
            here = run(conn, job.resumed_here_command(run_dir), "asking the box for the run").strip()
            why = None if here == "here" else f"run {self.run_id} is not resumed on {self.instance} yet"
        except RemoteError as e:
            why = e.what
        if why is not None:  # not back yet: said, waited for (up to the deadline)
            if conn is not None:
                conn.close()
            self._past(why)
            raise job.NotBackYet(why, waiting)
        self.deadline = None
        return conn

    def _past(self, why: str) -> None:
        import time

        from common.errors import CloudError

        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CloudError(
                f"run {self.run_id} was not resumed on {self.instance} within {_span(REPLACEMENT_WAIT_S)} ({why})",
                f"`{PROG} logs {self.run_id} --follow` reattaches; `{PROG} pull {self.run_id}` brings home what S3 has",
            )

    def _group_instance(self) -> Target:
        """The group's instance now (the state follows it); a replacement is said once."""
        import time

        import sandbox  # noqa: F401 (a sandbox box's cloud: the package registers it with common/aws.py)
        from common import state
        from common.errors import CloudError
        from provision import lifecycle, recover

        box = state.load(self.target.box) if self.target.box else None
        if box is None:
            return self.target
        try:
            inst = lifecycle.find_instance(lifecycle.cloud_of(box), box.name)
        except recover.GroupStopped:
            raise  # stopped (`provision stop`, its guard): nothing comes back to wait for; said as it is
        except CloudError as e:  # no instance now (the group is launching one), or AWS away
            raise RemoteError(e.what) from e
        if inst.state != "running":
            raise RemoteError(f"box '{box.name}''s instance {inst.id} is {inst.state}")
        box = state.load(box.name) or box
        if inst.id != self.instance:
            say(
                f"instance {self.instance} was terminated (spot); {inst.id} in {inst.zone} is resuming run {self.run_id}"
            )
            self.instance = inst.id
            self.deadline = time.monotonic() + REPLACEMENT_WAIT_S
        return dataclasses.replace(self.target, host=box.ssh_host, port=box.ssh_port)


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _current(target: Target) -> Target:
    """target with its provisioned box's address as it is now: a box that was stopped and
    started, or brought back by its spot request, may have another IP (or sandbox port).
    On AWS the address is asked of AWS (lifecycle.status refreshes the state), and a box
    that is not running is a RemoteError (a follower waits on, nothing to connect to); in
    the sandbox, `provision start` has written it into the state. A --host target, or a
    box with no state any more, is returned as it is."""
    from common import state

    box = state.load(target.box) if target.box else None
    if box is None:
        return target
    if not box.sandbox:
        from common.errors import CloudError
        from provision import lifecycle

        try:
            now = lifecycle.status(lifecycle.cloud_of(box), box.name).state
        except CloudError:  # AWS unreachable from here now: try the address we have
            return target
        if now != "running":
            raise RemoteError(f"box '{box.name}' is {now}", "it resumes its runs when it is back")
        box = state.load(box.name) or box
    return dataclasses.replace(target, host=box.ssh_host, port=box.ssh_port)


@contextlib.contextmanager
def whose_code(rec: records.RunRecord | None, run_id: str):
    """A trainbox error while a run starts or is followed ends with one more
    line: the code is trainbox's, and what is known of the command's."""
    try:
        yield
    except TrainboxError as e:
        if isinstance(e, TrainingFailed) or e.after:
            raise
        if rec is None:
            theirs = "your command did not start"
        elif rec.exit_code is not None:
            theirs = f"your command's code is {rec.exit_code}"
        else:
            theirs = f"your command's code is not known here (`{PROG} status {run_id}` asks the box)"
        e.after = f"{PROG}: trainbox: exit {e.exit_code} ({MEANING.get(e.exit_code, 'its own error')}); {theirs}"
        raise


def collect(args, target: Target, rec: records.RunRecord, offset: int = 0) -> int:
    """Follow the run to its end, bring its results home, exit as it did."""
    # A provisioned box is waited for while it is away (a spot stop, a stopped box): its
    # agent resumes the run at boot, and its address is read anew (it may change).
    with whose_code(rec, rec.run_id):
        got = orchestrate.follow_and_collect(
            _Follower(args, target, rec),
            target,
            rec,
            say,
            offset=offset,
            pull_every=args.pull_every,
            reconnect_for=None if target.box else 300.0,
            tty=sys.stdout.isatty(),
        )
    if got.detached:
        say(f"\ndetached from run {rec.run_id}; it keeps running on the box")
        print_reattach(args, rec.run_id)
        return 130
    say(f"results of run {rec.run_id}: {got.local_dir}/ ({got.files} files)")
    summary = builtin.summary(got.local_dir) if rec.kind == "train" else ""
    if summary:
        print(summary)
    from remote import report

    page = report.refresh(rec)  # the box's page, with the duration and cost the laptop knows
    if page:
        say(f"report: {page}")
    if got.exit_code == 0:
        return 0
    # No tail of the log here: it was just followed, and its last lines (a traceback) are on the screen.
    if got.exit_code is None and got.stopped:
        raise TrainingFailed(
            f"run {rec.run_id} was stopped before it finished",
            f"continue it with `{PROG} {rec.kind} --resume {rec.run_id}{name_flags(args)}`",
            code=SIGTERMED,
            after=f"{PROG}: your command was stopped (`{PROG} stop`'s TERM: exit {SIGTERMED}, 128+15)",
        )
    why = f"exit {got.exit_code}" if got.exit_code is not None else "it died without an exit code (killed?)"
    what = "training" if rec.kind == "train" else "the command"
    said = (
        [line[len("error: ") :] for line in got.tail.splitlines() if line.startswith("error: node ")]
        if rec.nodes
        else []
    )
    # The job's own code, passed through (`remote train`'s too: the model's); no code: as if killed (128+9).
    after = (
        None
        if got.exit_code is not None
        else f"{PROG}: your command died leaving no exit code (killed?): exit {SIGKILLED}, as for a kill (128+9)"
    )
    raise TrainingFailed(
        f"{what} failed on the box ({why})" + (f": {said[-1]}" if said else ""),
        f"see {got.local_dir / 'train.log'}",
        code=got.exit_code or SIGKILLED,
        after=after,
    )
