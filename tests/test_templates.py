"""Every template renders with StrictUndefined, and the shell ones are valid bash."""

from __future__ import annotations

import os
import subprocess
import sys

import jinja2
import pytest

import templates


def bash_syntax_ok(text: str) -> None:
    p = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert p.returncode == 0, p.stderr


RUN_ARGS = dict(
    run_id="r1",
    run_dir="/home/u/trainbox/runs/r1",
    project_dir="/home/u/trainbox/projects/my project",
    python="/home/u/env/bin/python",
    data_dir="/home/u/trainbox/data/my data",
    out_dir="/home/u/trainbox/runs/r1/out",
    command=["python", "train.py", "--net", "cnn; rm -rf /"],
    env_link=None,
    resume_hint="remote run --resume r1",
    backend="tensorflow",
    nodes=1,
    node=0,
    coordinator="",
)


@pytest.mark.parametrize("data_dir", ["", "/home/u/trainbox/data/my data"])
@pytest.mark.parametrize("env_link", [None, "/home/u/trainbox/my env"])
def test_run_script_quotes_every_argument(data_dir, env_link):
    text = templates.render("run.sh.j2", **{**RUN_ARGS, "data_dir": data_dir, "env_link": env_link})
    bash_syntax_ok(text)
    assert "'cnn; rm -rf /'" in text
    assert "cd '/home/u/trainbox/projects/my project'" in text
    assert ("export TRAINBOX_DATA='/home/u/trainbox/data/my data'" in text) is bool(data_dir)
    assert ("readlink -f '/home/u/trainbox/my env'" in text) is bool(env_link)


def test_missing_value_is_an_error_not_an_empty_string():
    args = dict(RUN_ARGS)
    del args["project_dir"]
    with pytest.raises(jinja2.UndefinedError):
        templates.render("run.sh.j2", **args)


def test_run_script_records_pid_log_exit_code_and_the_restarts(tmp_path):
    """Run the rendered script for real, twice (the second start is a resume):
    the command gets its argv exactly and the TRAINBOX_* variables."""
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "job.sh").write_text(
        'printf "arg:%s\\n" "$@"; echo "cwd=$PWD run=$TRAINBOX_RUN_ID resumed=$TRAINBOX_RESUMED out=$TRAINBOX_OUT data=$TRAINBOX_DATA"\n'
        "python -c \"import sys; print('python=' + sys.executable)\"; exit 7\n"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    argv = ["bash", "job.sh", "two words", 'it\'s "quoted"', "$(touch pwned)", "`touch pwned`", "*", ""]
    text = templates.render(
        "run.sh.j2",
        **{
            **RUN_ARGS,
            "run_dir": str(run_dir),
            "project_dir": str(tmp_path / "project"),
            "python": sys.executable,
            "data_dir": str(tmp_path / "data"),
            "out_dir": str(run_dir / "out"),
            "command": argv,
        },
    )
    (run_dir / "run.sh").write_text(text)
    for n in (0, 1):
        p = subprocess.run(
            ["bash", str(run_dir / "run.sh")],
            env={k: v for k, v in os.environ.items() if not k.startswith("TRAINBOX_")},
        )
        assert p.returncode == 7
        assert (run_dir / "exit_code").read_text().strip() == "7"
        assert (run_dir / "pid").read_text().strip().isdigit()
        log = (run_dir / "log").read_text()
        assert f"cwd={tmp_path / 'project'} run=r1 resumed={n} out={run_dir / 'out'} data={tmp_path / 'data'}" in log
    assert [l[4:] for l in log.splitlines() if l.startswith("arg:")] == argv[2:] * 2
    assert f"python={sys.executable}" in log, "`python` is the interpreter the run was given"
    assert (run_dir / "out").is_dir()
    assert not list(tmp_path.rglob("pwned")), "nothing in the arguments was run"


def test_every_template_is_covered():
    assert {"run.sh.j2", "user-data.sh.j2", "aliases.sh.j2", "ssh_config.j2"} <= set(templates.names())


def test_run_script_sets_the_backend_and_a_nodes_place(tmp_path):
    """KERAS_BACKEND always (the box's keras.json never decides); the node
    variables only for a multi-node run."""
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "job.sh").write_text(
        'echo "backend=$KERAS_BACKEND nodes=${TRAINBOX_NODES-unset} node=${TRAINBOX_NODE-unset} coord=${TRAINBOX_COORDINATOR-unset}"\n'
    )
    seen = []
    for extra in ({}, {"backend": "jax", "nodes": 2, "node": 1, "coordinator": "10.0.0.5:41234"}):
        run_dir = tmp_path / f"run{len(seen)}"
        run_dir.mkdir()
        text = templates.render(
            "run.sh.j2",
            **{
                **RUN_ARGS,
                "run_dir": str(run_dir),
                "project_dir": str(tmp_path / "project"),
                "python": sys.executable,
                "data_dir": "",
                "out_dir": str(run_dir / "out"),
                "command": ["bash", "job.sh"],
                **extra,
            },
        )
        (run_dir / "run.sh").write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINBOX_") and k != "KERAS_BACKEND"}
        assert subprocess.run(["bash", str(run_dir / "run.sh")], env={**env, "KERAS_BACKEND": "torch"}).returncode == 0
        seen.append((run_dir / "log").read_text().strip())
    assert seen == [
        "backend=tensorflow nodes=unset node=unset coord=unset",
        "backend=jax nodes=2 node=1 coord=10.0.0.5:41234",
    ]
