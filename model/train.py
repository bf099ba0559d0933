"""Train one run: everything it writes lives in the run folder ``OUT``.

::

    OUT/run.json                 settings, classes, status (running|complete)
    OUT/model.keras              the final model
    OUT/checkpoints/last.keras   saved after every epoch
    OUT/checkpoints/best.keras   saved when val_loss improves
    OUT/history.csv, .json       one row / one list entry per epoch, whole run
    OUT/tensorboard/             TensorBoard logs
    OUT/backup/                  BackupAndRestore's state while running
    OUT/metrics.json, *.png      the report (see ``model.report``)

Resume: run the same command again after a kill. BackupAndRestore restores
the weights, the optimizer and the epoch, and the history files are merged
by epoch number (rows of epochs that get re-run are replaced), so a finished
run always holds exactly one row per epoch. A run that already completed is
not trained again.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

from model.errors import TrainingError, UsageError
from model.layout import Layout, scan_layout
from model import MODES, NETS, VGG16_MIN_SIZE

Log = Callable[[str], None]
# Settings that must match to resume a run folder.
RESUME_KEYS = ("net", "mode", "image_size", "batch_size", "augment")
AUGMENT = ("full", "light", "none")


@dataclass
class TrainConfig:
    """What ``python -m model train`` takes; see its --help."""

    data: str
    out: str
    epochs: int = 10
    net: str = "cnn"
    mode: str = "bottleneck"
    batch_size: int = 32
    image_size: int = 150
    lr: float | None = None
    seed: int = 0
    weights: str | None = None  # "imagenet" | path | "none"; None: net's default
    init: str | None = None
    patience: int | None = None
    strict: bool = False
    gpus: str | None = None
    cache: bool = True
    augment: str = "full"  # full: crop/flip + in-model rotation/zoom; light: crop/flip; none
    save_every: float = 60.0  # seconds between mid-epoch saves of the resume state (0: epoch ends only)

    def resolved_weights(self) -> str | None:
        """VGG16 base weights for keras.applications: "imagenet", a path or None."""
        w = self.weights if self.weights is not None else ("imagenet" if self.net == "vgg16" else "none")
        return None if w == "none" else w


@dataclass
class TrainResult:
    out: str
    epochs_run: int
    history: dict[str, list[float]]
    resumed_from: int  # epoch the run started at (0: fresh start)
    already_complete: bool = False


def check_config(cfg: TrainConfig) -> None:
    """Refuse bad settings before anything slow happens (UsageError, exit 2)."""
    if cfg.net not in NETS:
        raise UsageError(f"--net {cfg.net} is unknown; choose one of {', '.join(NETS)}")
    if cfg.mode not in MODES:
        raise UsageError(f"--mode {cfg.mode} is unknown; choose one of {', '.join(MODES)}")
    if cfg.epochs < 1:
        raise UsageError(f"--epochs {cfg.epochs}: need at least 1")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size {cfg.batch_size}: need at least 1")
    minimum = VGG16_MIN_SIZE if cfg.net == "vgg16" else 16
    if cfg.image_size < minimum:
        raise UsageError(f"--image-size {cfg.image_size} is too small for {cfg.net}; use {minimum} or more")
    if cfg.lr is not None and not cfg.lr > 0:
        raise UsageError(f"--lr {cfg.lr}: the learning rate must be positive")
    w = cfg.weights
    if cfg.net == "cnn" and w not in (None, "none"):
        raise UsageError(
            f"--weights {w} applies to --net vgg16 only; to start a cnn from a saved model use --init MODEL.keras"
        )
    if w not in (None, "none", "imagenet") and not os.path.isfile(w):
        raise UsageError(f"--weights {w}: no such file; give imagenet, none, or a VGG16 notop weights file")
    if cfg.init is not None and not os.path.isfile(cfg.init):
        raise UsageError(f"--init {cfg.init}: no such file; give a model.keras or .weights.h5 from an earlier run")
    if cfg.augment not in AUGMENT:
        raise UsageError(f"--augment {cfg.augment} is unknown; choose one of {', '.join(AUGMENT)}")
    if cfg.gpus not in (None, "all"):
        raise UsageError(f"--gpus {cfg.gpus}: only 'all' is supported (MirroredStrategy over every GPU)")


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def repair_backup(backup_dir: str) -> str | None:
    """Make BackupAndRestore's state loadable after a kill cut it mid-write.

    Keras writes training_metadata.json in place, so a kill during the write
    leaves it empty, and Keras only falls back to its .bkp copies on an
    OSError. An unreadable state is replaced by the previous epoch's copy
    (double_checkpoint keeps one), or dropped if there is none.
    """
    meta = os.path.join(backup_dir, "training_metadata.json")
    weights = os.path.join(backup_dir, "latest.weights.h5")
    if not os.path.exists(meta):
        return None
    try:
        _read_json(meta)
        return None
    except ValueError:
        pass
    prev_meta, prev_weights = f"{meta}.bkp", f"{weights}.bkp"
    try:
        if os.path.exists(prev_weights) and _read_json(prev_meta) is not None:
            shutil.copyfile(prev_weights, weights)
            shutil.copyfile(prev_meta, meta)
            return "the resume state was cut mid-write; resuming from the epoch before"
    except ValueError:
        pass
    for path in (meta, weights, prev_meta, prev_weights):
        if os.path.exists(path):
            os.remove(path)
    return "the resume state was cut mid-write and has no good copy; starting over"


def write_json(path: str, data) -> None:
    """Write atomically: a kill never leaves half a file behind."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def read_history_csv(path: str) -> dict[int, dict[str, float]]:
    """{epoch (1-based): {metric: value}} from history.csv, {} if absent."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {int(row.pop("epoch")): {k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)}


def history_dict(records: dict[int, dict[str, float]]) -> dict[str, list[float]]:
    """Per-epoch records -> {metric: [value per epoch]} (Keras' History shape)."""
    keys = sorted({k for r in records.values() for k in r})
    return {k: [records[e].get(k, math.nan) for e in sorted(records)] for k in keys}


def make_callbacks(cfg: TrainConfig, log: Log, records: dict[int, dict[str, float]], stream_lines: bool):
    """The run's callbacks, in an order that keeps the files consistent on a kill.

    The history is written before BackupAndRestore saves the epoch, and the
    checkpoints after it: so once ``checkpoints/last.keras`` shows epoch k,
    both the backup and the history hold epoch k.
    """
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        """history.csv + history.json across restarts, merged by epoch."""

        def __init__(self):
            super().__init__()
            self.first_epoch: int | None = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch
                # Epochs at or after the restored one will run again.
                for e in [e for e in records if e > epoch]:
                    del records[e]
                if epoch > 0:
                    log(f"resuming from {os.path.join(cfg.out, 'backup')} at epoch {epoch + 1}/{cfg.epochs}")

        def on_epoch_end(self, epoch, logs=None):
            records[epoch + 1] = {k: float(v) for k, v in (logs or {}).items()}
            write_history(cfg.out, records)

    class EpochLine(keras.callbacks.Callback):
        """One plain, flushed line per epoch, for logs that are not a terminal."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            metrics = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
            log(f"epoch {epoch + 1}/{cfg.epochs}  {metrics}  ({time.monotonic() - self.t0:.1f}s)")

    note = repair_backup(os.path.join(cfg.out, "backup"))
    if note:
        log(f"warning: {note}")
    ckpt = os.path.join(cfg.out, "checkpoints")
    best_so_far = min((r["val_loss"] for r in records.values() if "val_loss" in r), default=None)
    from model.save_request import save_on_request

    backup = keras.callbacks.BackupAndRestore(os.path.join(cfg.out, "backup"), delete_checkpoint=False, double_checkpoint=True)
    callbacks = [
        HistoryWriter(),
        backup,
        # Mid-epoch saves: on the agent's request (spot notice), on SIGTERM, every save_every s.
        save_on_request(backup, every_s=cfg.save_every or None, log=log),
        keras.callbacks.ModelCheckpoint(os.path.join(ckpt, "last.keras")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(ckpt, "best.keras"),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far,  # a resumed run keeps its best
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    callbacks = [c for c in callbacks if c is not None]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(cfg.out, "tensorboard")))
    else:  # TF's tf.summary needs the tensorboard package; training does not
        log("warning: tensorboard is not installed, so no TensorBoard logs (pip install tensorboard)")
    if stream_lines:
        callbacks.append(EpochLine())
    if cfg.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience))
    return callbacks


def write_history(out: str, records: dict[int, dict[str, float]]) -> None:
    keys = sorted({k for r in records.values() for k in r})
    tmp = os.path.join(out, "history.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for e in sorted(records):
            w.writerow([e, *(records[e].get(k, "") for k in keys)])
    os.replace(tmp, os.path.join(out, "history.csv"))
    write_json(os.path.join(out, "history.json"), history_dict(records))


def make_strategy(gpus: str | None):
    """Default strategy, or MirroredStrategy over every GPU (``--gpus all``).

    Without GPUs, "all" mirrors over the logical CPU devices (tests split the
    CPU in two to exercise the same code path).
    """
    import tensorflow as tf

    if gpus is None:
        return tf.distribute.get_strategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def describe(layout: Layout) -> str:
    counts = layout.counts()
    per = ", ".join(f"{c} {counts['train'][c]}/{counts['validation'][c]}" for c in layout.classes)
    return f"{len(layout.train)} train / {len(layout.validation)} validation images ({per})"


def train(cfg: TrainConfig, log: Log = print, stream_lines: bool = True) -> TrainResult:
    """Train ``cfg.net`` on ``cfg.data`` into ``cfg.out``, resuming if it can.

    Layout and settings are checked before TensorFlow is imported. Raises
    UsageError/DataError (exit 2) for bad input and TrainingError (exit 1)
    when training diverges; other errors from Keras propagate (exit 1).
    ``stream_lines`` prints one line per epoch (for non-terminal output).
    """
    check_config(cfg)
    layout = scan_layout(cfg.data, strict=cfg.strict)
    os.makedirs(os.path.join(cfg.out, "checkpoints"), exist_ok=True)
    run_path = os.path.join(cfg.out, "run.json")
    settings = asdict(cfg)
    previous = _read_json(run_path)
    if previous is not None:
        changed = [k for k in RESUME_KEYS if previous["config"].get(k) != settings[k]]
        if changed:
            k = changed[0]
            raise UsageError(
                f"{cfg.out} holds a run with {k}={previous['config'][k]}, not {settings[k]}; "
                "rerun with the same settings to resume it, or choose a new --out"
            )
    records = read_history_csv(os.path.join(cfg.out, "history.csv"))
    if previous is not None and previous.get("status") == "complete":
        log(f"{cfg.out} already holds a complete run ({len(records)} epochs); choose a new --out to train again")
        if not os.path.exists(os.path.join(cfg.out, "metrics.json")):
            from model.report import write_report

            write_report(cfg.out, log=log)
        return TrainResult(cfg.out, len(records), history_dict(records), len(records), already_complete=True)

    run_info = {
        "config": settings,
        "data": layout.root,
        "classes": layout.classes,
        "counts": layout.counts(),
        "skipped": [{"path": p, "why": why} for p, why in layout.skipped],
        "status": "running",
    }
    write_json(run_path, run_info)

    import keras
    import tensorflow as tf

    from model import nets
    from model.pipeline import make_dataset

    keras.utils.set_random_seed(cfg.seed)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(cfg.gpus)
    log(
        f"training {cfg.net}{'/' + cfg.mode if cfg.net == 'vgg16' else ''} on {describe(layout)}, "
        f"{cfg.image_size} px, batch {cfg.batch_size}, {strategy.num_replicas_in_sync} replica(s), "
        f"{'GPU mixed precision' if has_gpu else 'CPU'}"
    )
    if layout.skipped:
        log(f"skipped {len(layout.skipped)} unreadable or non-image file(s) (listed in {run_path})")

    train_ds = make_dataset(
        layout.train,
        cfg.image_size,
        cfg.batch_size,
        training=True,
        seed=cfg.seed,
        cache=cfg.cache,
        augment=cfg.augment != "none",
    )
    val_ds = make_dataset(layout.validation, cfg.image_size, cfg.batch_size, training=False, cache=cfg.cache)
    lr = cfg.lr if cfg.lr is not None else nets.default_lr(cfg.net, cfg.mode)
    with strategy.scope():
        model = nets.build(
            cfg.net,
            cfg.image_size,
            len(layout.classes),
            mode=cfg.mode,
            weights=cfg.resolved_weights(),
            augment=cfg.augment == "full",
            seed=cfg.seed,
        )
        if cfg.init:
            model.load_weights(cfg.init)
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )

    callbacks = make_callbacks(cfg, log, records, stream_lines)
    # The dataset's length is unknown to Keras (unreadable files may be
    # dropped), so it warns at the end of the first epoch: expected, not news.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=0 if stream_lines else 1,
        shuffle=False,  # the dataset shuffles itself
    )
    history = history_dict(records)
    first = callbacks[0].first_epoch or 0
    if any(not math.isfinite(v) for v in history.get("loss", [])):
        raise TrainingError(
            f"the loss became NaN or infinite by epoch {len(history['loss'])}; lower --lr (now {lr}) and retrain into a new --out"
        )

    model.save(os.path.join(cfg.out, "model.keras"))
    run_info.update(status="complete", epochs_run=len(records), lr=lr)
    write_json(run_path, run_info)
    shutil.rmtree(os.path.join(cfg.out, "backup"), ignore_errors=True)
    log(f"saved {os.path.join(cfg.out, 'model.keras')} after {len(records)} epoch(s)")

    from model.report import write_report

    write_report(cfg.out, model=model, layout=layout, log=log)
    return TrainResult(cfg.out, len(records), history, first)
