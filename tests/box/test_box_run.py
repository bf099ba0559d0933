"""`remote run` on a fresh box (issue 19): a login user behind a real sshd,
trainbox's environment built by the bootstrap from the index on 127.0.0.1
(its TensorFlow wheel is a .pth onto this laptop's site-packages: nothing is
downloaded), plus the project's requirements.txt, served by the same index.
The project is examples/train_tiny.py, a real Keras script.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from box_fixtures import box_user, laptop_index, make_wheel, users_sshd  # noqa: F401 (fixtures)
from box_helpers import env, run_cli

from remote import orchestrate
from testkit import synth_image_set

REPO = Path(__file__).resolve().parents[2]
SHOW = "import tinydep, sys; print('tinydep', tinydep.VERSION, sys.prefix)"


@pytest.mark.slow
def test_your_keras_script_with_its_requirements_trains_and_a_changed_file_rebuilds(box_user, laptop_index, tmp_path):
    for v in ("1.0", "2.0"):
        make_wheel(laptop_index.dir, "tinydep", v, {"tinydep/__init__.py": f"VERSION = {v!r}\n"})
    code = tmp_path / "proj"
    code.mkdir()
    shutil.copy(REPO / "examples" / "train_tiny.py", code)
    (code / "show.py").write_text(SHOW)
    (code / "requirements.txt").write_text("tinydep==1.0\n")
    data = synth_image_set(tmp_path / "set", n=8)
    e = env(laptop_index, TRAINBOX_BOX_PYTHON="/usr/bin/python3")
    flags = ["--code", str(code), "--pull-every", "600"]

    r = run_cli(
        *box_user.remote("run", *flags, "--data", str(data)),
        "--",
        "bash",
        "-c",
        "python show.py && exec python train_tiny.py 1",
        cwd=tmp_path,
        env=e,
    )
    assert r.code == 0, r.err + r.out
    (local,) = (tmp_path / "runs").iterdir()
    for name in ("checkpoints/epoch-1.keras", "loss.png", "train.log", "exit_code"):
        assert (local / name).is_file(), name
    log = (local / "train.log").read_text()
    assert "done (TRAINBOX_RESUMED=0)" in log
    link = box_user.home / "trainbox" / f"env-{orchestrate.path_key(code)}"
    first = os.path.realpath(link)
    assert f"tinydep 1.0 {first}" in log, "the requirement was installed in the run's environment"
    assert "tinydep-1.0-py3-none-any.whl" in laptop_index.served
    assert not (box_user.home / "trainbox" / "env").exists(), "a project with requirements gets its own environment"

    (code / "requirements.txt").write_text("tinydep==2.0\n")
    r = run_cli(*box_user.remote("run", *flags), "--", "python", "show.py", cwd=tmp_path, env=e)
    assert r.code == 0, r.err + r.out
    assert "building the environment" in r.err
    second = os.path.realpath(link)
    assert second != first and not os.path.exists(first), "rebuilt beside the old one, which then went"
    assert f"tinydep 2.0 {second}" in r.out

    again = run_cli(*box_user.remote("run", *flags), "--", "python", "show.py", cwd=tmp_path, env=e)
    assert again.code == 0 and "building the environment" not in again.err, "unchanged: the cached environment"
    assert len(list((tmp_path / "runs").iterdir())) == 3
