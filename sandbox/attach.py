"""The sandbox's box for an instance moto launched: a booted container box
(its first boot runs the instance's user-data, as EC2's does) or a process
box (an sshd of this user's), pointed at from the box's state instead of
moto's fake IP. `up` attaches one per node; the sandbox's Auto Scaling
group (sandbox/group.py) one per replacement."""

from __future__ import annotations

import dataclasses
import getpass
import sys
import time
from collections.abc import Callable

from box.layout import DEFAULT_WORKDIR
from common import hostkeys
from common.state import BoxState, Node

from . import boxes, images


def attach_sandbox_box(
    box: BoxState,
    ec2=None,
    kind: str | None = None,
    say: Callable[[str], None] = lambda s: None,
    image_id: str | None = None,
) -> None:
    """Point the state at the sandbox's box (booted now) instead of moto's fake IP;
    for a box of several nodes, one sandbox box per node, all of one kind.
    ``image_id``: the trainbox image a new box is launched from (a container box boots its layers)."""
    d = boxes.box_dir(box.name)
    if (d / "kind").exists():
        existing = boxes.kind_of(box.name)
        if kind and kind != existing:
            say(f"box '{box.name}' is a {existing} box already: keeping it (`down` first for a {kind} box)")
        kind, why = existing, "the box has it"
    else:
        kind, why = boxes.choose_kind(kind)
    say(f"sandbox box: {kind} ({why})" + (f", {box.node_count} nodes on 127.0.0.1" if box.node_count > 1 else ""))
    for node in box.node_list():
        boxes.record_instance(box.name, node.index, node.instance_id)  # its IMDS stand-in answers this one
        if kind == "container":
            booted = _attach_container(box, node, ec2, say, image_id)
        else:
            booted = _attach_process(box, node, ec2, say)
        # The nodes share this machine's loopback: that is their network.
        booted.private_ip = "127.0.0.1"
        box.set_node(booted)


def _attach_process(box: BoxState, node: Node, ec2, say: Callable[[str], None]) -> Node:
    """Start the node's sshd as this user; its disk a folder of its own."""
    from pathlib import Path

    d = boxes.box_dir(box.name, node.index)
    d.mkdir(parents=True, exist_ok=True)
    if node.index == 0:
        (d / "kind").write_text("process\n")
    server = boxes.start_box(box.name, Path(box.key_path), node.index)
    box.ssh_user = getpass.getuser()
    # The sandbox box is this machine: its trainbox environment is this Python.
    box.python = sys.executable
    host, port = server.address
    hostkeys.pin(host, port, [server.host_key])
    return dataclasses.replace(node, ssh_host=host, ssh_port=port, workdir=str(boxes.box_workdir(box.name, node.index)))


def _attach_container(box: BoxState, node: Node, ec2, say: Callable[[str], None], image_id: str | None = None) -> Node:
    """Boot the node's container box: its first boot runs the instance's user-data as EC2's does;
    a new box launched from a trainbox image boots that image's layers under its own."""
    from pathlib import Path

    from . import container, rootfs, sshd

    d = boxes.box_dir(box.name, node.index)
    rootfs.ensure(say)  # the root file system, built once per machine
    if not container.created(d):
        layers = None
        if image_id:
            layers, why = images.sandbox_layers(image_id)
            if node.index == 0:
                say(why)
        container.create(
            d,
            node.instance_id,
            sshd.public_key_line(Path(box.key_path)),
            container.user_data_of(ec2, node.instance_id),
            lower_layers=layers,
        )
        if node.index == 0:
            (d / "kind").write_text("container\n")
    t0 = time.monotonic()
    server = boxes.start_box(box.name, Path(box.key_path), node.index)
    label = f"node {node.index}'s " if box.node_count > 1 else ""
    say(
        f"{label}container box booted: SSH on 127.0.0.1:{server.port} after {time.monotonic() - t0:.1f}s "
        f"(login {container.LOGIN_USER}, user-data run by cloud-init; console: {container.console_log(d)})"
    )
    box.ssh_user = container.LOGIN_USER
    box.workdir = DEFAULT_WORKDIR  # relative to the login user's home, as on AWS
    box.python = None  # trainbox's own env, built by the boot-time bootstrap, as on AWS
    host, port = server.address
    # Read from the box's own disk, where cloud-init wrote them: pinned, not trusted on first use.
    hostkeys.pin(host, port, list(server.host_keys))
    say("host keys pinned from the box's disk: " + ", ".join(hostkeys.fingerprint(k) for k in server.host_keys))
    return dataclasses.replace(node, ssh_host=host, ssh_port=port, workdir=None)
