"""`remote setup|doctor` and `remote data fetch|ls|rm`: the box's environment and its data set cache."""

from __future__ import annotations

import shlex
from pathlib import Path

from box.layout import BoxLayout
from common.checks import clean
from common.cliutil import say
from common.errors import RemoteError, UsageError
from remote import orchestrate
from remote.builtin import model_package_dir
from remote.orchestrate import human as _human
from remote.target import Target

from .remote_reach import PROG, box_session, name_flags, resolve_target
from .remote_run import requirements_of


def _data_python(target: Target) -> str:
    return target.python or "python3"


def cmd_data_fetch(args, extra) -> int:
    from remote import datasource, fetch

    source = datasource.parse(args.src)
    if isinstance(source, datasource.LocalSource):
        raise UsageError(
            f"{args.src} is a local folder: `{PROG} train --data {args.src}` pushes it",
            "`data fetch` takes an http(s):// URL, s3://bucket/prefix or kaggle:COMPETITION",
        )
    target = resolve_target(args)
    layout = BoxLayout(target.workdir)
    with box_session(args, target) as conn:
        from remote import sync

        sync.push(conn, model_package_dir(), f"{layout.code}/model")  # organizing a Kaggle layout runs it
        got = fetch.fetch(conn, source, target.workdir, _data_python(target), layout.code, quiet=args.quiet, say=say)
    state = "already cached" if got.cached else "fetched"
    print(f"{got.key} {state}: {got.files} files, {_human(got.bytes)} at {got.path} on {target.label}")
    if got.test_path:
        print(f"unlabelled test images for `python -m model predict --test`: {got.test_path}")
    return 0


def cmd_data_ls(args, extra) -> int:
    from remote import fetch

    target = resolve_target(args)
    with box_session(args, target) as conn:
        entries = fetch.ls(conn, target.workdir, _data_python(target))
    if not entries:
        print("no datasets cached on the box")
        return 0
    print(f"{'key':<40} {'size':>9} {'files':>7}  source")
    for e in entries:
        print(clean(f"{e['key']:<40} {_human(e['bytes']):>9} {e['files']:>7}  {e['source']}"))
    return 0


def cmd_data_rm(args, extra) -> int:
    from remote import fetch

    if not args.key or args.key.startswith(".") or "/" in args.key:
        raise UsageError(f"{args.key!r} is not a data set key", f"`{PROG} data ls` lists them")
    target = resolve_target(args)
    with box_session(args, target) as conn:
        gone = fetch.rm(conn, target.workdir, _data_python(target), args.key)
    print(f"removed {gone['key']} from the box ({gone['files']} files, {_human(gone['bytes'])} freed)")
    return 0


# ---------------------------------------------------------------- setup, doctor


def _setup_options(args):
    from remote import setup

    return setup.SetupOptions.from_env(
        index_url=args.index_url,
        find_links=args.find_links or None,
        no_index=args.no_index or None,
        jupyter=False if args.no_jupyter else None,
        installer=args.installer,
        python=args.box_python,
        backend=args.backend,
    )


def cmd_setup(args, extra) -> int:
    from remote import setup

    target = resolve_target(args)
    opts = _setup_options(args)
    code = Path(args.code).expanduser().resolve() if args.code else None
    requirements = requirements_of(args, code) if code else None
    if code and not code.is_dir():
        raise UsageError(f"--code {args.code}: no such directory")
    with box_session(args, target) as conn:
        if code and requirements:  # the project's own environment, as `remote run` builds it
            on_box = orchestrate.requirements_alone(conn, target.workdir, code, requirements)
            opts = orchestrate.project_options(opts, code, requirements, on_box)
        elif code:
            say(f"{code} has no requirements: it runs in trainbox's environment")
        python = setup.run_bootstrap(conn, target.workdir, opts, say, force=args.force)
    print(f"ready: {python} on {target.label}")
    return 0


def cmd_doctor(args, extra) -> int:
    from remote import doctor

    target = resolve_target(args)
    opts, project = _setup_options(args), None
    code = Path(args.code).expanduser().resolve()
    requirements = requirements_of(args, code) if code.is_dir() or args.requirements else None
    if requirements is not None and not target.python:  # the project's own environment (as `remote run` builds it)
        opts = orchestrate.project_options(opts, code, requirements)
        project = (str(code), str(requirements))
    with box_session(args, target) as conn:
        rep = doctor.diagnose(conn, target.workdir, opts, python=target.python, project=project)
    print(doctor.format_report(target.label, rep))
    if not rep.problems:
        return 0
    if project is None:
        raise RemoteError(
            f"the box's environment has problems: {'; '.join(rep.problems)}", f"run `{PROG} setup{name_flags(args)}`"
        )
    flags = f" --code {shlex.quote(str(code))}" + (
        f" --requirements {shlex.quote(str(requirements))}" if args.requirements else ""
    )
    raise RemoteError(
        f"the project's environment on the box has problems: {'; '.join(rep.problems)}",
        f"`{PROG} setup{flags}{name_flags(args)}{' --force' if rep.ready else ''}` builds it anew"
        + ("" if rep.ready else f" (as the project's next `{PROG} run` would)"),
    )
