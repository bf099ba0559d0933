"""`up --nodes N` against moto in process: N tagged instances in one zone, one
tagged cluster placement group, TCP between the nodes, per-node state with
private addresses, price and quota × N, ssh --node, and `down` leaving nothing
(the placement group included). The sandbox's two nodes: tests/provision/test_sandbox_commands.py."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber
from pvkit import CIDR, aws, ec2, launch, live, moto_ami, moto_module, name, opts  # noqa: F401

from cli import box_verbs, provision_main
from common import cluster, paths, state
from common.errors import CloudError, UsageError
from provision import lifecycle, prices
from provision.inventory import tagged_resources
from provision.tags import TAG_MANAGED, TAG_NAME, TAG_NODE, tag_value


def described(ec2, ids: list[str]) -> list[dict]:
    return [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]


def test_two_nodes_up_twice_then_down_leaves_nothing_tagged(ec2, aws, launch, name):
    box, said = launch(nodes=2)
    assert box.node_count == 2
    ids = [n.instance_id for n in box.node_list()]
    insts = {i["InstanceId"]: i for i in described(ec2, ids)}
    # Each instance tagged with its node index; one zone (a cluster placement group's).
    assert [tag_value(insts[i], TAG_NODE) for i in ids] == ["0", "1"]
    assert len({i["Placement"]["AvailabilityZone"] for i in insts.values()}) == 1
    # The private addresses are recorded per node, node 0 first.
    addrs = cluster.node_addresses(name)
    assert [a.index for a in addrs] == [0, 1]
    assert [a.private_address for a in addrs] == [insts[i]["PrivateIpAddress"] for i in ids]
    assert [a.host for a in addrs] == [insts[i]["PublicIpAddress"] for i in ids]
    assert addrs[0].private_address != addrs[1].private_address
    assert {a.user for a in addrs} == {box.ssh_user} and {a.key_path for a in addrs} == {box.key_path}

    (group,) = ec2.describe_placement_groups(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])["PlacementGroups"]
    assert group["Strategy"] == "cluster" and tag_value(group, TAG_MANAGED) == "true"
    assert any(group["GroupName"] in s for s in said)

    # ssh from the caller's address only; all TCP from the group itself (its nodes), nothing else.
    (sg,) = [r for r in live(ec2, name) if r.kind == "security-group"]
    rules = ec2.describe_security_groups(GroupIds=[sg.id])["SecurityGroups"][0]["IpPermissions"]
    by_port = {(r["FromPort"], r["ToPort"]): r for r in rules}
    assert set(by_port) == {(22, 22), (0, 65535)}
    assert [x["CidrIp"] for x in by_port[(22, 22)]["IpRanges"]] == [CIDR]
    assert not by_port[(22, 22)].get("UserIdGroupPairs")
    assert [p["GroupId"] for p in by_port[(0, 65535)]["UserIdGroupPairs"]] == [sg.id]
    assert not by_port[(0, 65535)].get("IpRanges")

    # `ls` names each node and the placement group.
    found = tagged_resources(ec2, "us-east-1", name)
    assert sorted(r.detail for r in found if r.kind == "instance") == ["g4dn.xlarge node 0", "g4dn.xlarge node 1"]
    assert [r.id for r in found if r.kind == "placement-group"] == [group["GroupName"]]

    # Idempotent: `up --nodes 2` again reuses both nodes and makes nothing new.
    again, said = launch(nodes=2)
    assert [n.instance_id for n in again.node_list()] == ids
    assert sorted((r.kind, r.id) for r in live(ec2, name)) == sorted((r.kind, r.id) for r in found)

    removed = lifecycle.destroy(aws, name, lambda s: None)
    assert {"placement-group", "instance"} <= {r.kind for r in removed}
    assert live(ec2, name) == []
    assert (
        ec2.describe_placement_groups(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])["PlacementGroups"] == []
    )
    assert state.load(name) is None


def test_a_lost_node_is_launched_again_in_the_nodes_zone(ec2, aws, launch, name):
    box, _ = launch(nodes=3)
    lost = box.node(2).instance_id
    ec2.terminate_instances(InstanceIds=[lost])
    again, _ = launch(nodes=3)
    assert again.node_list()[0].instance_id == box.instance_id and again.node(1).instance_id == box.node(1).instance_id
    assert again.node(2).instance_id != lost
    zones = {i["Placement"]["AvailabilityZone"] for i in described(ec2, [n.instance_id for n in again.node_list()])}
    assert len(zones) == 1
    lifecycle.destroy(aws, name, lambda s: None)


def test_fewer_nodes_than_the_box_has_is_refused_and_changes_nothing(ec2, aws, launch, name):
    box, _ = launch(nodes=2)
    before = sorted((r.kind, r.id) for r in live(ec2, name))
    with pytest.raises(UsageError, match=r"has 2 node\(s\).*removes none") as caught:
        launch(nodes=1)
    assert "--nodes 2" in caught.value.fix
    assert sorted((r.kind, r.id) for r in live(ec2, name)) == before
    lifecycle.destroy(aws, name, lambda s: None)


def test_state_price_stop_start_and_cost_cover_every_node(ec2, aws, launch, name, capsys):
    box, _ = launch(nodes=2)
    s = lifecycle.status(aws, name)
    one = prices.price_per_hour("g4dn.xlarge")
    assert s.price_per_hour == pytest.approx(2 * one)
    assert [(n.index, n.state) for n in s.nodes] == [(0, "running"), (1, "running")]
    assert [n.private_ip for n in s.nodes] == [box.private_ip, box.node(1).private_ip]
    # The cost so far counts both nodes' uptime: more than node 0's alone.
    assert s.cost_so_far > prices.cost(one, s.uptime_s)

    assert provision_main.main(["state", "--name", name]) == 0
    out = capsys.readouterr().out
    assert f"${2 * one:.3f}/h" in out and "nodes        2" in out
    assert f"node 1       {box.node(1).instance_id} running" in out

    lifecycle.stop(aws, name)
    s = lifecycle.status(aws, name)
    assert {n.state for n in s.nodes} == {"stopped"} and s.state == "stopped" and s.cost_so_far is None
    # One node started by hand: the box is "mixed", and `ssh` says which node is not running.
    ec2.start_instances(InstanceIds=[box.instance_id])
    assert lifecycle.status(aws, name).state == "mixed"
    assert provision_main.main(["ssh", "--name", name]) == UsageError.exit_code
    assert "node 1 stopped" in capsys.readouterr().err
    lifecycle.start(aws, name)
    assert [n.state for n in lifecycle.status(aws, name).nodes] == ["running", "running"]
    lifecycle.destroy(aws, name, lambda s: None)


def test_ssh_node_1_reaches_node_1_and_a_missing_node_is_refused(aws, launch, name, capsys, monkeypatch):
    box, _ = launch(nodes=2)
    monkeypatch.setattr(box_verbs, "_ssh_binary", lambda: "/usr/bin/ssh")
    args = provision_main.build_parser().parse_args(["ssh", "--name", name, "--node", "1", "--", "nvidia-smi"])
    argv = box_verbs.ssh_command(args)
    one = box.node(1)
    assert one.ssh_host != box.ssh_host
    assert argv[-2:] == [f"{box.ssh_user}@{one.ssh_host}", "nvidia-smi"]
    assert argv[argv.index("-p") + 1] == "22" and argv[argv.index("-i") + 1] == box.key_path
    assert f"UserKnownHostsFile={paths.known_hosts()}" in argv
    assert box.ssh_host not in " ".join(argv)
    # Node 0 is the default: the box's own address.
    default = box_verbs.ssh_command(provision_main.build_parser().parse_args(["ssh", "--name", name]))
    assert default[-1] == f"{box.ssh_user}@{box.ssh_host}"

    assert provision_main.main(["ssh", "--name", name, "--node", "2"]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "has 2 node(s): no node 2" in err and "--node 0..1" in err and len(err.strip().splitlines()) == 1
    lifecycle.destroy(aws, name, lambda s: None)


def test_the_quota_check_counts_every_node(aws, ec2, moto_ami, name):
    from provision.up import up

    stubber = Stubber(aws.client("service-quotas"))
    stubber.add_response(
        "get_service_quota", {"Quota": {"Value": 4.0}}, {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"}
    )
    stubber.activate()
    with pytest.raises(CloudError, match=r"quota is 4 vCPUs; 2 nodes of g4dn.xlarge need 8"):
        up(aws, opts(ami=moto_ami, name=name, nodes=2), lambda s: None)
    stubber.assert_no_pending_responses()
    assert live(ec2, name) == []


def test_a_state_from_before_nodes_is_one_node_and_a_bad_node_entry_is_corrupt():
    import json

    box = state.BoxState("old", "us-east-1", "i-0", "g4dn.xlarge", "198.51.100.1", "ubuntu", "/k")
    state.save(box)
    f = paths.state_dir() / "old.json"
    data = json.loads(f.read_text())
    for key in ("nodes", "private_ip"):
        del data[key]
    f.write_text(json.dumps(data))
    (only,) = cluster.node_addresses("old")
    assert (only.index, only.host, only.port, only.private_address) == (0, "198.51.100.1", 22, "198.51.100.1")

    for bad in (
        [{"index": 1, "instance_id": "i-1", "ssh_host": "10.0.0.1\nProxyCommand x"}],
        [{"index": 2, "instance_id": "i-2", "ssh_host": "198.51.100.2"}],
        [{"index": 1, "instance_id": "i-1", "ssh_host": "198.51.100.2", "ssh_port": 0}],
        {"index": 1},
    ):
        f.write_text(json.dumps({**data, "nodes": bad}))
        with pytest.raises(state.CorruptState):
            state.load("old")
