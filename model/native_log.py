"""TensorFlow's native runtime writes start-up notes to file descriptor 2
whatever TF_CPP_MIN_LOG_LEVEL says (TF 2.21: absl's "All log messages before
absl::InitializeLog() is called" preamble and oneDNN's "custom operations are
on" note, once for each copy of absl it loads, so twice). They reach the run's
log and the user's terminal as debris. Keras (and so its backend) is imported
once with fd 2 held in a file; what the import wrote goes back to fd 2 without
those notes, everything else (a warning, an error) unchanged and in order."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's INFO line: I<mmdd> <time> <thread> <file>:<line>] <message>
_INFO = re.compile(r"I\d{4} \d\d:\d\d:\d+(?:\.\d+)?\s+\d+ \S+:\d+\] ")


def is_startup_note(line: str) -> bool:
    """A native runtime's INFO line or absl's preamble (warnings and errors are not)."""
    return line.rstrip("\r\n") == _PREAMBLE or _INFO.match(line) is not None


@contextlib.contextmanager
def startup_notes_dropped():
    """Within: fd 2 goes to a file. After (also after an exception): its lines,
    less the start-up notes, are written to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                line
                for line in held.read().splitlines(keepends=True)
                if not is_startup_note(line.decode("utf-8", "replace"))
            ]
            if kept:
                os.write(2, b"".join(kept))


def import_keras_quietly() -> None:
    """Import Keras on TensorFlow (once per process) without TF's start-up notes.
    Other backends are left to import when used (JAX's runtime must not start
    before a multi-node run has joined its cluster)."""
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    with startup_notes_dropped():
        import keras  # noqa: F401
