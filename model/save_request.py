"""Save now when asked: the box agent's spot notice (and a stopping box) reach training here.

The agent (box/agent.py) creates the file named by ``TRAINBOX_SAVE_REQUEST``
(``save-now`` in the run folder; run.sh exports it). At the next batch end
this callback has BackupAndRestore write its state (weights, optimizer,
epoch) at once, then answers with ``saved`` beside the request, a JSON line
``{"at": UNIX_TIME, "epoch": E, "batch": B}``, and removes the request.
The check is one stat per batch.
"""
from __future__ import annotations

import json
import os
import time

ENV = "TRAINBOX_SAVE_REQUEST"


def saved_path(request: str) -> str:
    return os.path.join(os.path.dirname(request), "saved")


def save_on_request(backup, request: str | None = None):
    """A Keras callback that makes ``backup`` (a BackupAndRestore) save when ``request`` appears.

    ``request`` defaults to $TRAINBOX_SAVE_REQUEST; None when neither is set
    (training outside the job machinery: nothing to watch).
    """
    import keras

    request = request or os.environ.get(ENV)
    if not request:
        return None

    class SaveOnRequest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if not os.path.exists(request):
                return
            backup._save_model()  # the state BackupAndRestore restores from, written now
            tmp = saved_path(request) + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps({"at": round(time.time(), 3), "epoch": self.epoch, "batch": batch}) + "\n")
            os.replace(tmp, saved_path(request))
            try:
                os.unlink(request)
            except FileNotFoundError:
                pass

    return SaveOnRequest()
