"""The box's environment (issue 7): the bootstrap over a real sshd, as a fresh
login user, installing from a package index on 127.0.0.1 (nothing downloaded)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from box_fixtures import box_user, index, laptop_index, users_sshd, uv_index  # noqa: F401 (fixtures; no conftest.py here:

# a second module named `conftest` would shadow tests/conftest.py for `from conftest import ...`)
from box_helpers import box_python_says, env, log_of, marker_of, one_line_error, popen_cli, run_cli, wait_for

from common.errors import RemoteError
from remote import setup

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- pins


def test_pins_are_the_laptops_train_extra():
    import tomllib

    train = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    pins = {re.split(r"[=><;\s\[]", r, maxsplit=1)[0]: r.split(";")[0].strip() for r in train}
    assert pins["tensorflow-cpu"] == f"tensorflow-cpu=={setup.TF_VERSION}"
    assert pins["tensorflow"] == f"tensorflow=={setup.TF_VERSION}"
    assert pins["keras"] == f"keras=={setup.KERAS_VERSION}"
    assert pins["jax"] == f"jax=={setup.JAX_VERSION}"
    others = {v for k, v in pins.items() if k not in ("tensorflow", "tensorflow-cpu", "keras", "jax")}
    assert others == set(setup.MODEL_REQUIREMENTS)


# ---------------------------------------------------------------- fresh, re-run, doctor


def test_fresh_box_doctor_setup_rerun_doctor(box_user, index):
    before = run_cli(*box_user.remote("doctor"), env=env(index))
    assert before.code == RemoteError.exit_code
    assert "environment:  NOT READY: no environment at ~/trainbox/env" in before.out
    assert "remote setup" in one_line_error(before)

    first = run_cli(*box_user.remote("setup"), env=env(index))
    assert first.code == 0, first.err
    assert "ready: trainbox/env/bin/python" in first.out
    assert "installer: pip" in first.err, "uv is not on the test index: the fallback runs"
    # One bar and one summary (issue 27), not a line per package.
    assert re.search(r"^environment: \d+ packages in \d+ s$", first.err, re.M), first.err
    assert not re.search(r"trainbox-setup:\s+(Collecting|Successfully installed)", first.err), first.err
    assert marker_of(box_user).read_text().splitlines()[0] == f"spec {setup.SetupOptions(jupyter=False).spec_id()}"
    assert f"keras={setup.KERAS_VERSION}" in marker_of(box_user).read_text()
    assert marker_of(box_user).stat().st_uid == box_user.home.stat().st_uid, "built as the login user"
    pyvenv = (box_user.home / "trainbox" / "env" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in pyvenv
    assert (
        box_python_says(
            box_user, "import tensorflow, keras, sys; print(tensorflow.__version__, keras.__version__, sys.prefix)"
        )
        == f"{setup.TF_VERSION} {setup.KERAS_VERSION} {box_user.home}/trainbox/env"
    )
    served = list(index.served)
    assert "keras-3.15.1-py3-none-any.whl" in served and "tensorflow_cpu-2.21.0-py3-none-any.whl" in served

    log_before = log_of(box_user)
    again = run_cli(*box_user.remote("setup"), env=env(index))
    assert again.code == 0, again.err
    assert "ready, nothing to install" in again.err
    new_log = log_of(box_user)[len(log_before) :]
    assert "ready, nothing to install" in new_log and "installing" not in new_log and "building" not in new_log
    assert index.served == served and index.requested == served, "the re-run fetched nothing"

    after = run_cli(*box_user.remote("doctor"), env=env(index))
    assert after.code == 0, after.err
    rows = dict(line.split(":", 1) for line in after.out.splitlines())
    assert rows["environment"].strip() == "ready"
    assert rows["tensorflow"].strip() == f"{setup.TF_VERSION} (laptop pins {setup.TF_VERSION}: match)"
    assert rows["keras"].strip() == f"{setup.KERAS_VERSION} (laptop pins {setup.KERAS_VERSION}: match)"
    assert rows["GPUs TF sees"].strip() == "none"
    assert rows["nvidia"].strip().startswith("no NVIDIA GPU")
    assert re.fullmatch(r"\d+\.\d GB", rows["disk free"].strip())
    assert rows["python"].strip().startswith("3.")

    # Other pins (here: with jupyterlab) are another spec: not ready, and doctor says why.
    other = run_cli(*box_user.remote("doctor"), env=env(index, TRAINBOX_JUPYTER="1"))
    assert other.code == RemoteError.exit_code
    assert "built for other pins or options" in other.out


def test_doctor_with_python_override_reports_that_interpreter(pinned):
    """The sandbox's box: sshd on 127.0.0.1 and this laptop's Python (real TensorFlow)."""
    r = run_cli("remote", "doctor", "--host", pinned.spec, "--identity", str(pinned.key), "--python", sys.executable)
    assert r.code == 0, r.err
    assert "environment:  ready (--python given)" in r.out
    assert f"tensorflow:   {setup.TF_VERSION} (laptop pins {setup.TF_VERSION}: match)" in r.out
    assert "GPUs TF sees: none" in r.out


# ---------------------------------------------------------------- interrupted, concurrent


def test_killed_half_way_never_looks_ready_and_the_next_run_repairs(box_user, index):
    gate = index.gate("keras-3.15.1-py3-none-any.whl")
    p = popen_cli(*box_user.remote("setup"), env=env(index))
    try:
        wait_for(lambda: "keras-3.15.1-py3-none-any.whl" in index.requested, "the install to reach keras")
        pid = int(re.search(r"\(pid (\d+),", log_of(box_user)).group(1))
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        out, err = p.communicate(timeout=60)
    finally:
        gate.set()
        if p.poll() is None:
            p.kill()
    assert p.returncode == RemoteError.exit_code, err
    assert not marker_of(box_user).exists()
    (half,) = (box_user.home / "trainbox" / "envs").iterdir()
    assert (half / "bin" / "python").exists(), "it was killed half-way"
    assert not (box_user.home / "trainbox" / "env").exists(), "never linked"

    status = run_cli(*box_user.remote("doctor"), env=env(index))
    assert "an install was interrupted" in status.out

    again = run_cli(*box_user.remote("setup"), env=env(index))
    assert again.code == 0, again.err
    assert "removing the unfinished or outdated environment" in again.err
    assert marker_of(box_user).exists()
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION


def test_two_concurrent_runs_end_with_one_good_env(box_user, index):
    gate = index.gate("keras-3.15.1-py3-none-any.whl")
    a = popen_cli(*box_user.remote("setup"), env=env(index))
    b = None
    try:
        wait_for(lambda: "keras-3.15.1-py3-none-any.whl" in index.requested, "run A to reach keras")
        b = popen_cli(*box_user.remote("setup"), env=env(index))
        wait_for(lambda: "another setup is running" in log_of(box_user), "run B to wait for A")
        assert not marker_of(box_user).exists()
        gate.set()
        out_a, err_a = a.communicate(timeout=120)
        out_b, err_b = b.communicate(timeout=120)
    finally:
        gate.set()
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    assert "its log follows" in err_b and "ready (built by another run)" in err_b
    assert index.served.count("keras-3.15.1-py3-none-any.whl") == 1, "installed once"
    assert marker_of(box_user).exists()
    assert box_python_says(box_user, "import keras; print(keras.__version__)") == setup.KERAS_VERSION


# ---------------------------------------------------------------- train on a box that is not ready


@pytest.mark.slow
def test_train_on_a_not_ready_box_sets_it_up_first(box_user, laptop_index, tmp_path):
    """The env is made from the box's /usr/bin/python3; its 'tensorflow-cpu' wheel is a .pth onto this
    laptop's site-packages, so the real TensorFlow and Keras train without a download."""
    r = run_cli(
        *box_user.remote("train", "--epochs", "1", "--image-size", "32"),
        cwd=tmp_path,
        env=env(laptop_index, TRAINBOX_BOX_PYTHON="/usr/bin/python3"),
    )
    assert r.code == 0, r.err + r.out
    assert (
        r.err.index("not ready: setting it up")
        < r.err.index(f"ready: {box_user.home}/trainbox/env/bin/python")
        < r.err.index("started on")
    )
    assert marker_of(box_user).exists()
    (run,) = list((tmp_path / "runs").iterdir())
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 1


# ---------------------------------------------------------------- errors: one line, exit 3


def test_no_python3_on_the_box(box_user, index):
    r = run_cli(*box_user.remote("setup", "--box-python", "/nonexistent/python3"), env=env(index))
    assert r.code == RemoteError.exit_code
    assert "no /nonexistent/python3 on this box: install Python 3" in one_line_error(r)
    assert not marker_of(box_user).exists()


def test_no_venv_module(box_user, index):
    fake = box_user.home / "py-without-venv"
    fake.write_text('#!/bin/bash\n[[ "$*" == *"import venv"* ]] && exit 1\nexec /usr/bin/python3 "$@"\n')
    fake.chmod(0o755)
    r = run_cli(*box_user.remote("setup", "--box-python", str(fake)), env=env(index))
    assert r.code == RemoteError.exit_code
    assert "no venv module: sudo apt-get install -y python3-venv" in one_line_error(r)


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_no_network_to_the_index(box_user, uv_index, installer):
    """The index is unreachable (uv itself still comes from the test index, by --find-links).
    Retries are 1 in tests (TRAINBOX_INSTALL_RETRIES): it fails at once."""
    from common.procs import free_port

    uv_from = ["--find-links", uv_index.url + "uv/"] if installer == "uv" else []
    r = run_cli(
        *box_user.remote(
            "setup", "--installer", installer, *uv_from, "--index-url", f"http://127.0.0.1:{free_port()}/simple/"
        ),
        env=env(uv_index),
    )
    assert r.code == RemoteError.exit_code
    assert "no network from the box to the package index" in one_line_error(r)
    assert f"installer: {installer}" in r.err
    assert not marker_of(box_user).exists()
    log = log_of(box_user)
    if installer == "pip":
        assert log.count("WARNING: Retrying (") == 1, "one retry (TRAINBOX_INSTALL_RETRIES), not pip's 5 with back-off"
    else:
        assert "Request failed after 1 retry" in log, "one retry (UV_HTTP_RETRIES), not uv's 3"


def _run_script(user, index, opts: setup.SetupOptions, prefix: str = ""):
    from remote.connection import connect, write_file

    conn = connect(user.target(), timeout=10)
    try:
        write_file(conn, "trainbox/bootstrap.sh", setup.render_bootstrap("trainbox", opts).encode())
        return conn.run(f"{prefix}bash trainbox/bootstrap.sh", hide=True, warn=True, in_stream=False)
    finally:
        conn.close()


def test_disk_full(box_user, index):
    r = _run_script(box_user, index, setup.SetupOptions(index_url=index.url, jupyter=False, cpu_free_mb=10**9))
    assert r.exited == 13
    assert re.search(r"error: disk full: \d+ MB free under .*, the environment needs 1000000000 MB", r.stdout)
    assert index.requested == [], "checked before downloading anything"


def test_gpu_box_where_tensorflow_sees_no_gpu(box_user, index):
    """A fake nvidia-smi lists a GPU; the fake TensorFlow sees none: exit 14 with driver and CUDA versions."""
    fakebin = box_user.home / "fakebin"
    fakebin.mkdir()
    smi = fakebin / "nvidia-smi"
    smi.write_text(
        '#!/bin/bash\ncase "$*" in\n  -L) echo "GPU 0: Tesla T4 (UUID: GPU-1)";;\n'
        '  *driver_version*) echo 580.65.06;;\n  *) echo "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0 |";;\nesac\n'
    )
    smi.chmod(0o755)
    r = _run_script(
        box_user,
        index,
        setup.SetupOptions(index_url=index.url, jupyter=False, gpu_free_mb=1),
        prefix=f"PATH={fakebin}:$PATH ",
    )
    assert r.exited == 14, r.stdout
    assert "TensorFlow sees none (NVIDIA driver 580.65.06, CUDA 13.0; tensorflow[and-cuda]==2.21.0)" in r.stdout
    assert "tensorflow-2.21.0-py3-none-any.whl" in index.served, "the CUDA build was chosen"
    assert not marker_of(box_user).exists()


# ---------------------------------------------------------------- templates


def test_user_data_starts_the_same_bootstrap_as_the_login_user(tmp_path):
    from provision.up import UpOptions, stripped_shell, user_data

    text = user_data(
        UpOptions(name="b1", bootstrap=setup.render_bootstrap("trainbox", setup.SetupOptions.from_env())), "ubuntu"
    )
    p = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert p.returncode == 0, p.stderr
    # Its lines that write the script (gzipped, base64'd), run here with $home set.
    write = re.search(r"^boot=.*?^mv -f .*?$", text, re.S | re.M).group(0).replace("chown ubuntu", "true")
    (tmp_path / "trainbox").mkdir()
    # A `remote` command may already be running its own copy (SSH answers before
    # user-data runs): that bash's file must not change under it.
    running = tmp_path / "trainbox" / "bootstrap.sh"
    running.write_text("# the copy a `remote setup` is running\n")
    with open(running) as held:
        subprocess.run(["bash", "-c", f"home={tmp_path}\n{write}"], check=True)
        assert held.read() == "# the copy a `remote setup` is running\n"
    # The same script the laptop renders, less its whole-line comments (AWS caps user-data at 16 KB).
    assert running.read_text() == stripped_shell(setup.render_bootstrap("trainbox", setup.SetupOptions.from_env()))
    assert 'sudo -u ubuntu -H setsid nohup bash "$home"/trainbox/bootstrap.sh' in text
    assert text.rstrip().endswith("</dev/null &"), "started in the background, last"
    from provision.up import USER_DATA_LIMIT, user_data_payload

    assert len(user_data_payload(text)) <= USER_DATA_LIMIT, "EC2 user-data limit (gzipped, as sent)"


@pytest.mark.parametrize(
    "opts",
    [
        setup.SetupOptions(),
        setup.SetupOptions(
            find_links=("/w h/eels", "http://x/y"), no_index=True, installer="pip", system_site_packages=True
        ),
        setup.SetupOptions(index_url="https://mirror.example/simple", jupyter=False, python="/usr/bin/python3.12"),
    ],
)
def test_bootstrap_renders_valid_bash(opts):
    text = setup.render_bootstrap("my work/dir", opts)
    p = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert p.returncode == 0, p.stderr
    assert f"SPEC={opts.spec_id()}" in text
    assert "W='my work/dir'" in text
    assert ("'jupyterlab>=4'" in text) is opts.jupyter


# ---------------------------------------------------------------- the uv path (offline: a wheel of the installed uv)


def test_fresh_bootstrap_with_uv_then_a_rerun_installs_nothing(box_user, uv_index):
    first = run_cli(*box_user.remote("setup"), env=env(uv_index))
    assert first.code == 0, first.err
    assert "fetching uv (the fast installer)" in first.err
    assert re.search(r"installer: uv \d+\.\d+\.\d+", first.err), first.err
    assert "installer: pip" not in first.err
    assert [f for f in uv_index.served if f.startswith("uv-")] == [f.name for f in uv_index.dir.glob("uv-*.whl")]
    assert (box_user.home / "trainbox" / "tools" / "bin" / "uv").exists(), "uv kept for later runs, no venv around it"
    assert marker_of(box_user).read_text().splitlines()[0] == f"spec {setup.SetupOptions(jupyter=False).spec_id()}"
    assert (
        box_python_says(box_user, "import keras, tensorflow; print(keras.__version__, tensorflow.__version__)")
        == f"{setup.KERAS_VERSION} {setup.TF_VERSION}"
    )
    assert box_python_says(box_user, "import importlib.util as u; print(u.find_spec('pip') is None)") == "True", (
        "uv made the venv: no pip in it"
    )
    assert re.search(r"\+\d+\.\d\ds trainbox-setup: phase: packages installed", log_of(box_user)), "phases are timed"

    served = list(uv_index.served)
    again = run_cli(*box_user.remote("setup"), env=env(uv_index))
    assert again.code == 0, again.err
    assert "ready, nothing to install" in again.err
    assert uv_index.served == served and uv_index.requested == served, "the re-run fetched nothing"


def test_install_retries_are_the_installers_own_unless_set():
    from common.errors import UsageError

    default = setup.SetupOptions.from_env({})
    assert "retries=''" in setup.render_bootstrap("trainbox", default), "pip's 5 and uv's 3 on a real first boot"
    two = setup.SetupOptions.from_env({"TRAINBOX_INSTALL_RETRIES": "2"})
    assert "retries=2" in setup.render_bootstrap("trainbox", two)
    assert two.spec_id() == default.spec_id(), "how it downloads is not what it builds"
    for bad in ("0", "many"):
        with pytest.raises(UsageError, match="1 or more"):
            setup.SetupOptions.from_env({"TRAINBOX_INSTALL_RETRIES": bad})


# ---------------------------------------------------------------- the jax backend


def test_jax_backend_has_an_environment_of_its_own_and_doctor_reports_it(box_user, index):
    """`--backend jax` builds env-jax (jax, keras, TensorFlow's CPU build for
    tf.data) beside TensorFlow's env, which it leaves alone; doctor reports the backend."""
    built = run_cli(*box_user.remote("setup", "--backend", "jax"), env=env(index))
    assert built.code == 0, built.err
    assert "ready: trainbox/env-jax/bin/python" in built.out
    marker = (box_user.home / "trainbox" / "env-jax" / "trainbox-ready").read_text().splitlines()
    opts = setup.SetupOptions(jupyter=False, backend="jax", env_name="env-jax")
    assert marker[0] == f"spec {opts.spec_id()}" != f"spec {setup.SetupOptions(jupyter=False).spec_id()}"
    assert f"jax={setup.JAX_VERSION} backend=jax" in marker[1]
    assert {"jax-0.10.2-py3-none-any.whl", "tensorflow_cpu-2.21.0-py3-none-any.whl"} <= set(index.served)
    assert not (box_user.home / "trainbox" / "env").exists(), "TensorFlow's environment is another one"

    doc = run_cli(*box_user.remote("doctor", "--backend", "jax"), env=env(index))
    assert doc.code == 0, doc.err
    rows = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in doc.out.splitlines())}
    assert rows["environment"] == "ready"
    assert rows["backend"].startswith("jax ")
    assert rows["jax"] == f"{setup.JAX_VERSION} (laptop pins {setup.JAX_VERSION}: match)"
    assert rows["GPUs (JAX)"] == "none"
    tf_doc = run_cli(*box_user.remote("doctor"), env=env(index))
    assert tf_doc.code == RemoteError.exit_code and "no environment at ~/trainbox/env;" in tf_doc.out
