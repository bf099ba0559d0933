"""Every template renders with StrictUndefined, and the shell ones are valid bash."""
from __future__ import annotations

import subprocess

import jinja2
import pytest

import templates


def bash_syntax_ok(text: str) -> None:
    p = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert p.returncode == 0, p.stderr


RUN_ARGS = dict(
    run_id="r1", run_dir="/home/u/trainbox/runs/r1", code_dir="/home/u/trainbox/code", python="/home/u/env/bin/python",
    data_dir="/home/u/trainbox/data/my data", train_args=["--epochs", "3", "--net", "cnn; rm -rf /"], env_link=None,
)


@pytest.mark.parametrize("synth", [True, False])
@pytest.mark.parametrize("env_link", [None, "/home/u/trainbox/my env"])
def test_run_script_quotes_every_argument(synth, env_link):
    text = templates.render("run.sh.j2", synth=synth, **{**RUN_ARGS, "env_link": env_link})
    bash_syntax_ok(text)
    assert "'cnn; rm -rf /'" in text
    assert "'/home/u/trainbox/data/my data'" in text
    assert ("model synth" in text) is synth
    assert ("readlink -f '/home/u/trainbox/my env'" in text) is bool(env_link)


def test_missing_value_is_an_error_not_an_empty_string():
    args = dict(RUN_ARGS)
    del args["python"]
    with pytest.raises(jinja2.UndefinedError):
        templates.render("run.sh.j2", synth=False, **args)


def test_run_script_records_pid_log_and_exit_code(tmp_path):
    """Run the rendered script for real with a fake interpreter."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/bash\necho \"args: $*\"\nexit 7\n")
    fake_python.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    text = templates.render(
        "run.sh.j2", run_id="r1", run_dir=str(run_dir), code_dir=str(tmp_path), python=str(fake_python),
        data_dir=str(tmp_path / "data"), synth=False, train_args=["--epochs", "2"], env_link=None,
    )
    (run_dir / "run.sh").write_text(text)
    p = subprocess.run(["bash", str(run_dir / "run.sh")])
    assert p.returncode == 7
    assert (run_dir / "exit_code").read_text().strip() == "7"
    assert (run_dir / "pid").read_text().strip().isdigit()
    assert "args: -m model train --data" in (run_dir / "log").read_text()
    assert "--epochs 2" in (run_dir / "log").read_text()


def test_every_template_is_covered():
    assert {"run.sh.j2", "user-data.sh.j2", "aliases.sh.j2", "ssh_config.j2"} <= set(templates.names())
