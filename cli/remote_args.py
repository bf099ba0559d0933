"""`remote`'s command line: every command, flag and help text (the handlers are in remote_run, remote_watch, remote_setup)."""

from __future__ import annotations

import argparse

from common.checks import name_arg, run_id_arg
from common.cliutil import EXIT_CODES_EPILOG, Parser, positive_float, positive_int
from remote.orchestrate import PROJECT_LIMIT_BYTES, human

from . import remote_run, remote_setup, remote_watch

BACKENDS = ("tensorflow", "jax")  # remote/setup.py's BACKENDS (not imported: --help stays light)

PROG = "remote"


def _setup_flags(c) -> None:
    c.add_argument(
        "--index-url",
        help="the package index the box installs from (env TRAINBOX_INDEX_URL; default: the box's pip config, else PyPI)",
    )
    c.add_argument(
        "--find-links",
        action="append",
        metavar="DIR_OR_URL",
        help="also look for wheels here, as the box sees it (repeatable; env TRAINBOX_FIND_LINKS)",
    )
    c.add_argument("--no-index", action="store_true", help="only --find-links, no index (env TRAINBOX_NO_INDEX=1)")
    c.add_argument("--no-jupyter", action="store_true", help="leave jupyterlab out (env TRAINBOX_JUPYTER=0)")
    c.add_argument(
        "--installer",
        choices=["auto", "uv", "pip"],
        help="auto: uv when it can be had, else pip (env TRAINBOX_INSTALLER)",
    )
    c.add_argument(
        "--box-python", help="the box's Python 3 the env is made from (default: python3; env TRAINBOX_BOX_PYTHON)"
    )
    c.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the environment of this Keras backend (default: tensorflow; jax's is its own, env-jax)",
    )


def _monitor_flag(c) -> None:
    c.add_argument(
        "--monitor",
        metavar="METRIC",
        help="the metric whose best value is shown, as Keras names it (default: val_accuracy for `remote train`, "
        "val_loss for `remote run`; accuracies are best highest, losses lowest)",
    )


def build_parser() -> Parser:
    """The parser; each command calls its handler (remote_run, remote_watch, remote_setup)."""
    p = Parser(
        prog=PROG,
        description="Train on the box from this laptop; bring every result home.",
        epilog=EXIT_CODES_EPILOG.replace(
            "exit codes: 0 success;",
            "exit codes: 0 success; run/train: your command's own code "
            "when it fails (passed through; killed by signal N: 128+N);",
        ),
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(name, func, help, parent=None):
        c = (parent or sub).add_parser(name, help=help, description=help)
        c.add_argument("--name", default="default", type=name_arg, help="the provisioned box (default: %(default)s)")
        c.add_argument(
            "--host",
            action="append",
            help="any SSH host instead: [user@]host[:port] (train: repeat it for a multi-node run, node 0 first)",
        )
        c.add_argument("--identity", help="private key for --host")
        c.add_argument(
            "--connect-timeout",
            type=positive_float,
            default=30.0,
            help="seconds to keep trying to connect (default: %(default)s)",
        )
        c.add_argument(
            "--start", action="store_true", help="start the provisioned box first if it is stopped (and wait for it)"
        )
        c.add_argument(
            "--workdir",
            action="append",
            help="trainbox's directory on the box (default: the box's, or `trainbox` in the "
            "login's home; train with several --host: one for all, or one per host)",
        )
        c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")
        c.set_defaults(func=func)
        return c

    def run_flags(c, what: str) -> None:
        c.add_argument(
            "--resume",
            metavar="RUN",
            type=run_id_arg,
            help=f"start a stopped or killed run again in its run dir ({what}): on the box it ran on, or, "
            "with --name/--host, on another box from the local copy that `remote pull` or `provision down` brought home",
        )
        c.add_argument("--quiet", action="store_true", help="no download progress lines")
        c.add_argument("--python", help="the interpreter on the box to run with (default: trainbox's environment)")
        c.add_argument("--detach", action="store_true", help="start the job and return at once")
        c.add_argument(
            "--runs-dir", default="runs", help="where results land locally (default: %(default)s/; never pushed)"
        )
        c.add_argument(
            "--pull-every",
            type=positive_float,
            default=60.0,
            help="seconds between checkpoint pulls while it runs (default: %(default)s)",
        )
        c.add_argument(
            "--yes",
            "-y",
            action="store_true",
            help=f"push a project over {human(PROJECT_LIMIT_BYTES)} without asking; start the run even when the same "
            "command's earlier start was cut and that run is running",
        )
        c.add_argument(
            "--backend",
            choices=BACKENDS,
            help="Keras's backend (KERAS_BACKEND) and the environment it runs in on the box "
            "(default: tensorflow; jax: jax, with CUDA where the box has a GPU, plus TensorFlow's CPU build for tf.data)",
        )

    data_help = (
        "an http(s):// URL of a .zip/.tar/.tar.gz/.tgz (optionally #sha256=HEX) or s3://bucket/prefix, "
        "downloaded by the box itself and cached there"
    )
    c = command(
        "run",
        remote_run.cmd_run,
        "Push your project, make its environment ready (trainbox's TensorFlow/Keras + its requirements), "
        "run COMMAND detached in it on the box, stream the log, pull $TRAINBOX_OUT into runs/RUN-ID/, exit as COMMAND did (its own code, passed through).",
    )
    c.usage = f"{PROG} run [--code DIR] [--data SRC] [--requirements FILE] [--out PATH] [--detach] [options] -- COMMAND [ARGS...]"
    c.add_argument(
        "--code",
        default=".",
        help="the project to push (default: the current directory; .gitignore and .trainboxignore rules apply)",
    )
    c.add_argument(
        "--data", metavar="SRC", help=f"the data, as $TRAINBOX_DATA on the box: a local directory (pushed), {data_help}"
    )
    c.add_argument(
        "--requirements",
        metavar="FILE",
        help="installed on the box beside trainbox's pins (default: the project's requirements.txt, if any)",
    )
    c.add_argument(
        "--out",
        default="out",
        metavar="PATH",
        help="$TRAINBOX_OUT, what comes home: a folder in the run's dir on the box (default: %(default)s)",
    )
    run_flags(c, "the same command; $TRAINBOX_RESUMED counts the restarts")
    c.set_defaults(argv=[])

    c = command(
        "train",
        remote_run.cmd_train,
        "The built-in `run`: push the model package and the data, train detached on the box, stream the log, pull the results into runs/RUN-ID/.",
    )
    c.add_argument("--epochs", type=positive_int, help="epochs to train (required, unless --resume)")
    c.add_argument(
        "--data",
        metavar="SRC",
        help=f"a local dataset directory (train/ and validation/, one folder per class), {data_help}; "
        "default: a synthetic set",
    )
    c.add_argument("--net", choices=["cnn", "vgg16"], help="the network (model default: cnn)")
    c.add_argument(
        "--mode",
        choices=["bottleneck", "finetune"],
        help="vgg16 only: train a head on frozen features, or fine-tune the last block",
    )
    c.add_argument("--batch-size", type=positive_int)
    c.add_argument("--image-size", type=positive_int)
    c.add_argument("--lr", type=positive_float)
    c.add_argument("--seed", type=int)
    c.add_argument("--weights", help="vgg16 weights: imagenet (downloaded on the box), none, or a path on the box")
    c.add_argument("--patience", type=positive_int, help="early stopping patience in epochs")
    c.add_argument(
        "--nodes",
        type=positive_int,
        help="data-parallel training over N nodes (one --host each, node 0 first), "
        "on Keras's JAX backend; --batch-size is the global batch",
    )
    run_flags(c, "it continues from its last saved epoch")

    for name, func, help in (
        (
            "logs",
            remote_watch.cmd_logs,
            "Print a run's log (default: the latest run); --follow streams it until the run ends, then pulls.",
        ),
        ("status", remote_watch.cmd_status, "Say whether a run is running, succeeded or failed."),
        ("stop", remote_watch.cmd_stop, "Stop a running job on the box."),
        ("pull", remote_watch.cmd_pull, "Bring a run's results home into runs/RUN-ID/."),
    ):
        c = command(name, func, help)
        c.add_argument("run", nargs="?", type=run_id_arg, help="the run id (default: the latest)")
        if name == "logs":
            c.add_argument(
                "--follow", "-f", action="store_true", help="stream until the run ends, then pull its results"
            )
            c.add_argument("--pull-every", type=positive_float, default=60.0, help=argparse.SUPPRESS)
    c = command(
        "setup",
        remote_setup.cmd_setup,
        "Install trainbox's own Python environment on the box (pinned TensorFlow, Keras, ...); a no-op when it is ready.",
    )
    _setup_flags(c)
    c.add_argument("--force", action="store_true", help="rebuild even if the environment is ready")
    c.add_argument(
        "--code",
        metavar="DIR",
        help="build this project's own environment instead (trainbox's pins + its requirements, as `remote run` does)",
    )
    c.add_argument(
        "--requirements",
        metavar="FILE",
        help="with --code: the project's requirements (default: its requirements.txt)",
    )
    c = command(
        "doctor",
        remote_setup.cmd_doctor,
        "Report the box's environment (a project's own when it has requirements: --code): ready or why not "
        "(stale requirements too), versions against the laptop's pins, GPUs, driver, CUDA, disk.",
    )
    _setup_flags(c)
    c.add_argument("--python", help="report on this interpreter on the box instead of trainbox's environment")
    c.add_argument(
        "--code",
        default=".",
        help="the project whose environment to check, as `remote run --code` (default: the current directory): "
        "with requirements, its own environment on the box is checked instead of trainbox's",
    )
    c.add_argument(
        "--requirements",
        metavar="FILE",
        help="the project's requirements, as `remote run --requirements` (default: its requirements.txt, if any)",
    )
    c = command(
        "runs",
        remote_watch.cmd_runs,
        "List the runs started from this laptop: box, net/backend, epochs done/asked, the best value of the "
        "monitored metric and its epoch, duration, cost, state, and whether their results are home (from what the "
        "pulls brought: history.json, Keras's history.csv or TensorBoard event files; it asks no box, except about a run whose start was cut: 'start unconfirmed').",
    )
    c.add_argument("--json", action="store_true", help="the same fields as JSON, one object per run")
    _monitor_flag(c)
    c.add_argument(
        "--price",
        type=positive_float,
        metavar="USD_PER_HOUR",
        help="the box's price per hour for the cost (default: the box's, recorded when the run started)",
    )
    c = command(
        "compare",
        remote_watch.cmd_compare,
        "Compare pulled runs: their loss and accuracy curves in one PNG (printed, not opened), "
        "their best and final metrics, and the arguments that differ.",
    )
    c.add_argument(
        "runs", nargs="+", metavar="RUN", type=run_id_arg, help="two or more run ids (`remote runs` lists them)"
    )
    c.add_argument("--out", metavar="PNG", help="where the figure goes (default: runs/compare-RUN-RUN.png)")
    c.add_argument("--runs-dir", default="runs", help=argparse.SUPPRESS)
    _monitor_flag(c)

    c = command(
        "tb",
        remote_watch.cmd_tb,
        "TensorBoard for the box's runs, live: started on the box once (127.0.0.1 there) and kept running, "
        "reached through an SSH tunnel at a local http://127.0.0.1:PORT/ printed here; runs until Ctrl-C.",
    )
    c.add_argument(
        "runs", nargs="*", metavar="RUN", type=run_id_arg, help="the runs to show (default: every run of the box)"
    )
    c.add_argument(
        "--local-port",
        type=positive_int,
        metavar="PORT",
        help="the laptop's port of the tunnel (default: the box's, else a free one)",
    )
    c.add_argument(
        "--local",
        action="store_true",
        help="serve the pulled runs' logs from this laptop instead (TensorBoard from `pip install 'trainbox[view]'`)",
    )
    c.add_argument(
        "--stop", action="store_true", help="end the box's TensorBoard servers (`provision down` ends them too)"
    )

    c = command(
        "report",
        remote_watch.cmd_report,
        "Write a pulled run's report.html again (runs/RUN-ID/report.html: curves, confusion matrix, "
        "grids, metrics, arguments, duration and cost), here, from what the pull brought; prints its path.",
    )
    c.add_argument("run", nargs="?", type=run_id_arg, help="the run id (default: the latest)")
    c.add_argument(
        "--price",
        type=positive_float,
        metavar="USD_PER_HOUR",
        help="the box's price per hour for the cost (default: the box's, recorded when the run started)",
    )

    data = sub.add_parser(
        "data",
        help="The box's dataset cache: fetch a URL or S3 prefix onto the box ahead of training, list, free.",
        description="The box's dataset cache (remote data fetch|ls|rm).",
    )
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION", parser_class=Parser)
    c = command(
        "fetch",
        remote_setup.cmd_data_fetch,
        "Have the box download SRC into its cache (a re-run downloads only what changed).",
        dsub,
    )
    c.add_argument(
        "src", metavar="SRC", help="http(s)://.../set.tar.gz[#sha256=HEX] (or .zip/.tar/.tgz), or s3://bucket/prefix"
    )
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c = command("ls", remote_setup.cmd_data_ls, "List the datasets cached on the box, with their sizes.", dsub)
    c = command(
        "rm",
        remote_setup.cmd_data_rm,
        "Remove a dataset from the box's cache (KEY as `remote data ls` shows it).",
        dsub,
    )
    c.add_argument("key", metavar="KEY")
    for c in dsub.choices.values():
        c.add_argument("--python", help="the box's Python 3 that runs the fetch (default: the box's python3)")
    return p
