"""`remote train` on a box that `provision up --nodes N` made: its nodes come
from the box's state (node 0 first), the coordinator listens on node 0's
private address, and a --nodes that disagrees with the box is refused."""

from __future__ import annotations

from common import state
from common.errors import UsageError
from remote import orchestrate, target


def two_node_box() -> state.BoxState:
    box = state.BoxState(
        "pair", "us-east-1", "i-0", "g4dn.xlarge", "198.51.100.1", "ubuntu", "/k/pair.pem", private_ip="10.0.0.5"
    )
    box.nodes = [state.Node(1, "i-1", "198.51.100.2", 22, private_ip="10.0.0.6")]
    state.save(box)
    return box


def test_a_boxs_nodes_are_its_targets_node_0_first_with_private_addresses():
    two_node_box()
    t0, t1 = target.box_nodes("pair")
    assert (t0.host, t0.private_address, t0.identity, t0.box) == ("198.51.100.1", "10.0.0.5", "/k/pair.pem", "pair")
    assert (t1.host, t1.private_address) == ("198.51.100.2", "10.0.0.6")
    assert target.box_node_count("pair") == 2 and target.box_node_count("none-such") == 1


def test_the_coordinator_is_node_0s_private_address(monkeypatch):
    two_node_box()
    targets = target.box_nodes("pair")
    started = []
    monkeypatch.setattr(orchestrate, "run", lambda conn, cmd, what: "40123\n")
    monkeypatch.setattr(
        orchestrate, "start", lambda conn, t, spec, run_id, say, **kw: started.append((t.host, kw["node"]))
    )

    class Conn:
        def close(self):
            pass

    orchestrate.start_nodes(lambda t: Conn(), targets, None, "r1", lambda line: None)
    assert sorted(started) == [("198.51.100.1", (0, 2, "10.0.0.5:40123")), ("198.51.100.2", (1, 2, "10.0.0.5:40123"))]


def test_nodes_that_disagree_with_the_box_are_refused(cli):
    two_node_box()
    r = cli("remote", "train", "--name", "pair", "--epochs", "1", "--nodes", "3")
    assert r.code == UsageError.exit_code
    assert "--nodes 3: box 'pair' has 2 node(s)" in r.err and "provision up --nodes 3 --name pair" in r.err


def test_a_multi_node_run_is_reached_where_its_boxs_nodes_are_now():
    """A node started again has a new address (and only that one is pinned): stop and
    --resume reach the nodes as the box's state has them, not as the run recorded them."""
    import argparse

    from cli.remote_reach import run_nodes
    from remote import records

    two_node_box()
    rec = records.RunRecord(
        run_id="r1",
        host="198.51.100.1",
        port=22,
        user="ubuntu",
        identity="/k/pair.pem",
        workdir="trainbox",
        local_dir="runs/r1",
        created=0.0,
        box="pair",
        nodes=[records.node_of(t) for t in target.box_nodes("pair")],
    )
    box = state.load("pair")
    box.nodes[0].ssh_host = "198.51.100.9"  # node 1 came back elsewhere
    state.save(box)
    args = argparse.Namespace(identity=None, start=False, name="default")
    assert [t.host for t in run_nodes(args, rec)] == ["198.51.100.1", "198.51.100.9"]


def test_no_node_starts_its_job_when_another_fails_before_it_is_ready(monkeypatch):
    """Node 1's data fails: node 0, ready first, never starts a job that would wait for its peer."""
    import pytest

    from common.errors import RemoteError

    two_node_box()
    started = []

    def start(conn, t, spec, run_id, say, *, node, ready, **kw):
        if node[0] == 1:
            raise RemoteError("the data could not be fetched")
        ready()
        started.append(node[0])

    class Conn:
        def close(self):
            pass

    monkeypatch.setattr(orchestrate, "run", lambda conn, cmd, what: "40123\n")
    monkeypatch.setattr(orchestrate, "start", start)
    with pytest.raises(RemoteError) as e:
        orchestrate.start_nodes(lambda t: Conn(), target.box_nodes("pair"), None, "r1", lambda line: None)
    assert started == []
    assert e.value.what.startswith("node 1 (pair): the data could not be fetched")
