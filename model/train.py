"""Train one run into its run folder ``OUT`` (file names: ``model.run_files``).

Resume: run the same command again after a kill. BackupAndRestore restores
the weights, the optimizer and the epoch, and the history files are merged
by epoch number (rows of epochs that get re-run are replaced), so a finished
run always holds exactly one row per epoch. A run that already completed is
not trained again. The callbacks that keep that true are in
``model.callbacks``.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import warnings
from dataclasses import asdict, dataclass

from model import MODES, NETS, VGG16_MIN_SIZE, distributed, native_log, run_files
from model.callbacks import Log, make_callbacks, save_atomic
from model.class_folders import ClassFolders, scan_folders
from model.errors import TrainingError, UsageError

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
    # A multi-node run (model.distributed): None takes TRAINBOX_NODES, TRAINBOX_NODE, TRAINBOX_COORDINATOR.
    nodes: int | None = None
    node_index: int | None = None
    coordinator: str | None = None

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


# Cross-entropy above this means probabilities of e^-10000 for the true class:
# no training that works gets there. (Keras clips probabilities only in some
# code paths, so a diverged net can report huge finite losses, not NaN.)
EXPLODED = 1e4


def diverged_at(history: dict[str, list[float]]) -> int | None:
    """The first epoch (1-based) whose loss or val_loss is NaN, infinite or over EXPLODED; None if none."""
    for key in ("loss", "val_loss"):
        for epoch, v in enumerate(history.get(key, []), 1):
            if not math.isfinite(v) or v > EXPLODED:
                return epoch
    return None


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


def describe(folders: ClassFolders) -> str:
    counts = folders.counts()
    per = ", ".join(f"{c} {counts['train'][c]}/{counts['validation'][c]}" for c in folders.classes)
    return f"{len(folders.train)} train / {len(folders.validation)} validation images ({per})"


def previous_run(cfg: TrainConfig) -> dict | None:
    """The run.json already in ``cfg.out`` (None: a fresh folder); refuses one
    whose settings differ where a resume needs them equal."""
    previous = run_files.read_json(os.path.join(cfg.out, run_files.RUN_JSON))
    settings = asdict(cfg)
    for k in RESUME_KEYS:
        if previous is not None and previous["config"].get(k) != settings[k]:
            raise UsageError(
                f"{cfg.out} holds a run with {k}={previous['config'][k]}, not {settings[k]}; "
                "rerun with the same settings to resume it, or choose a new --out"
            )
    return previous


def build_model(cfg: TrainConfig, classes: int, strategy):
    """The compiled net, its weights from ``--init`` if given; and its learning rate."""
    import keras

    from model import nets

    lr = cfg.lr if cfg.lr is not None else nets.default_lr(cfg.net, cfg.mode)
    with strategy.scope():
        model = nets.build(
            cfg.net,
            cfg.image_size,
            classes,
            mode=cfg.mode,
            weights=cfg.resolved_weights(),
            augment=cfg.augment == "full",
            seed=cfg.seed,
        )
        if cfg.init:
            model.load_weights(cfg.init)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, lr


def datasets(
    cfg: TrainConfig, folders: ClassFolders, c: distributed.Cluster = distributed.Cluster(), batch: int | None = None
):
    """The (train, validation) tf.data pipelines of the class folders: this node's
    shard of it, in batches of ``batch`` (default: the whole batch size)."""
    from model.pipeline import make_dataset

    batch = batch or cfg.batch_size
    # Several nodes: a file that breaks after the scan fails the run (its node
    # would take one step fewer than the others, who would wait for it).
    skip = not c.multi
    train_ds = make_dataset(
        distributed.shard(folders.train, c),
        cfg.image_size,
        batch,
        training=True,
        seed=cfg.seed,
        cache=cfg.cache,
        augment=cfg.augment != "none",
        skip_errors=skip,
    )
    val_ds = make_dataset(
        distributed.shard(folders.validation, c),
        cfg.image_size,
        batch,
        training=False,
        cache=cfg.cache,
        skip_errors=skip,
    )
    return train_ds, val_ds


class _OneDevice:
    """Keras on JAX has no tf.distribute strategy: the distribution is set globally (model.distributed)."""

    def __init__(self, replicas: int):
        self.num_replicas_in_sync = replicas

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def train(cfg: TrainConfig, log: Log = print, stream_lines: bool = True) -> TrainResult:
    """Train ``cfg.net`` on ``cfg.data`` into ``cfg.out``, resuming if it can.

    The data folder and the settings are checked before TensorFlow is imported. Raises
    UsageError/DataError (exit 2) for bad input and TrainingError (exit 1)
    when training diverges; other errors from Keras propagate (exit 1).
    ``stream_lines`` prints one line per epoch (for non-terminal output).
    """
    check_config(cfg)
    c = distributed.cluster(cfg.nodes, cfg.node_index, cfg.coordinator)
    cfg.nodes = c.nodes  # run.json records the run's node count
    folders = scan_folders(cfg.data, strict=cfg.strict)
    # After the checks (bad input fails before TensorFlow loads), and without its start-up notes.
    native_log.import_keras_quietly()
    os.makedirs(os.path.join(cfg.out, run_files.CHECKPOINTS), exist_ok=True)
    run_path = os.path.join(cfg.out, run_files.RUN_JSON)
    previous = previous_run(cfg)
    records = run_files.read_history_csv(os.path.join(cfg.out, run_files.HISTORY_CSV))
    if previous is not None and previous.get("status") == "complete":
        log(f"{cfg.out} already holds a complete run ({len(records)} epochs); choose a new --out to train again")
        if not os.path.exists(os.path.join(cfg.out, run_files.METRICS)):
            from model.report import write_report

            write_report(cfg.out, log=log)
        return TrainResult(cfg.out, len(records), run_files.history_dict(records), len(records), already_complete=True)

    run_info = {
        "config": asdict(cfg),
        "data": folders.root,
        "classes": folders.classes,
        "counts": folders.counts(),
        "skipped": [{"path": p, "why": why} for p, why in folders.skipped],
        "status": "running",
    }
    run_files.write_json(run_path, run_info)

    import keras

    backend = keras.backend.backend()
    distributed.check_backend(c)
    devices = distributed.join(c)  # every node's seed is the same: so are the initial weights
    keras.utils.set_random_seed(cfg.seed)
    if backend == "jax":
        import jax

        has_gpu = any(d.platform == "gpu" for d in jax.devices())
        strategy = _OneDevice(devices)
    else:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
        strategy = make_strategy(cfg.gpus)
    if has_gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    batch = distributed.local_batch(cfg.batch_size, devices, c) if c.multi else cfg.batch_size
    where = (
        f"{c.nodes} nodes (this is node {c.node}, coordinator {c.coordinator}), global batch {cfg.batch_size} "
        f"({batch} per node), {devices} device(s)"
        if c.multi
        else f"batch {cfg.batch_size}, {strategy.num_replicas_in_sync} replica(s)"
    )
    log(
        f"training {cfg.net}{'/' + cfg.mode if cfg.net == 'vgg16' else ''} on {describe(folders)}, "
        f"{cfg.image_size} px, {where}, keras on {backend}, "
        f"{'GPU mixed precision' if has_gpu else 'CPU'}"
    )
    if folders.skipped:
        log(f"skipped {len(folders.skipped)} unreadable or non-image file(s) (listed in {run_path})")

    train_ds, val_ds = datasets(cfg, folders, c, batch)
    model, lr = build_model(cfg, len(folders.classes), strategy)
    callbacks = make_callbacks(cfg.out, cfg.epochs, cfg.patience, log, records, stream_lines, mid_epoch=not c.multi)
    # The dataset's length is unknown to Keras (unreadable files may be
    # dropped), so it warns at the end of the first epoch: expected, not news.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    try:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            callbacks=callbacks,
            verbose=0 if stream_lines else 1,
            shuffle=False,
        )  # the dataset shuffles itself
    except OSError as e:
        if not disk_full(e):
            raise
        raise TrainingError(
            f"the disk is full under {cfg.out} (No space left on device) at epoch {len(records)}: "
            "the checkpoints and the resume state are those of the last epoch saved, whole; "
            "free space there, then run the same command again: it resumes from them"
        ) from e
    history = run_files.history_dict(records)
    first = callbacks[0].first_epoch or 0
    bad = diverged_at(history)
    if bad is not None:
        raise TrainingError(
            f"the loss became NaN, infinite or exploded (over {EXPLODED:g}) by epoch {bad}; "
            f"lower --lr (now {lr}) and retrain into a new --out"
        )

    save_atomic(model, os.path.join(cfg.out, run_files.MODEL))
    run_info.update(status="complete", epochs_run=len(records), lr=lr)
    run_files.write_json(run_path, run_info)
    shutil.rmtree(os.path.join(cfg.out, run_files.BACKUP), ignore_errors=True)
    log(f"saved {os.path.join(cfg.out, run_files.MODEL)} after {len(records)} epoch(s)")

    from model.report import write_report

    if c.multi:
        # Every node leaves the cluster together, now that the model is saved;
        # then the report predicts on node 0 alone, from the saved model (the
        # trained one's weights lived on every node's devices).
        distributed.leave()
        if c.primary:
            write_report(cfg.out, folders=folders, log=log)
        else:
            log(f"node {c.node}: done; node 0 writes the report")
    else:
        write_report(cfg.out, model=model, folders=folders, log=log)
    return TrainResult(cfg.out, len(records), history, first)


def disk_full(e: BaseException | None) -> bool:
    """e, or an error it was raised from, is a full disk (h5py and zipfile wrap ENOSPC in their own)."""
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False
