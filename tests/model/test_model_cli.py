"""The CLI surface: help for every command, usage errors, no TensorFlow for --help."""

import subprocess
import sys

import pytest

from model.cli import main

COMMANDS = ("synth", "organize", "train", "report", "predict")


def test_top_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "exit codes" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"python -m model {command}" in out
    assert len(out.splitlines()) > 5


def test_train_help_names_the_contract(capsys):
    main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--net",
        "--mode",
        "--epochs",
        "--batch-size",
        "--image-size",
        "--lr",
        "--seed",
        "--weights",
        "--patience",
        "--strict",
        "--gpus",
    ):
        assert flag in out


def test_help_does_not_import_tensorflow(model_cli):
    code = (
        "import sys\n"
        "from model.cli import main\n"
        "for c in ([], ['train'], ['report'], ['predict']):\n"
        "    assert main(c + ['--help']) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=model_cli.repo,
        env=model_cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--out", "x"], ["--data"]),
        (["train", "--data", "d", "--out", "o", "--net", "resnet"], ["invalid choice", "resnet"]),
        (["train", "--data", "d", "--out", "o", "--epochs", "two"], ["--epochs", "invalid int"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_usage_is_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for w in words:
        assert w in err[0]


def test_bad_settings_are_refused_before_training(small_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--data", small_data, "--out", out, "--net", "cnn", "--weights", "imagenet"]) == 2
    assert "--init" in capsys.readouterr().err
    assert main(["train", "--data", small_data, "--out", out, "--net", "vgg16", "--image-size", "16"]) == 2
    assert "too small" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
