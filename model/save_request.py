"""Save now when asked, and every so often: what an interruption can cost is bounded here.

The agent (box/agent.py) creates the file named by ``TRAINBOX_SAVE_REQUEST``
(``save-now`` in the run folder; run.sh exports it) on a spot notice or when
the box is stopping. At the next batch end this callback has
BackupAndRestore write its state (weights, optimizer, epoch) at once, then
answers with ``saved`` beside the request, a JSON line
``{"at": UNIX_TIME, "epoch": E, "batch": B}``, and removes the request.
It also saves every ``every_s`` seconds of training (a power cut, which no
notice announces, then loses at most that much). The check is one stat per
batch.

SIGTERM (the box shutting down: ``provision stop``, a spot stop, the cost
guard; or ``remote stop``) is a request too: the state is saved at the next
batch end, then training exits with 143 (128 + SIGTERM) instead of dying
mid-batch, so a clean stop loses at most one batch of learning. The job's
shell dies of the same signal and writes no exit code: the run counts as
interrupted (resumed at the next boot) unless ``remote stop`` marked it
stopped.

Keras's BackupAndRestore resumes at the start of the saved epoch with the
saved weights: a run cut mid-epoch repeats that epoch's batches with weights
that already learned from some of them; no finished epoch is ever redone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

ENV = "TRAINBOX_SAVE_REQUEST"


def saved_path(request: str) -> str:
    return os.path.join(os.path.dirname(request), "saved")


TERM_EXIT = 128 + signal.SIGTERM


def save_on_request(
    backup, request: str | None = None, every_s: float | None = None, clock=time.monotonic, log=lambda s: None
):
    """A Keras callback that makes ``backup`` (a BackupAndRestore) save when ``request`` appears,
    on SIGTERM (then exits), and every ``every_s`` seconds if given.

    ``request`` defaults to $TRAINBOX_SAVE_REQUEST; None when neither that nor
    ``every_s`` is set (training outside the job machinery: nothing to do).
    ``log`` hears one line per save that was asked for.
    """
    import keras

    request = request or os.environ.get(ENV)
    if not request and every_s is None:
        return None

    class SaveOnRequest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.last_save = clock()
            self.terminating = False
            self._previous_handler = None

        def on_train_begin(self, logs=None):
            if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
                self._previous_handler = signal.signal(signal.SIGTERM, self._on_term)

        def _on_term(self, signum, frame):
            self.terminating = True  # acted on at the next batch end, between two steps

        def on_train_end(self, logs=None):
            if self._previous_handler is not None:
                signal.signal(signal.SIGTERM, self._previous_handler)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            # A resumed run: Keras restores the model's epoch but leaves
            # BackupAndRestore's own count at 0 until an epoch ends, so a save
            # in the first epoch after a resume would send the next one back to
            # epoch 1 (and its history with it). The count is this epoch.
            backup._current_epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            self.last_save = clock()  # BackupAndRestore saves every epoch end itself
            if self.terminating:  # the signal came after the epoch's last batch: its state is saved
                raise SystemExit(TERM_EXIT)

        def on_train_batch_end(self, batch, logs=None):
            asked = bool(request) and os.path.exists(request)
            if not (asked or self.terminating) and (every_s is None or clock() - self.last_save < every_s):
                return
            backup._save_model()  # the state BackupAndRestore restores from, written now
            self.last_save = clock()
            if asked:
                tmp = saved_path(request) + ".tmp"
                with open(tmp, "w") as f:
                    f.write(json.dumps({"at": round(time.time(), 3), "epoch": self.epoch, "batch": batch}) + "\n")
                os.replace(tmp, saved_path(request))
                try:
                    os.unlink(request)
                except FileNotFoundError:
                    pass
            if asked or self.terminating:
                why = "SIGTERM: stopping" if self.terminating else "asked"
                log(f"saved the training state at epoch {self.epoch + 1}, batch {batch + 1} ({why})")
            if self.terminating:
                raise SystemExit(TERM_EXIT)

    return SaveOnRequest()
