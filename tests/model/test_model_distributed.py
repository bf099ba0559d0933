"""Multi-node data-parallel training (model/distributed.py, model/supervise.py):
two real processes on 127.0.0.1, Keras on JAX on this CPU, JAX's distributed
runtime between them. The remote side (two sshd boxes) is tests/remote/test_multinode.py."""

import json
import os
import socket
import subprocess
import sys

import pytest

from model.distributed import Cluster, cluster, shard
from model.errors import UsageError
from model.supervise import verdict
from testkit import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(model_cli, data, tmp_path, epochs=1, nodes=2, **env_extra):
    """One `python -m model train` per node, placed by TRAINBOX_NODES/NODE/COORDINATOR as run.sh does."""
    coordinator = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(nodes):
        env = {**model_cli.env(), "KERAS_BACKEND": "jax", "TRAINBOX_NODES": str(nodes), "TRAINBOX_NODE": str(i),
               "TRAINBOX_COORDINATOR": coordinator, **env_extra}
        out, log = tmp_path / f"node{i}", tmp_path / f"node{i}.log"
        with open(log, "w") as f, open(f"{log}.err", "w") as e:
            p = subprocess.Popen([sys.executable, "-m", "model", "train", "--data", data, "--out", str(out),
                                  "--epochs", str(epochs), "--image-size", "32", "--batch-size", "8", "--augment", "light"],
                                 cwd=model_cli.repo, env=env, stdout=f, stderr=e, stdin=subprocess.DEVNULL)
        procs.append((p, out, log))
    return procs


def read(path) -> str:
    return open(path).read() if os.path.exists(path) else ""


@pytest.mark.slow
def test_two_nodes_train_one_model_with_global_metrics(small_data, model_cli, tmp_path):
    import keras
    import numpy as np

    procs = start_nodes(model_cli, small_data, tmp_path)
    for p, _, log in procs:
        assert p.wait(timeout=600) == 0, read(f"{log}.err")
    (p0, out0, log0), (p1, out1, log1) = procs
    assert "2 nodes (this is node 0, coordinator 127.0.0.1:" in read(log0)
    assert "global batch 8 (4 per node)" in read(log0) and "keras on jax" in read(log0)
    h0, h1 = (json.loads((o / "history.json").read_text()) for o in (out0, out1))
    # Each node saw only its half of the images: equal losses and accuracies are the global ones.
    assert h0 == h1 and len(h0["loss"]) == 1 and set(h0) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    w0, w1 = (keras.saving.load_model(o / "model.keras").get_weights() for o in (out0, out1))
    assert len(w0) == len(w1) > 0 and all(np.array_equal(a, b) for a, b in zip(w0, w1))
    assert (out0 / "metrics.json").exists() and not (out1 / "metrics.json").exists(), "node 0 writes the report"
    assert "node 0 writes the report" in read(log1)


@pytest.mark.slow
def test_a_node_killed_mid_run_ends_every_node_in_one_line(small_data, model_cli, tmp_path):
    procs = start_nodes(model_cli, small_data, tmp_path, epochs=50, TRAINBOX_HEARTBEAT_S="10")
    (p0, out0, log0), (p1, out1, log1) = procs
    try:
        # The cluster formed and node 1 trains: then it is killed (our own child, by its Popen).
        wait_for("node 1 to join the cluster", lambda: "connected to 1 peer" in read(log1), timeout=300, every=0.2)
        p1.kill()
        assert p0.wait(timeout=120) == 1
    finally:
        for p, _, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    errors = [line for line in read(f"{log0}.err").splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: node 1 of 2 failed or stopped answering"), errors
    assert "Traceback" not in read(f"{log0}.err") and "Check failure" not in read(log0)
    assert "heartbeat" in (out0 / "runtime.log").read_text(), "the runtime's own words are kept aside"


def test_the_cluster_comes_from_flags_or_the_environment_and_is_checked():
    env = {"TRAINBOX_NODES": "3", "TRAINBOX_NODE": "2", "TRAINBOX_COORDINATOR": "10.0.0.4:4000"}
    assert cluster(environ=env) == Cluster(3, 2, "10.0.0.4:4000")
    assert cluster(2, 0, "h:1", environ=env) == Cluster(2, 0, "h:1"), "flags win"
    assert cluster(environ={}) == Cluster(1, 0, None)
    for args, says in (((2, 2, "h:1"), "--node-index 2"), ((2, 0, None), "needs --coordinator"),
                       ((2, 0, "h"), "is not HOST:PORT"), ((0, 0, None), "--nodes 0")):
        with pytest.raises(UsageError, match=says):
            cluster(*args, environ={})


def test_each_node_gets_an_equal_shard_of_every_file():
    files = list(range(11))
    shards = [shard(files, Cluster(3, i, "h:1")) for i in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3] and sorted(sum(shards, [])) == list(range(9))


def test_the_end_of_a_node_in_one_line_naming_the_node_gone():
    c = Cluster(2, 0, "h:1")
    runtime = "E1202 coordination_service.cc] UNAVAILABLE: Task 1 heartbeat timeout. This indicates ..."
    code, line = verdict(-6, runtime, "error: train failed: JaxRuntimeError: Gloo AllGather failed", c)
    assert code == 1 and line.startswith("error: node 1 of 2 failed or stopped answering")
    assert verdict(0, runtime, None, c) == (0, None)
    code, line = verdict(2, "", "error: --data x: no such folder", c)
    assert code == 2 and line.startswith("error: --data x: no such folder")
    code, line = verdict(-6, "PollForError: failed to connect", None, Cluster(2, 1, "h:1"))
    assert code == 1 and line.startswith("error: node 0 (the coordinator, h:1) failed")
