"""``remote``: run code on the box from the laptop, and bring every result home (main).

Thin on purpose: the command line is in remote_args; each handler (remote_run,
remote_watch, remote_setup) calls the library (orchestrate for runs; job,
results, records, setup, fetch; tensorboard, runs_table, report for watching
them) and prints.
"""

from __future__ import annotations

import sys

from common.cliutil import run_cli

from .remote_reach import PROG


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)  # as typed: what a message repeats to retry
    tail = None
    if "--" in argv:  # `remote run [options] -- COMMAND [ARGS...]`: everything after is the command, untouched
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1 :]
    from .remote_args import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.given = given
    # --host and --workdir are lists for a multi-node `train`; one value everywhere else.
    args.hosts, args.workdirs = args.host or [], args.workdir or []
    if args.command != "train" and (len(args.hosts) > 1 or len(args.workdirs) > 1):
        parser.error("--host and --workdir are given once (several --host: `remote train` over several nodes)")
    args.host, args.workdir = (args.hosts or [None])[0], (args.workdirs or [None])[0]
    if args.command == "run":
        if extra:
            parser.error(
                f"unrecognized arguments: {' '.join(extra)} (the command goes after --: `{PROG} run [options] -- COMMAND`)"
            )
        args.argv = tail or []
    elif args.command == "train":
        extra += tail or []
    elif extra or tail is not None:
        parser.error(f"unrecognized arguments: {' '.join(extra + (['--'] if tail is not None else []) + (tail or []))}")
    return run_cli(lambda a: a.func(a, extra), args)
