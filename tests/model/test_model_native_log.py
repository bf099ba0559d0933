"""TensorFlow's start-up notes (absl's preamble, oneDNN's INFO line) are kept
out of a run's log; what else the import writes to fd 2 is kept, in order."""

from __future__ import annotations

import os
import subprocess
import sys

from model.native_log import is_startup_note, startup_notes_dropped
from testkit import REPO

PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    "I0000 00:00:1796417471.385276   21108 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors.\n"
)


def test_the_notes_are_told_from_warnings_and_errors():
    assert is_startup_note(PREAMBLE) and is_startup_note(ONEDNN)
    assert not is_startup_note("W0000 00:00:1796417471.385276   21108 allocator.cc:1] ran out of memory\n")
    assert not is_startup_note("E0000 00:00:1796417471.385276   21108 cuda.cc:1] failed call to cuInit\n")
    assert not is_startup_note("Epoch 1/3\n") and not is_startup_note("INFO: a Python log line\n")


def test_what_is_written_to_fd_2_comes_back_without_the_notes_in_order(capfd):
    with startup_notes_dropped():
        os.write(2, (PREAMBLE + "a warning of its own\n" + ONEDNN + PREAMBLE + "and an error\n").encode())
    assert capfd.readouterr().err == "a warning of its own\nand an error\n"


def test_what_was_written_comes_back_when_the_import_fails(capfd):
    try:
        with startup_notes_dropped():
            os.write(2, (ONEDNN + "the reason it failed\n").encode())
            raise ImportError("no keras")
    except ImportError:
        pass
    assert capfd.readouterr().err == "the reason it failed\n"


def test_importing_keras_on_tensorflow_prints_no_notes():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    code = (
        "import sys; from model.native_log import import_keras_quietly; import_keras_quietly(); "
        "import keras; print('backend', keras.backend.backend(), file=sys.stderr)"
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip().splitlines()[-1] == "backend tensorflow"
    assert "absl::InitializeLog" not in p.stderr and " port.cc:" not in p.stderr, p.stderr
