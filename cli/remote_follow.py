"""Following a run to its end and bringing its results home (`remote run|train`, `logs --follow`).

It rides through an interruption: a provisioned box that is away (a spot stop,
a stopped box) is waited for, and its address asked of AWS anew
(provision.lifecycle), since it may change.
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
            lambda: connect_box(args, _current(target)),
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
