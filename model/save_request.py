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

Keras's BackupAndRestore resumes at the start of the saved epoch with the
saved weights: a run cut mid-epoch repeats that epoch's batches with weights
that already learned from some of them; no finished epoch is ever redone.
"""
from __future__ import annotations

import json
import os
import time

ENV = "TRAINBOX_SAVE_REQUEST"


def saved_path(request: str) -> str:
    return os.path.join(os.path.dirname(request), "saved")


def save_on_request(backup, request: str | None = None, every_s: float | None = None, clock=time.monotonic):
    """A Keras callback that makes ``backup`` (a BackupAndRestore) save when ``request`` appears,
    and every ``every_s`` seconds if given.

    ``request`` defaults to $TRAINBOX_SAVE_REQUEST; None when neither that nor
    ``every_s`` is set (training outside the job machinery: nothing to do).
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

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            self.last_save = clock()  # BackupAndRestore saves every epoch end itself

        def on_train_batch_end(self, batch, logs=None):
            asked = bool(request) and os.path.exists(request)
            if not asked and (every_s is None or clock() - self.last_save < every_s):
                return
            backup._save_model()  # the state BackupAndRestore restores from, written now
            self.last_save = clock()
            if not asked:
                return
            tmp = saved_path(request) + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps({"at": round(time.time(), 3), "epoch": self.epoch, "batch": batch}) + "\n")
            os.replace(tmp, saved_path(request))
            try:
                os.unlink(request)
            except FileNotFoundError:
                pass

    return SaveOnRequest()
