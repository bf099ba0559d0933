"""The callbacks of a run, and the repair of a resume state cut mid-write.

Their order keeps the run folder consistent on a kill (see make_callbacks).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable

from model import run_files

Log = Callable[[str], None]
# How much training an interruption that gives no notice can cost at most.
SAVE_EVERY_S = 60.0


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
        run_files.read_json(meta)
        return None
    except ValueError:
        pass
    prev_meta, prev_weights = f"{meta}.bkp", f"{weights}.bkp"
    try:
        if os.path.exists(prev_weights) and run_files.read_json(prev_meta) is not None:
            shutil.copyfile(prev_weights, weights)
            shutil.copyfile(prev_meta, meta)
            return "the resume state was cut mid-write; resuming from the epoch before"
    except ValueError:
        pass
    for path in (meta, weights, prev_meta, prev_weights):
        if os.path.exists(path):
            os.remove(path)
    return "the resume state was cut mid-write and has no good copy; starting over"


def make_callbacks(
    out: str,
    epochs: int,
    patience: int | None,
    log: Log,
    records: dict[int, dict[str, float]],
    stream_lines: bool,
    mid_epoch: bool = True,
) -> list:
    """The run's callbacks, in an order that keeps the files consistent on a kill.

    The history is written before BackupAndRestore saves the epoch, and the
    checkpoints after it: so once ``checkpoints/last.keras`` shows epoch k,
    both the backup and the history hold epoch k. The first one is the
    HistoryWriter, whose ``first_epoch`` says where the run (re)started.
    ``mid_epoch=False``: saves at epoch ends only (a multi-node run: every
    node must resume at the same step, and only epoch ends are in lockstep).
    """
    import keras

    from model.save_request import save_on_request

    backup_dir = os.path.join(out, run_files.BACKUP)

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
                    log(f"resuming from {backup_dir} at epoch {epoch + 1}/{epochs}")

        def on_epoch_end(self, epoch, logs=None):
            records[epoch + 1] = {k: float(v) for k, v in (logs or {}).items()}
            run_files.write_history(out, records)

    class EpochLine(keras.callbacks.Callback):
        """One plain, flushed line per epoch, for logs that are not a terminal."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            metrics = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
            log(f"epoch {epoch + 1}/{epochs}  {metrics}  ({time.monotonic() - self.t0:.1f}s)")

    note = repair_backup(backup_dir)
    if note:
        log(f"warning: {note}")
    best_so_far = min((r["val_loss"] for r in records.values() if "val_loss" in r), default=None)
    backup = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False, double_checkpoint=True)
    callbacks = [
        HistoryWriter(),
        backup,
        # The epoch's line right after its resume state is saved (before a SIGTERM's
        # exit at that epoch end): a log that says "epoch k" means a cut from then
        # on resumes after epoch k.
        *([EpochLine()] if stream_lines else []),
        # Mid-epoch saves: when the box's agent asks (a spot notice, the box
        # stopping), on SIGTERM (then it exits 143), and every SAVE_EVERY_S
        # seconds (a power cut asks nothing).
        *([save_on_request(backup, every_s=SAVE_EVERY_S, log=log)] if mid_epoch else []),
        atomic_checkpoint(keras, os.path.join(out, run_files.LAST)),
        atomic_checkpoint(
            keras,
            os.path.join(out, run_files.BEST),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_so_far,  # a resumed run keeps its best
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out, run_files.TENSORBOARD)))
    else:  # TF's tf.summary needs the tensorboard package; training does not
        log("warning: tensorboard is not installed, so no TensorBoard logs (pip install tensorboard)")
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience))
    return callbacks


def temp_name(path: str) -> str:
    """Where a .keras file is written before it is renamed over path (Keras
    wants the .keras suffix; the dot keeps it out of a glance at the folder)."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail.removesuffix('.keras')}.tmp.keras")


def save_atomic(model, path: str) -> None:
    """model.save(path) so that path is always the old file or the new one, whole:
    written to a temp name, renamed over it; a failed write (a full disk) removes the temp."""
    tmp = temp_name(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_checkpoint(keras, path: str, **kwargs):
    """Keras's ModelCheckpoint, but a checkpoint is replaced only once the new
    one is whole (save_atomic): a write cut by a full disk or a kill leaves
    the previous checkpoint."""

    class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
        def _save_model(self, epoch, batch, logs):
            try:
                super()._save_model(epoch, batch, logs)
                if os.path.exists(self.filepath):
                    os.replace(self.filepath, path)
            except BaseException:
                if os.path.exists(self.filepath):
                    os.remove(self.filepath)
                raise

    return AtomicCheckpoint(temp_name(path), **kwargs)
