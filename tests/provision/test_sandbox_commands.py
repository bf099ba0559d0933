"""Commands that reach the box, against the sandbox (moto on 127.0.0.1 plays
AWS, a real sshd on 127.0.0.1 plays the instance): ssh-config, aliases,
stop/start, host key pinning, and the Jupyter tunnel's pieces."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pvkit import SSH, run_ssh, sandbox_box  # noqa: F401

from cli.provision_main import main
from common import hostkeys, paths
from common.aws import Cloud
from common.state import BoxState
from provision import lifecycle, sshcmd
from provision.up import pin_host_key
from sandbox import boxes
from testkit import refused


def test_ssh_config_entry_works_with_plain_ssh(sandbox_box, capsys):
    assert main(["ssh-config"]) == 0
    path = paths.home() / "ssh_config"
    assert f"wrote {path}" in capsys.readouterr().out
    text = path.read_text()
    assert "Host trainbox-default" in text and f"Port {sandbox_box.ssh_port}" in text
    assert "StrictHostKeyChecking yes" in text and f"UserKnownHostsFile {paths.known_hosts()}" in text
    p = subprocess.run(
        [SSH, "-F", str(path), "-o", "BatchMode=yes", "trainbox-default", "echo", "via-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "via-config"


def test_aliases_load_in_bash_and_run_the_commands(sandbox_box, capsys):
    assert main(["aliases"]) == 0
    text = capsys.readouterr().out
    script = f"shopt -s expand_aliases\neval {sh_quote(text)}\ntype aws-state aws-nb >/dev/null || exit 9\naws-ip\n"
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "127.0.0.1"
    for name in ("aws-state", "aws-start", "aws-stop", "aws-ip", "aws-ssh", "aws-nb"):
        assert f"alias {name}=" in text
    assert sys.executable in text


def sh_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def test_aliases_of_a_named_box_pass_the_name(capsys):
    assert main(["aliases", "--name", "gpu2"]) == 0
    assert "state --name gpu2'" in capsys.readouterr().out


def test_stop_makes_the_box_unreachable_and_start_brings_back_its_host_key(sandbox_box, moto_endpoint):
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    key_before = boxes.box_running("default").host_key
    assert run_ssh(sandbox_box, "true").returncode == 0
    assert lifecycle.stop(cloud, "default").state == "stopped"
    assert refused(sandbox_box.ssh_port)
    assert boxes.box_running("default") is None
    box = lifecycle.start(cloud, "default")
    assert boxes.box_running("default").host_key == key_before
    assert box.ssh_port == sandbox_box.ssh_port  # the same address, when the port is still free
    p = run_ssh(box, "echo", "back")  # StrictHostKeyChecking=yes against the pin made at `up`
    assert p.returncode == 0 and p.stdout.strip() == "back", p.stderr
    assert lifecycle.status(cloud, "default").state == "running"


def test_two_sandbox_nodes_are_two_reachable_boxes_that_stop_start_and_go(moto_endpoint, tmp_path, monkeypatch):
    """`up --sandbox --nodes 2`: two sshds on 127.0.0.1, each its own port and disk,
    private address 127.0.0.1; stop and start reach both; `down` leaves nothing."""
    from common import cluster
    from provision.up import UpOptions, up
    from testkit import tagged

    monkeypatch.chdir(tmp_path)
    cloud = Cloud(boxes.REGION, moto_endpoint, sandbox=True)
    box = up(cloud, UpOptions(name="duo", nodes=2), lambda s: None)
    nodes = cluster.node_addresses("duo")
    assert [(n.index, n.host, n.private_address) for n in nodes] == [
        (0, "127.0.0.1", "127.0.0.1"),
        (1, "127.0.0.1", "127.0.0.1"),
    ]
    assert nodes[0].port != nodes[1].port and nodes[0].workdir != nodes[1].workdir
    for n in nodes:
        p = run_ssh(box.node(n.index), "cd", n.workdir, "&&", "pwd")  # the pinned host key of that node
        assert p.returncode == 0 and p.stdout.strip() == n.workdir, p.stderr
    assert {r.kind for r in tagged(moto_endpoint)} >= {"placement-group", "instance"}

    lifecycle.stop(cloud, "duo")
    assert all(refused(n.port) for n in nodes)
    lifecycle.start(cloud, "duo")
    for n in nodes:
        assert run_ssh(box.node(n.index), "true").returncode == 0

    lifecycle.destroy(cloud, "duo", lambda s: None)
    assert tagged(moto_endpoint) == []
    assert all(refused(n.port) for n in nodes) and not boxes.box_dir("duo").exists()


# ---------------------------------------------------------------- host keys

CONSOLE = """cloud-init boot...
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAx root@ip-10-77-0-5
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsp/2Yq8kXkGxv5hmvI1/jBDw9lqQ8oG2J2w+7QnNd4 root@ip-10-77-0-5
-----END SSH HOST KEY KEYS-----
Cloud-init finished
"""


def test_keys_from_console():
    assert hostkeys.keys_from_console(CONSOLE) == [
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAx",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsp/2Yq8kXkGxv5hmvI1/jBDw9lqQ8oG2J2w+7QnNd4",
    ]
    assert hostkeys.keys_from_console("no keys here") == []


class FakeEc2:
    def __init__(self, output):
        self.output = output

    def get_console_output(self, **kw):
        return {"Output": self.output}


def test_console_keys_are_pinned_without_scanning():
    def no_scan(host, port):
        raise AssertionError("scanned although the console had the keys")

    how, lines = pin_host_key(FakeEc2(CONSOLE), "i-1", "192.0.2.10", scan=no_scan)
    assert how == "console" and len(lines) == 2
    assert "192.0.2.10 ssh-ed25519 AAAAC3" in paths.known_hosts().read_text()


def test_without_console_keys_the_key_is_pinned_on_first_use(ssh_host, moto_endpoint):
    ec2 = Cloud("us-east-1", moto_endpoint).client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    # moto's console output has no host keys: the key the server presents is pinned.
    how, lines = pin_host_key(ec2, iid, "127.0.0.1", ssh_host.port)
    assert how == "first-use"
    assert lines == [ssh_host.host_key]
    assert hostkeys.fingerprint(lines[0]).startswith("SHA256:")
    assert f"[127.0.0.1]:{ssh_host.port} {ssh_host.host_key}" in paths.known_hosts().read_text()


def test_scanning_a_closed_port_is_a_remote_error():
    from common.errors import RemoteError
    from common.procs import free_port

    with pytest.raises(RemoteError, match="could not read the SSH host key"):
        hostkeys.scan("127.0.0.1", free_port(), timeout=2)


# ---------------------------------------------------------------- nb

BOX = BoxState("default", "us-east-1", "i-1", "g4dn.xlarge", "192.0.2.10", "ubuntu", "/k/key.pem")


def test_tunnel_argv_forwards_loopback_to_loopback_and_opens_nothing_else():
    argv = sshcmd.tunnel_argv("/usr/bin/ssh", BOX, "/h/known_hosts", 8888)
    assert argv[0] == "/usr/bin/ssh" and argv[-1] == "ubuntu@192.0.2.10"
    assert argv[argv.index("-L") + 1] == "127.0.0.1:8888:127.0.0.1:8888"
    assert "-N" in argv and "ExitOnForwardFailure=yes" in argv
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/h/known_hosts" in argv
    assert argv[argv.index("-i") + 1] == "/k/key.pem"
    other = sshcmd.tunnel_argv("ssh", BOX, "kh", 8888, local_port=9999)
    assert other[other.index("-L") + 1] == "127.0.0.1:9999:127.0.0.1:8888"


def test_env_python_is_the_trainbox_env_unless_the_state_names_one():
    assert sshcmd.env_python(BOX) == "trainbox/env/bin/python"
    assert sshcmd.env_python(BoxState(**{**BOX.__dict__, "python": "/opt/py"})) == "/opt/py"


def test_sandbox_up_prints_no_quota_warning(cli, moto_endpoint, tmp_path):
    """moto has no EC2 vCPU quotas: the sandbox must not warn about them on every `up`."""
    r = cli("provision", "up", "--sandbox", cwd=tmp_path)
    try:
        assert r.code == 0, r.err
        assert "box 'default' is up" in r.out
        assert "quota" not in (r.out + r.err).lower() and "warning" not in r.err
    finally:
        assert cli("provision", "down", "--yes", "--no-pull", cwd=tmp_path).code == 0
