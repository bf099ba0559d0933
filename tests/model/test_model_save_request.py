"""model/save_request.py: the agent's save-now request makes BackupAndRestore save at the next batch end (issue 13)."""

import json
import subprocess
import sys

SCRIPT = r"""
import json, os, sys
import numpy as np
import keras
from model.save_request import save_on_request

run = sys.argv[1]
request = os.path.join(run, "save-now")
backup = keras.callbacks.BackupAndRestore(os.path.join(run, "backup"), delete_checkpoint=False)  # as model/train.py

class Agent(keras.callbacks.Callback):  # plays box/agent.py: asks mid-epoch; then the power goes
    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            open(request, "w").close()
        if batch == 3:
            os._exit(17)  # no epoch end, no clean-up: only what was saved on request is there

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = np.ones((64, 4), "float32")
model.fit(x, x[:, :1], batch_size=4, epochs=3, verbose=0, callbacks=[backup, Agent(), save_on_request(backup, request)])
"""


def test_a_save_request_is_answered_at_the_next_batch_end(model_cli, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=model_cli.repo,
        env=model_cli.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert not (tmp_path / "save-now").exists()
    saved = json.loads((tmp_path / "saved").read_text())
    assert (saved["epoch"], saved["batch"]) == (0, 2)
    assert (tmp_path / "backup" / "latest.weights.h5").stat().st_size > 0
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 0


def test_nothing_to_watch_outside_the_job_machinery(model_cli):
    code = "import os; os.environ.pop('TRAINBOX_SAVE_REQUEST', None)\nfrom model.save_request import save_on_request\nprint(save_on_request(object()))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=model_cli.repo,
        env=model_cli.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "None", proc.stderr


PERIODIC = r"""
import json, os, sys
import numpy as np
import keras
from model.save_request import save_on_request

run = sys.argv[1]
backup = keras.callbacks.BackupAndRestore(os.path.join(run, "backup"), delete_checkpoint=False)
ticks = iter(range(10**6))
clock = lambda: next(ticks) * 10.0  # each look at the clock: 10 s later

class PowerCut(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 5:
            os._exit(17)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = np.ones((64, 4), "float32")
model.fit(x, x[:, :1], batch_size=4, epochs=3, verbose=0, callbacks=[backup, save_on_request(backup, None, every_s=25, clock=clock), PowerCut()])
"""


def test_a_periodic_save_bounds_what_a_power_cut_loses(model_cli, tmp_path):
    env = {k: v for k, v in model_cli.env().items() if k != "TRAINBOX_SAVE_REQUEST"}
    proc = subprocess.run(
        [sys.executable, "-c", PERIODIC, str(tmp_path)],
        cwd=model_cli.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 0  # saved mid-epoch
    assert not (tmp_path / "saved").exists()  # nobody asked: no answer


def test_model_train_answers_a_request_from_the_run_folder(small_data, model_cli, tmp_path):
    """The wiring: `python -m model train` under run.sh's TRAINBOX_SAVE_REQUEST saves when asked."""
    request = tmp_path / "save-now"
    request.touch()  # asked before the first batch ends
    env = {**model_cli.env(), "TRAINBOX_SAVE_REQUEST": str(request)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "model",
            "train",
            "--data",
            small_data,
            "--out",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--image-size",
            "32",
        ],
        cwd=model_cli.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert not request.exists()
    assert json.loads((tmp_path / "saved").read_text())["epoch"] == 0


TERM = r"""
import os, signal, sys
import numpy as np
import keras
from model.save_request import save_on_request

run = sys.argv[1]
backup = keras.callbacks.BackupAndRestore(os.path.join(run, "backup"), delete_checkpoint=False)
seen = []

class Shutdown(keras.callbacks.Callback):  # the box shutting down: SIGTERM to the job mid-epoch
    def on_train_batch_end(self, batch, logs=None):
        seen.append(batch)
        open(os.path.join(run, "batches"), "w").write(str(len(seen)))
        if batch == 2:
            os.kill(os.getpid(), signal.SIGTERM)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = np.ones((64, 4), "float32")
model.fit(x, x[:, :1], batch_size=4, epochs=3, verbose=0,
          callbacks=[backup, Shutdown(), save_on_request(backup, None, every_s=3600, log=print)])
print("not reached")
"""


def test_sigterm_saves_at_the_next_batch_end_then_exits_143(model_cli, tmp_path):
    env = {k: v for k, v in model_cli.env().items() if k != "TRAINBOX_SAVE_REQUEST"}
    proc = subprocess.run(
        [sys.executable, "-c", TERM, str(tmp_path)],
        cwd=model_cli.repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 143, proc.stderr
    assert "not reached" not in proc.stdout
    assert "saved the training state at epoch 1, batch 3 (SIGTERM: stopping)" in proc.stdout
    assert (tmp_path / "batches").read_text() == "3"  # stopped at that batch's end, not run on
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 0
    assert (tmp_path / "backup" / "latest.weights.h5").stat().st_size > 0


RESUMED = r"""
import json, os, sys
import numpy as np
import keras
from model.save_request import save_on_request

run, cut_at_epoch = sys.argv[1], int(sys.argv[2])
request = os.path.join(run, "save-now")
backup = keras.callbacks.BackupAndRestore(os.path.join(run, "backup"), delete_checkpoint=False)

class Cut(keras.callbacks.Callback):  # the agent asks mid-epoch, then the power goes
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == cut_at_epoch and batch == 2:
            open(request, "w").close()
        if self.epoch == cut_at_epoch and batch == 3:
            os._exit(17)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
x = np.ones((64, 4), "float32")
model.fit(x, x[:, :1], batch_size=4, epochs=6, verbose=0, callbacks=[backup, Cut(), save_on_request(backup, request)])
"""


def test_a_save_in_the_first_epoch_after_a_resume_keeps_the_resumed_epoch(model_cli, tmp_path):
    """Cut in epoch 3, resumed there, cut again in that same first epoch after the
    resume: the state saved says epoch 3 (2, 0-based), not 0 (Keras restores the
    model's epoch but not BackupAndRestore's own count until an epoch ends)."""

    def cut(at: int) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", RESUMED, str(tmp_path), str(at)],
            cwd=model_cli.repo,
            env=model_cli.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 17, proc.stderr
        return json.loads((tmp_path / "backup" / "training_metadata.json").read_text())

    assert cut(2)["epoch"] == 2, "the first cut: saved in epoch 3 (2, 0-based)"
    assert cut(2)["epoch"] == 2, "the second cut, in the resumed run's first epoch, keeps it"
