"""The sandbox: the whole flow with no AWS account, on this machine.

AWS is a moto server on 127.0.0.1 (boto3 reaches it through its endpoint
URL and runs exactly the code it runs against AWS). The "instance" is one of
two kinds of box, both admitting only the key pair that ``up`` created:

- container: a booted Debian with systemd, cloud-init, the login user
  ``ubuntu`` and the instance's user-data (sandbox/container.py), where
  root and systemd-nspawn exist (CI, Linux as root);
- process: a real OpenSSH sshd on 127.0.0.1 running as this user, the box's
  disk a directory under TRAINBOX_HOME/sandbox (a laptop without root, macOS).

A box of N nodes is N such boxes of the same kind, each with its own port
and disk: node 0 in the box's folder, node K in its ``nodeK`` folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

from box import layout as names
from box.layout import BoxLayout
from common import checks, paths, procs, state
from common.errors import TrainboxError, UsageError

from . import sshd

REGION = "us-east-1"


def _moto_dir() -> Path:
    d = paths.sandbox_dir() / "moto"
    d.mkdir(parents=True, exist_ok=True)
    return d


def moto_endpoint() -> str | None:
    """The running sandbox moto server's URL, or None."""
    f = _moto_dir() / "server.json"
    if not f.exists():
        return None
    info = json.loads(f.read_text())
    return info["endpoint"] if procs.alive(info["pid"]) else None


def endpoint() -> str | None:
    """The sandbox's AWS: AWS_ENDPOINT_URL if the caller runs its own moto
    server (tests do; trainbox never stops it), else trainbox's own, if running."""
    return os.environ.get("AWS_ENDPOINT_URL") or moto_endpoint()


def ensure_moto() -> str:
    endpoint = moto_endpoint()
    if endpoint:
        return endpoint
    d = _moto_dir()
    port = procs.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # moto's server, with the placement groups a multi-node box makes (sandbox/motoplace.py).
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [env.get("PYTHONPATH")])])
    pid = procs.spawn(
        [sys.executable, "-m", "sandbox.motoplace", "-H", "127.0.0.1", "-p", str(port)], d / "moto.log", env
    )
    if not procs.wait_for_port(port, pid, timeout=30):
        procs.terminate(pid)
        raise TrainboxError(
            "the sandbox's moto server did not start", f"is moto[server] installed? see {d / 'moto.log'}"
        )
    endpoint = f"http://127.0.0.1:{port}"
    (d / "server.json").write_text(json.dumps({"pid": pid, "port": port, "endpoint": endpoint}))
    return endpoint


def stop_moto() -> None:
    f = _moto_dir() / "server.json"
    if f.exists():
        procs.terminate(json.loads(f.read_text())["pid"])
        f.unlink()


def box_dir(name: str, node: int = 0) -> Path:
    d = paths.sandbox_dir() / "boxes" / checks.box_name(name)
    # node1, node2...: also the container's hostname (its folder's name).
    return d if node == 0 else d / f"node{int(node)}"


def nodes_of(name: str) -> list[int]:
    """The nodes the sandbox box has on this machine (node 0 first)."""
    d = box_dir(name)
    found = (
        sorted(int(p.name[4:]) for p in d.glob("node*") if p.name[4:].isdigit() and p.is_dir()) if d.is_dir() else []
    )
    return [0, *found]


KINDS = ("container", "process")


def choose_kind(requested: str | None = None) -> tuple[str, str]:
    """The kind of box a new sandbox box gets, and why (``up --sandbox`` says both)."""
    from . import container

    requested = requested or os.environ.get("TRAINBOX_SANDBOX_BOX") or "auto"
    if requested not in (*KINDS, "auto"):
        raise UsageError(f"--sandbox-box {requested!r} is not one of auto, container, process")
    why_not = container.unavailable()
    if requested == "container" and why_not:
        raise UsageError(f"the container box cannot run here: {why_not}", "use `--sandbox-box process`")
    if requested == "process":
        return "process", "as asked"
    if requested == "container":
        return "container", "as asked"
    if why_not:
        return "process", f"the container box needs root, systemd-nspawn and debootstrap: {why_not}"
    return "container", "root, systemd-nspawn and debootstrap are here"


def kind_of(name: str) -> str:
    """The kind of an existing sandbox box (a box from before kinds existed: process)."""
    f = box_dir(name) / "kind"
    return f.read_text().strip() if f.exists() else "process"


def made_for(name: str, node: int = 0) -> str | None:
    """The instance the box's node was made for (None: a box from before boxes recorded it)."""
    f = box_dir(name, node) / "instance"
    return f.read_text().strip() if f.exists() else None


def record_instance(name: str, node: int, instance_id: str) -> None:
    """Before the node boots: its IMDS stand-in answers this instance."""
    box_dir(name, node).mkdir(parents=True, exist_ok=True)
    (box_dir(name, node) / "instance").write_text(instance_id + "\n")


@contextlib.contextmanager
def box_lock(name: str):
    """Held while the box on this machine is made, replaced or removed for its instances: the
    laptop's commands (sandbox/cloud.py settle) and the sandbox's reclaim (sandbox/reclaim.py)
    may both find the group's replacement, and only one makes its box."""
    d = paths.sandbox_dir() / "locks"
    d.mkdir(parents=True, exist_ok=True)
    with paths.locked(d / checks.box_name(name)):
        yield


def box_workdir(name: str, node: int = 0) -> Path:
    """Where trainbox keeps code, data and runs on the sandbox's box (node)."""
    d = box_dir(name, node) / "disk"
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- the IMDS stand-in (sandbox/imds.py)
# One per node (each node is an instance), in the node's folder.


def _imds_record(name: str, node: int = 0) -> Path:
    return box_dir(name, node) / "imds" / "server.json"


def notice_file(name: str, node: int = 0) -> Path:
    return box_dir(name, node) / "imds" / "notice.json"


def imds_endpoint(name: str, node: int = 0) -> str | None:
    """The node's IMDS stand-in's URL if the server this module started still runs (same pid, same start time)."""
    f = _imds_record(name, node)
    if not f.exists():
        return None
    rec = json.loads(f.read_text())
    if not procs.recorded_alive(rec["pid"], rec["start_time"] or ""):
        return None
    return rec["endpoint"]


def ensure_imds(name: str, node: int = 0) -> str:
    """The node's IMDS stand-in on 127.0.0.1, started if it is not running (on its previous port when free).
    It answers for the instance the node was made for (``made_for``), asking the sandbox's moto
    with moto's fake credentials: none of this process's AWS settings reach it."""
    running = imds_endpoint(name, node)
    if running:
        return running
    from . import imds

    rec_file = _imds_record(name, node)
    rec_file.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(rec_file.read_text())["port"] if rec_file.exists() else None
    port = previous if previous and procs.port_free(previous) else procs.free_port()
    argv = [sys.executable, imds.__file__, "--port", str(port), "--notice-file", str(notice_file(name, node))]
    instance_id, aws = made_for(name, node), endpoint()
    if instance_id and aws:
        argv += ["--instance-id", instance_id, "--endpoint", aws, "--region", REGION]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    pid = procs.spawn(argv, rec_file.parent / "imds.log", env)
    if not procs.wait_for_port(port, pid, timeout=15):
        procs.terminate(pid)
        raise TrainboxError("the sandbox's IMDS stand-in did not start", f"see {rec_file.parent / 'imds.log'}")
    url = f"http://127.0.0.1:{port}"
    rec_file.write_text(json.dumps({"pid": pid, "start_time": procs.start_time(pid), "port": port, "endpoint": url}))
    return url


def stop_imds(name: str) -> None:
    """Stop every node's stand-in (only the processes recorded: the pid with its start time)."""
    for k in nodes_of(name):
        if imds_endpoint(name, k):
            procs.terminate(json.loads(_imds_record(name, k).read_text())["pid"])
        _imds_record(name, k).unlink(missing_ok=True)


def set_notice(name: str, action: str = "stop", in_s: float = 120.0) -> str:
    """Make the IMDS of each of the box's nodes answer a spot interruption notice (as AWS does two
    minutes ahead); the document."""
    import time

    from . import imds

    nodes = [k for k in nodes_of(name) if imds_endpoint(name, k)]
    if not nodes:
        raise UsageError(
            f"box '{name}' has no IMDS stand-in running (a running container box has one; a process box"
            " only while a reclaim plays it)",
            f"`python -m provision up --sandbox --sandbox-box container{'' if name == 'default' else ' --name ' + name}`",
        )
    doc = imds.notice_document(action, time.time() + in_s)
    for k in nodes:
        tmp = notice_file(name, k).with_suffix(".tmp")
        tmp.write_text(doc)
        tmp.replace(notice_file(name, k))
    return doc


def clear_notice(name: str, node: int | None = None) -> None:
    for k in nodes_of(name) if node is None else [node]:
        notice_file(name, k).unlink(missing_ok=True)


def start_box(name: str, key_file: Path, node: int = 0):
    """Boot the sandbox box (one node of it): its sshd (or its container), admitting exactly the box's key pair."""
    if kind_of(name) == "container":
        from . import container, rootfs

        d = box_dir(name, node)
        box = container.running(d)
        if box is None:
            # A new boot: no notice pending, the agent pointed at this node's stand-in.
            clear_notice(name, node)
            env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": ensure_imds(name, node)}
            moto = endpoint()
            if moto:
                # The box's AWS calls go to moto on 127.0.0.1: its S3 (box/s3.py) and its group's
                # size, which the guard sets to 0 before an idle --recover box shuts down (box/release.py).
                env["AWS_ENDPOINT_URL_S3"] = env["AWS_ENDPOINT_URL_AUTOSCALING"] = moto
            container.set_agent_env(d, env)
            box = container.boot(d, rootfs.path(), port=_previous_port(name, node))
        (d / "port").write_text(str(box.port))
        return box
    d = box_dir(name, node) / "sshd"
    # A restarted box keeps its port when it is free, so addresses the user
    # wrote down (ssh-config, editors' Remote-SSH) keep working.
    port_file = box_dir(name, node) / "port"
    previous = int(port_file.read_text()) if port_file.exists() else None
    server = sshd.start(d, [sshd.public_key_line(key_file)], port=previous)
    port_file.write_text(str(server.port))
    return server


def _kill_jobs(name: str, node: int = 0) -> None:
    """A stopped instance runs nothing: end the box's detached jobs, its Jupyter and its TensorBoards too.

    Only a job trainbox started and recorded is signalled: its pid file and
    the start time written with it must name a live process group leader
    that started then (a pid file alone may name a reused pid, or 1), and a
    finished run (its exit_code is there) has nothing left to end."""
    layout = BoxLayout(str(box_workdir(name, node)))
    jupyter = Path(layout.jupyter) / names.RUN_PID
    servers = [jupyter, *Path(layout.tensorboards).glob(f"*/{names.RUN_PID}")]
    for pid_file in [*Path(layout.runs).glob(f"*/{names.RUN_PID}"), *servers]:
        if not pid_file.exists() or (pid_file.parent / names.RUN_EXIT_CODE).exists():
            continue
        try:
            pid = int(pid_file.read_text().strip())
            started = (pid_file.parent / procs.START_FILE).read_text()
        except (OSError, ValueError):
            continue
        if procs.recorded_alive(pid, started) and _group_leader(pid):
            procs.terminate(pid, group=True)
    for pid_file in servers:
        pid_file.unlink(missing_ok=True)  # a later process with that pid is not ours


def _previous_port(name: str, node: int = 0) -> int | None:
    f = box_dir(name, node) / "port"
    return int(f.read_text()) if f.exists() else None


def _group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def stop_box(name: str, node: int | None = None) -> None:
    """Stop one node of the box, or (``node`` None) every node it has."""
    for k in nodes_of(name) if node is None else [node]:
        if kind_of(name) == "container":
            from . import container

            container.poweroff(box_dir(name, k))  # the guest's own shutdown ends every job
            continue
        _kill_jobs(name, k)
        sshd.stop(box_dir(name, k) / "sshd")


def remove_box(name: str) -> None:
    """Terminate: stop every node (and its IMDS stand-in) and wipe their disks. A removed
    image's layer the box was the last to stand on goes with sandbox/images.py's
    ``gc_sandbox_layers``, which the caller runs next."""
    stop_box(name)
    stop_imds(name)
    shutil.rmtree(box_dir(name), ignore_errors=True)


def box_running(name: str, node: int = 0):
    if kind_of(name) == "container":
        from . import container

        return container.running(box_dir(name, node))
    return sshd.running(box_dir(name, node) / "sshd")


def sandbox_boxes() -> list[str]:
    root = paths.sandbox_dir() / "boxes"
    return sorted(p.name for p in root.iterdir() if state._valid(p.name)) if root.exists() else []
