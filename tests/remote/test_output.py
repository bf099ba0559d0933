"""What a person reads of the box's output on the laptop (issue 27): colour on a
terminal, whole escape sequences out of a file or pipe, one line per progress
bar's final state, every UTF-8 character whole, each line once."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from common import checks

# Keras 3's progress bar as the box's log holds it (its dynamic display is on
# wherever "posix" is in sys.modules: always on Linux, tty or not): bold and
# coloured bar pieces, backspaces and a carriage return before each redraw.
BAR = (
    "Epoch 1/2\n"
    "\x1b[1m 1/11\x1b[0m \x1b[32m━━\x1b[0m\x1b[37m━━━━\x1b[0m \x1b[1m0s\x1b[0m 3ms/step - loss: 0.9"
    "\b\b\b\b\r\x1b[1m11/11\x1b[0m \x1b[32m━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m0s\x1b[0m 2ms/step - loss: 0.7\n"
    "Epoch 2/2\r\n"
)
HOSTILE = "ok\x1b]0;owned\x07 \x1b]52;c;ZWNobyBwd25lZA==\x1b\\\x1b[2J\x1b[1;1H\x9b31m\x1b7\x1bP1$r\x1b\\\x1b(Bend\n"


def test_a_file_or_pipe_gets_no_escape_sequence_and_one_line_per_progress_bar():
    got = checks.clean(BAR)
    assert got == "Epoch 1/2\n11/11 ━━━━━━ 0s 2ms/step - loss: 0.7\nEpoch 2/2\n"


def test_a_terminal_gets_the_bar_keras_drew_its_colour_and_its_redraws():
    got = checks.clean(BAR, tty=True)
    assert got == BAR.replace("\b", ""), "SGR and \\r through, the backspaces (cursor moves) out"


@pytest.mark.parametrize("tty", [False, True])
def test_titles_clipboard_cursor_and_clears_go_whole_on_both(tty):
    got = checks.clean(HOSTILE, tty=tty)
    assert got == ("ok \x1b[31mend\n" if tty else "ok end\n")


@pytest.mark.parametrize("tty", [False, True])
def test_a_stream_cut_anywhere_cleans_as_the_whole_text(tty):
    text = BAR + HOSTILE + "last line without its newline\r redrawn"
    data = text.encode()
    for size in (1, 2, 3, 7):
        out = io.BytesIO()
        stream = checks.CleanStream(out, tty=tty)
        for i in range(0, len(data), size):
            stream.write(data[i : i + size])
        stream.close()
        assert out.getvalue().decode() == checks.clean(text, tty=tty), size


def test_an_unended_osc_swallows_no_more_than_its_line():
    assert checks.clean("a\x1b]0;title\nnext\n") == "a\nnext\n"


def test_say_drops_whole_sequences(capsys):
    from common.cliutil import say

    say("box said: \x1b[31mred\x1b[0m \x1b]0;t\x07done")
    assert capsys.readouterr().err == "box said: red done\n"


# ---------------------------------------------------------------- over the real sshd

KERAS_FIT = """import numpy as np, keras
x = np.random.default_rng(0).normal(size=(176, 4)).astype("float32"); y = (x[:, 0] > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile("adam", "binary_crossentropy")
model.fit(x, y, batch_size=16, epochs=3)
print("fit done")
"""


def _runs(on_box, tmp_path):
    return [*on_box, "--python", sys.executable, "--runs-dir", str(tmp_path / "runs"), "--pull-every", "600"]


def test_a_real_keras_fit_reaches_a_pipe_as_clean_lines(cli, on_box, tmp_path):
    code = tmp_path / "proj"
    code.mkdir()
    (code / "fit.py").write_text(KERAS_FIT)
    r = cli("remote", "run", "--code", str(code), *_runs(on_box, tmp_path), "--", "python", "fit.py", cwd=tmp_path)
    assert r.code == 0, r.err + r.out
    assert "fit done" in r.out
    assert "\x1b" not in r.out and "[0m" not in r.out and "[1m" not in r.out and "\r" not in r.out and "\b" not in r.out
    finals = [line for line in r.out.splitlines() if line.startswith("11/11")]
    assert len(finals) == 3 and all("loss:" in line for line in finals), r.out
    assert not [
        line for line in r.out.splitlines() if line.lstrip().startswith(tuple(f"{i}/11" for i in range(1, 11)))
    ], "no intermediate redraw"
    (local,) = (tmp_path / "runs").iterdir()
    assert "\x1b[32m" in (local / "train.log").read_text(), "the box's log keeps what Keras drew"


def _record(box_workdir: str, on_box, run_id: str):
    from remote import records

    user, port = on_box[1].split("@")[0], int(on_box[1].rsplit(":", 1)[1])
    rec = records.RunRecord(
        run_id=run_id,
        box=None,
        host="127.0.0.1",
        port=port,
        user=user,
        identity=on_box[3],
        workdir=box_workdir,
        local_dir=str(Path(box_workdir).parent / "home" / run_id),
        created=1.0,
    )
    records.save_record(rec)
    return rec


def test_remote_logs_keeps_every_character_of_a_log_over_many_chunks(cli, on_box, box, tmp_path):
    run_id = "20250101-000000-bars"
    run_dir = Path(box.workdir) / "runs" / run_id
    run_dir.mkdir(parents=True)
    line = "━" * 999 + "\n"  # 3 bytes each: no chunk size of 2**k splits only between characters
    (run_dir / "log").write_text(line * 400)  # 1.2 MB
    (run_dir / "pid").write_text(f"{os.getpid()}\n")
    (run_dir / "exit_code").write_text("0\n")
    _record(box.workdir, on_box, run_id)
    r = cli("remote", "logs", run_id, *on_box, cwd=tmp_path)
    assert r.code == 0, r.err
    assert "\ufffd" not in r.out
    assert r.out == line * 400


def test_detach_says_the_run_is_detached_and_how_to_follow_it(cli, on_box, tmp_path):
    code = tmp_path / "proj"
    code.mkdir()
    (code / "hi.py").write_text("print('hi')\n")
    r = cli(
        "remote",
        "run",
        "--code",
        str(code),
        *_runs(on_box, tmp_path),
        "--detach",
        "--",
        "python",
        "hi.py",
        cwd=tmp_path,
    )
    assert r.code == 0, r.err
    assert "follows" not in r.err, "nothing follows a detached run"
    import re

    run_id = re.search(r"run (\S+) started on \S+, detached", r.err)
    assert run_id, r.err
    assert f"logs {run_id.group(1)} --follow" in r.err


def test_a_failures_traceback_and_the_startup_lines_are_shown_once(cli, on_box, tmp_path):
    code = tmp_path / "proj"
    code.mkdir()
    (code / "boom.py").write_text(
        "import sys\nprint('startup: oneDNN custom operations are on', file=sys.stderr)\n"
        "print('epoch 1')\nraise ValueError('the loss is NaN')\n"
    )
    r = cli("remote", "run", "--code", str(code), *_runs(on_box, tmp_path), "--", "python", "boom.py", cwd=tmp_path)
    assert r.code == 1, r.err
    shown = r.out + r.err
    assert shown.count("Traceback (most recent call last)") == 1, shown
    assert shown.count("ValueError: the loss is NaN") == 1, shown
    assert shown.count("startup: oneDNN custom operations are on") == 1, shown
    (local,) = (tmp_path / "runs").iterdir()
    assert str(local / "train.log") in r.err, "the whole log is named"


def test_a_real_keras_fit_reaches_a_terminal_as_the_bar_keras_drew(on_box, tmp_path):
    """stdout a pseudo-terminal: the CLI sees a terminal and passes colour and redraws on."""
    import pty
    import subprocess

    from testkit import _cli

    code = tmp_path / "proj"
    code.mkdir()
    (code / "fit.py").write_text(KERAS_FIT)
    cmd, env = _cli(("remote", "run", "--code", str(code), *_runs(on_box, tmp_path), "--", "python", "fit.py"), None)
    master, slave = pty.openpty()
    with open(tmp_path / "err", "w") as err:
        p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=slave, stderr=err, stdin=subprocess.DEVNULL)
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    assert p.wait(timeout=600) == 0, (tmp_path / "err").read_text()
    shown = got.decode()
    assert "fit done" in shown
    assert "\x1b[32m" in shown and "\x1b[0m" in shown, "Keras's colours"
    assert "\r\x1b[1m11/11" in shown and " 1/11" in shown, "the bar redrawn in place"
    assert "\x1b]" not in shown and "\b" not in shown
