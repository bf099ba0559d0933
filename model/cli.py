"""``python -m model``: parse, call one function, print.

Exit codes: 0 success, 1 training (or another command) failed, 2 bad usage
or bad data. Errors are one line on stderr (what, why, what to do); add
``--debug`` to any command for the traceback. TensorFlow is imported only by
the commands that need it (train, report, predict), so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from model import MODES, NETS
from model.errors import ModelError, UsageError

DESCRIPTION = """\
The course's cats-vs-dogs workflow: organize Kaggle's images (or synthesize
a data set), train the scratch CNN or VGG16 (bottleneck, fine-tuning) with
checkpoints and resume, report (curves, confusion matrix, right/wrong/
uncertain image grids) and predict a Kaggle submission."""

EPILOG = """\
typical run:
  python -m model synth --out data
  python -m model train --data data --out runs/cnn --epochs 2 --image-size 64
  python -m model predict --model runs/cnn/model.keras --test test1 --out submission.csv

exit codes: 0 ok, 1 training failed, 2 bad usage or bad data"""


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (UsageError, exit 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_synth(args) -> int:
    from model.synth import generate

    counts = generate(args.out, n=args.n, image_size=args.image_size, seed=args.seed)
    total = sum(sum(c.values()) for c in counts.values())
    _say(f"wrote {total} images ({args.image_size} px) to {args.out}: {counts}")
    return 0


def cmd_organize(args) -> int:
    from model.organize import organize

    counts = organize(args.src, args.dst, val_ratio=args.val_ratio, sample=args.sample, seed=args.seed)
    _say(f"organized into {args.dst}: {counts}")
    return 0


def cmd_train(args) -> int:
    from model import distributed, supervise

    c = distributed.cluster(args.nodes, args.node_index, args.coordinator)
    if c.multi and not os.environ.get(supervise.CHILD):
        # One node of several: trained in a watched child, so that the runtime
        # ending it (a peer gone) is still one line naming that peer.
        return supervise.run_node(args.argv, c, args.out)
    from model.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        net=args.net,
        mode=args.mode,
        batch_size=args.batch_size,
        image_size=args.image_size,
        lr=args.lr,
        seed=args.seed,
        weights=args.weights,
        init=args.init,
        patience=args.patience,
        strict=args.strict,
        gpus=args.gpus,
        cache=not args.no_cache,
        augment=args.augment,
        nodes=args.nodes,
        node_index=args.node_index,
        coordinator=args.coordinator,
    )
    train(cfg, log=_say, stream_lines=not sys.stdout.isatty())
    return 0


def cmd_report(args) -> int:
    from model.native_log import import_keras_quietly
    from model.report import write_report

    import_keras_quietly()
    write_report(args.run, data=args.data, log=_say, top=args.top)
    return 0


def cmd_predict(args) -> int:
    from model.native_log import import_keras_quietly
    from model.predict import predict

    import_keras_quietly()
    sub = predict(
        args.model, args.test, args.out, clip=tuple(args.clip), batch_size=args.batch_size, strict=args.strict
    )
    _say(f"wrote {sub.rows} rows (label = P({sub.positive_class})) to {sub.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="python -m model", description=DESCRIPTION, epilog=EPILOG, formatter_class=fmt, parents=[common]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser(
        "synth",
        parents=[common],
        formatter_class=fmt,
        help="generate a two-class image set (for demos and tests)",
        description="Write a generated two-class image set in the course's layout, "
        "OUT/{train,validation}/{cats,dogs}/*.jpg: warm round blobs ('cats') and cool "
        "stripes ('dogs') on noisy backgrounds. The scratch CNN learns it to > 90 %% "
        "validation accuracy in 2 epochs. 20 %% of each class goes to validation.",
    )
    p.add_argument("--out", required=True, help="folder to write (created)")
    p.add_argument("--n", type=int, default=200, help="images per class, train + validation (default 200)")
    p.add_argument("--image-size", type=int, default=64, help="side of the square images in px (default 64)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same images (default 0)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "organize",
        parents=[common],
        formatter_class=fmt,
        help="Kaggle's flat cat.N.jpg/dog.N.jpg folder -> train/validation class folders",
        description="Copy Kaggle's flat train folder (cat.123.jpg, dog.45.jpg) into "
        "DST/{train,validation}/{cats,dogs}. Deterministic for a seed; --sample N keeps "
        "N images per class (the course's small quick-check set). DST must not already "
        "hold a train/ or validation/ folder.",
    )
    p.add_argument("--src", required=True, help="Kaggle's unzipped train/ folder")
    p.add_argument("--dst", required=True, help="folder to create the layout in")
    p.add_argument("--val-ratio", type=float, default=0.2, help="fraction of each class for validation (default 0.2)")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="keep only N images per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.set_defaults(func=cmd_organize)

    p = sub.add_parser(
        "train",
        parents=[common],
        formatter_class=fmt,
        help="train cnn or vgg16, with checkpoints, resume and a report",
        description="Train a network on DATA/{train,validation}/<class>/ and write into OUT: "
        "model.keras, checkpoints/{last,best}.keras (every epoch), history.json and "
        "history.csv (whole run), tensorboard/, run.json and the report (see report "
        "--help). Rerunning the same command with the same --out after a kill resumes "
        "at the epoch it reached (state in OUT/backup); a completed run is not trained "
        "again. When stdout is not a terminal, prints one line per epoch.",
    )
    p.add_argument("--data", required=True, help="data folder in the course's layout")
    p.add_argument("--out", required=True, help="run folder (created; reuse it to resume)")
    p.add_argument("--epochs", type=int, default=10, help="total epochs of the run (default 10)")
    p.add_argument(
        "--net", choices=NETS, default="cnn", help="cnn: the article's scratch CNN; vgg16: transfer learning"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="bottleneck",
        help="vgg16 only. bottleneck: frozen base + trained head; finetune: also train block5 "
        "with a small lr (start it from a bottleneck run with --init)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="global batch size (default 32)")
    p.add_argument("--image-size", type=int, default=150, help="images are resized to SIZE x SIZE px (default 150)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3; 1e-5 for finetune)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation (default 0)")
    p.add_argument(
        "--weights",
        default=None,
        metavar="imagenet|PATH|none",
        help="VGG16 base weights: imagenet (downloaded by Keras, the default for vgg16), a notop "
        "weights file, or none (random)",
    )
    p.add_argument(
        "--init", default=None, metavar="MODEL", help="start from the weights of an earlier run's model.keras"
    )
    p.add_argument("--patience", type=int, default=None, help="stop early after P epochs without val_loss improving")
    p.add_argument("--strict", action="store_true", help="fail (exit 2) on unreadable images instead of skipping them")
    p.add_argument("--gpus", choices=["all"], default=None, help="all: MirroredStrategy over every GPU")
    p.add_argument(
        "--augment",
        choices=("full", "light", "none"),
        default="full",
        help="full (default): random crop and flip in the input pipeline plus rotation and zoom "
        "layers inside the model (on the GPU); light: crop and flip only (faster on CPU); none",
    )
    p.add_argument("--no-cache", action="store_true", help="do not keep decoded images in memory (huge data sets)")
    p.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="data-parallel over N nodes, one process each, on Keras's JAX "
        "backend (default: $TRAINBOX_NODES, else 1); --batch-size is the global batch",
    )
    p.add_argument(
        "--node-index",
        type=int,
        default=None,
        metavar="I",
        help="this process's node, 0..N-1 (default: $TRAINBOX_NODE)",
    )
    p.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="node 0's address and a free port, the same on every node (default: $TRAINBOX_COORDINATOR)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "report",
        parents=[common],
        formatter_class=fmt,
        help="curves, confusion matrix, metrics and image grids for a run",
        description="(Re)write a run's report into RUN: curves.png (loss, accuracy), "
        "confusion_matrix.png, metrics.json, predictions.csv, and the course's three grids of "
        "validation images, grid_{correct,incorrect,uncertain}.png (most confident right, "
        "most confident wrong, probability nearest 0.5), each image titled with its "
        "probability; grids.json lists their files. train runs this at its end.",
    )
    p.add_argument("--run", required=True, help="a train --out folder")
    p.add_argument("--data", default=None, help="data folder (default: the one recorded in RUN/run.json)")
    p.add_argument("--top", type=int, default=9, help="images per grid (default 9)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "predict",
        parents=[common],
        formatter_class=fmt,
        help="write a Kaggle submission (id,label = probability of dog)",
        description="Predict every image of Kaggle's flat test folder (1.jpg, 2.jpg, ...) and "
        "write OUT as id,label, label being the probability of 'dogs' clipped to "
        "[LOW, HIGH] (log loss punishes confident mistakes).",
    )
    p.add_argument("--model", required=True, help="a model.keras or checkpoint from train")
    p.add_argument("--test", required=True, help="folder of test images")
    p.add_argument("--out", default="submission.csv", help="CSV to write (default submission.csv)")
    p.add_argument(
        "--clip", type=float, nargs=2, default=(0.02, 0.98), metavar=("LOW", "HIGH"), help="default 0.02 0.98"
    )
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (testable in process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TF import
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="warning: %(message)s")
    parser = build_parser()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    args = None
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if not args.command:
            parser.print_help(sys.stderr)
            return 2
        return args.func(args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except ModelError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 (the last resort: one line, not a traceback)
        if debug:
            traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        command = getattr(args, "command", None) or "command"
        print(
            f"error: {command} failed: {type(e).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
