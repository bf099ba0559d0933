"""`remote train --host A --host B`: one model over two nodes, each a real
OpenSSH sshd on 127.0.0.1 with its own workdir, Keras on JAX on this CPU."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from testkit import start_cli, wait_for


@pytest.fixture
def second_sshd(ssh_host, pinned, tmp_path):
    """Another sshd on 127.0.0.1 (the second node) admitting the session's client key."""
    import subprocess

    from common import hostkeys
    from sandbox import sshd

    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(ssh_host.key)], capture_output=True, text=True, check=True
    ).stdout
    server = sshd.start(tmp_path / "sshd2", [public.strip()])
    hostkeys.pin("127.0.0.1", server.port, [server.host_key])
    yield f"{ssh_host.user}@127.0.0.1:{server.port}"
    sshd.stop(tmp_path / "sshd2")


def two_nodes(pinned, second_sshd, tmp_path) -> tuple[list[str], list[Path]]:
    workdirs = [tmp_path / "node0", tmp_path / "node1"]
    flags = [
        "--host",
        pinned.spec,
        "--host",
        second_sshd,
        "--identity",
        str(pinned.key),
        "--workdir",
        str(workdirs[0]),
        "--workdir",
        str(workdirs[1]),
        "--python",
        sys.executable,
    ]
    return flags, workdirs


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.slow
def test_two_nodes_train_one_model_and_its_results_come_home(cli, pinned, second_sshd, dataset, tmp_path):
    import keras
    import numpy as np

    flags, workdirs = two_nodes(pinned, second_sshd, tmp_path)
    r = cli(
        "remote",
        "train",
        *flags,
        "--data",
        str(dataset),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--image-size",
        "32",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--",
        "--augment",
        "light",
    )
    assert r.code == 0, r.err
    assert "2 nodes: training on Keras's JAX backend" in r.err
    assert "global batch 8 (4 per node)" in r.out, "node 0's log is streamed"
    (home,) = (tmp_path / "runs").iterdir()
    run_id = home.name
    assert {"history.json", "model.keras", "metrics.json", "train.log"} <= {p.name for p in home.iterdir()}
    node1 = workdirs[1] / "runs" / run_id
    assert "node 1: done; node 0 writes the report" in read(node1 / "log"), "node 1's log stays in its run folder"
    h0, h1 = (json.loads(p.read_text()) for p in (home / "history.json", node1 / "out" / "history.json"))
    assert h0 == h1 and len(h0["loss"]) == 1, "one global history"
    w0, w1 = (keras.saving.load_model(p).get_weights() for p in (home / "model.keras", node1 / "out" / "model.keras"))
    assert all(np.array_equal(a, b) for a, b in zip(w0, w1))
    assert not (node1 / "out" / "metrics.json").exists(), "node 0 alone writes the report"


def end_jobs_left(workdirs: list[Path]) -> None:
    """A failed test leaves no training behind: the process group of each node's job this test
    started (its pid with the start time it recorded, leading its own session) is killed."""
    from box.layout import RUN_PID_START

    for run_dir in (d for w in workdirs if (w / "runs").exists() for d in (w / "runs").iterdir()):
        pid = read(run_dir / "pid").strip()
        if not pid.isdigit() or int(pid) <= 1:
            continue
        stat = read(Path(f"/proc/{pid}/stat"))
        try:
            if (
                stat
                and stat.rsplit(")", 1)[1].split()[19] == read(run_dir / RUN_PID_START).strip()
                and os.getpgid(int(pid)) == int(pid)
            ):
                os.killpg(int(pid), signal.SIGKILL)
        except ProcessLookupError:  # it ended meanwhile
            pass


@pytest.mark.slow
def test_a_node_killed_mid_run_fails_the_run_on_both_in_one_line(cli, pinned, second_sshd, dataset, tmp_path):
    from box.layout import RUN_PID_START

    flags, workdirs = two_nodes(pinned, second_sshd, tmp_path)
    out = tmp_path / "train.out"
    train = start_cli(
        "remote",
        "train",
        *flags,
        "--data",
        str(dataset),
        "--epochs",
        "100",
        "--batch-size",
        "8",
        "--image-size",
        "32",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--",
        "--augment",
        "light",
        out=out,
    )
    try:
        runs = workdirs[1] / "runs"
        log1 = wait_for(
            "node 1's job to join the cluster",
            lambda: next(
                (
                    d / "log"
                    for d in (runs.iterdir() if runs.exists() else ())
                    if "connected to 1 peer" in read(d / "log")
                ),
                None,
            ),
            timeout=300,
            every=0.2,
        )
        run_dir = log1.parent
        pid = int(read(run_dir / "pid"))
        # Ours: the job this test started (its recorded start time matches), in its own session (setsid).
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        assert pid > 1 and start == read(run_dir / RUN_PID_START).strip() and os.getpgid(pid) == pid
        os.killpg(pid, signal.SIGKILL)
        assert train.wait(timeout=180) == 1
    finally:
        if train.poll() is None:
            train.kill()
            train.wait()
        end_jobs_left(workdirs)
    err = [line for line in read(Path(f"{out}.err")).splitlines() if line.startswith("error:")]
    assert err[-1].startswith("error: training failed on the box (exit 1): node 1 of 2 failed or stopped answering"), (
        err
    )
    assert "Traceback" not in read(Path(f"{out}.err"))
    assert "error: node 1 of 2 failed or stopped answering" in read(out), (
        "node 0's one line names node 1, in its followed log"
    )
    assert read(workdirs[0] / "runs" / run_dir.name / "exit_code").strip() == "1"


@pytest.mark.slow
def test_remote_stop_stops_the_run_on_every_node(cli, pinned, second_sshd, dataset, tmp_path):
    flags, workdirs = two_nodes(pinned, second_sshd, tmp_path)
    runs_dir = tmp_path / "runs"
    try:
        r = cli(
            "remote",
            "train",
            *flags,
            "--data",
            str(dataset),
            "--epochs",
            "100",
            "--batch-size",
            "8",
            "--image-size",
            "32",
            "--runs-dir",
            str(runs_dir),
            "--detach",
            "--",
            "--augment",
            "light",
        )
        assert r.code == 0, r.err
        runs = workdirs[1] / "runs"
        log1 = wait_for(
            "node 1's job to join the cluster",
            lambda: next(
                (
                    d / "log"
                    for d in (runs.iterdir() if runs.exists() else ())
                    if "connected to 1 peer" in read(d / "log")
                ),
                None,
            ),
            timeout=300,
            every=0.2,
        )
        run_id = log1.parent.name
        # Named by node 0 alone, as a user names a run: the record knows the other node.
        r = cli(
            "remote",
            "stop",
            run_id,
            "--host",
            pinned.spec,
            "--identity",
            str(pinned.key),
            "--workdir",
            str(workdirs[0]),
        )
        assert r.code == 0, r.err
        assert f"{run_id} stopped" in r.out and "node 1: stopped" in r.err, (r.out, r.err)
        for workdir in workdirs:
            run_dir = workdir / "runs" / run_id
            assert (run_dir / "stopped").exists(), f"{workdir.name}'s job was asked to stop"
            pid = int(read(run_dir / "pid"))
            assert (
                not Path(f"/proc/{pid}").exists() or read(Path(f"/proc/{pid}/stat")).rsplit(")", 1)[1].split()[0] == "Z"
            ), f"{workdir.name}'s job is gone"
    finally:
        end_jobs_left(workdirs)
