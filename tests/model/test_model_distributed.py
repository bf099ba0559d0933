"""Multi-node data-parallel training (model/distributed.py, model/supervise.py):
the cluster's settings, the shards and the one line a failed node ends in.
Two real nodes (two sshd boxes, JAX's distributed runtime between them)
train in tests/remote/test_multinode.py."""

import os

import pytest

from model.distributed import Cluster, cluster, shard
from model.errors import UsageError
from model.supervise import verdict


def read(path) -> str:
    return open(path).read() if os.path.exists(path) else ""


def test_the_cluster_comes_from_flags_or_the_environment_and_is_checked():
    env = {"TRAINBOX_NODES": "3", "TRAINBOX_NODE": "2", "TRAINBOX_COORDINATOR": "10.0.0.4:4000"}
    assert cluster(environ=env) == Cluster(3, 2, "10.0.0.4:4000")
    assert cluster(2, 0, "h:1", environ=env) == Cluster(2, 0, "h:1"), "flags win"
    assert cluster(environ={}) == Cluster(1, 0, None)
    for args, says in (
        ((2, 2, "h:1"), "--node-index 2"),
        ((2, 0, None), "needs --coordinator"),
        ((2, 0, "h"), "is not HOST:PORT"),
        ((0, 0, None), "--nodes 0"),
    ):
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


JOIN_AND_WAIT = """
import sys, time
from model.distributed import Cluster, join
join(Cluster(2, int(sys.argv[1]), sys.argv[2]))
print("joined", flush=True)
time.sleep(120)
"""


def test_a_node_told_to_stop_ends_though_jaxs_runtime_takes_sigterm(tmp_path):
    """jax.distributed swallows SIGTERM (its preemption notice): join() gives it back."""
    import signal
    import socket
    import subprocess
    import sys

    from testkit import wait_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    logs = [tmp_path / f"node{i}.log" for i in (0, 1)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOIN_AND_WAIT, str(i), f"127.0.0.1:{port}"],
            env=env,
            stdout=open(logs[i], "w"),
            stderr=subprocess.STDOUT,
        )
        for i in (0, 1)
    ]
    try:
        wait_for("both nodes to join", lambda: all("joined" in log.read_text() for log in logs), timeout=120)
        procs[1].send_signal(signal.SIGTERM)  # our own child, by its Popen
        assert procs[1].wait(timeout=15) == -signal.SIGTERM
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


JOIN_WORK_LEAVE = """
import sys, time
import jax
from model.distributed import Cluster, join, leave
join(Cluster(2, int(sys.argv[1]), sys.argv[2]))
leave()
print("left", jax.distributed.is_initialized(), flush=True)
if sys.argv[1] == "0":
    time.sleep(3)  # node 0's report, after the cluster is gone: node 1 is not held for it
"""


def test_every_node_leaves_the_cluster_before_node_0s_report(tmp_path):
    """The runtime's shutdown is a barrier of all nodes: leave() passes it together,
    so node 1 exits at once while node 0 goes on alone (a report longer than the
    barrier's timeout used to abort both)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOIN_WORK_LEAVE, str(i), f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("left False" in out for out in outs), outs
