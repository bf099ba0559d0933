"""The container box: a sandbox instance that boots a real Linux system.

systemd-nspawn boots the machine's Debian root (sandbox/rootfs.py, the
"AMI") read-only under a per-box writable layer (the "EBS volume"), with
systemd as PID 1. The box is an instance: cloud-init's NoCloud datasource
(a seed written into the layer, the sandbox's stand-in for EC2's metadata
service) creates the login user ``ubuntu`` with the key pair's public key and
passwordless sudo, and runs the instance's user-data (read back from moto,
as EC2 hands it over) as root at first boot: the guard's systemd timer and
the boot-time bootstrap.

The container shares this machine's network; its sshd listens on
127.0.0.1:PORT only. Its host keys are made by cloud-init at first boot and
read from the box's own disk (the layer), as EC2's console output hands them
over: they are pinned, never trusted on first use.

Lifecycle as EC2's: stop = a clean poweroff of the guest (SIGTERM to the
nspawn process this module started and recorded, pid plus start time, which
nspawn turns into SIGRTMIN+4, systemd's poweroff); a shutdown from inside
ends the nspawn process, which ``running`` then reports; start boots the
same layer again; remove powers off and deletes the layer.

Images (sandbox/images.py, sandbox/layers.py): a box's layer, cleaned
and powered off, is frozen into a read-only lower layer; a box made from the
image boots the root, the image's layers (lowest first: ``lowers``) and its
own new writable layer on top, one overlay: nothing is copied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from box import layout as names
from common import procs
from common.errors import RemoteError, TrainboxError

LOGIN_USER = "ubuntu"
SEED = "var/lib/cloud/seed/nocloud"
PORT_CFG = "etc/ssh/sshd_config.d/20-trainbox-port.conf"
# The agent's environment (its unit reads it if present): the sandbox's IMDS stand-in.
AGENT_ENV = names.AGENT_ENV_FILE.lstrip("/")
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
# The host's TLS trust and pip configuration: the box reaches the package index the
# way this machine does (a TLS-intercepting proxy with its own CA looks the same).
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf")


def unavailable() -> str | None:
    """Why this machine cannot run the container box, or None when it can."""
    if sys.platform != "linux":
        return f"this is {sys.platform}, not Linux"
    if os.geteuid() != 0:
        return "not running as root (systemd-nspawn needs root)"
    for tool, package in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap")):
        if not (shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)):
            return f"no {tool} (`apt-get install -y {package}`)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system"
    return None


@dataclass(frozen=True)
class ContainerBox:
    dir: Path
    port: int
    pid: int
    host_keys: tuple[str, ...]  # "type base64", the public halves to pin

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def host_key(self) -> str:
        return self.host_keys[0]


def upper(d: Path) -> Path:
    return d / "upper"


def console_log(d: Path) -> Path:
    return d / "console.log"


def _record(d: Path) -> Path:
    return d / "nspawn.json"


def _lowers_file(d: Path) -> Path:
    return d / "lowers.json"


def lowers(d: Path) -> list[Path]:
    """The frozen image layers under this box's own, lowest first (none: it boots the bare root)."""
    f = _lowers_file(d)
    return [Path(p) for p in json.loads(f.read_text())] if f.exists() else []


def set_lowers(d: Path, layers: list[Path]) -> None:
    _lowers_file(d).write_text(json.dumps([str(p) for p in layers]))


def machine_name(d: Path) -> str:
    """Unique per box dir: nspawn keeps per-machine state under /run by this name."""
    safe = re.sub(r"[^a-z0-9-]", "-", d.name.lower())[:24].strip("-") or "box"
    return f"tbx-{safe}-{hashlib.sha256(str(d.resolve()).encode()).hexdigest()[:8]}"


def created(d: Path) -> bool:
    return (upper(d) / SEED / "meta-data").exists()


def create(
    d: Path, instance_id: str, public_key: str, user_data: str | bytes, lower_layers: list[Path] | None = None
) -> None:
    """The box's disk before its first boot: the NoCloud seed, and the host's CA and pip config,
    over ``lower_layers`` (an image's, lowest first) if given."""
    d.mkdir(parents=True, exist_ok=True)
    set_lowers(d, lower_layers or [])
    up = upper(d)
    up.mkdir(parents=True, exist_ok=True)
    up.chmod(0o755)  # the layer's root directory is the box's /
    seed = up / SEED
    seed.mkdir(parents=True, exist_ok=True)
    seed.chmod(0o700)
    # JSON is YAML: every value quoted safely.
    meta = {"instance-id": instance_id, "local-hostname": d.name, "public-keys": [public_key.strip()]}
    (seed / "meta-data").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in meta.items()))
    fd = os.open(seed / "user-data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(user_data.encode() if isinstance(user_data, str) else user_data)
    for path in _trust_files():
        target = up / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        target.chmod(0o644)


def _trust_files() -> list[str]:
    """The host's CA bundle, its pip configs and every CA file they name."""
    found = [CA_BUNDLE] if os.path.isfile(CA_BUNDLE) else []
    for conf in PIP_CONFIGS:
        if not os.path.isfile(conf):
            continue
        found.append(conf)
        for line in Path(conf).read_text().splitlines():
            m = re.match(r"\s*cert\s*=\s*(\S+)", line)
            if m and os.path.isfile(m.group(1)) and m.group(1) not in found:
                found.append(m.group(1))
    return found


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def running(d: Path) -> ContainerBox | None:
    """The box, if the nspawn process this module started for it still runs."""
    f = _record(d)
    if not f.exists():
        return None
    rec = json.loads(f.read_text())
    pid = rec["pid"]
    # Ours only if the same process: same pid and start time (a reused pid is not ours).
    if pid <= 1 or not procs.alive(pid) or _start_time(pid) != rec["start_time"]:
        return None
    return ContainerBox(d, rec["port"], pid, tuple(rec["host_keys"]))


def set_agent_env(d: Path, env: dict[str, str]) -> None:
    """The trainbox agent's environment at the box's next boot (on AWS there is no such file)."""
    f = upper(d) / AGENT_ENV
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("# trainbox sandbox: written before each boot\n" + "".join(f"{k}={v}\n" for k, v in env.items()))
    f.chmod(0o644)


def _guest_init(nspawn_pid: int) -> int | None:
    """The guest's PID 1 as this machine sees it: nspawn's descendant that is PID 1 of its own pid namespace."""
    for pid in procs.descendants(nspawn_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        nspid = next((l.split()[1:] for l in status.splitlines() if l.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
    return None


def power_cut(d: Path, timeout: float = 30.0) -> bool:
    """Cut the box's power: every process of the guest ends at once, no shutdown runs.

    SIGKILL to nspawn alone would leave the guest running (its PID 1 is not
    nspawn's to take along): the guest's PID 1 is killed first, which ends its
    whole pid namespace, then nspawn. Only the nspawn process this module
    recorded (pid and start time, checked by ``running``) and its own
    descendant are signalled. False if the box was not running.
    """
    box = running(d)
    if box is None:
        return False
    init = _guest_init(box.pid)
    for pid in ([init] if init and init > 1 else []) + [box.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (procs.alive(box.pid) or (init and procs.alive(init))):
        time.sleep(0.05)
    _record(d).unlink(missing_ok=True)
    return True


def _host_keys(d: Path) -> list[str]:
    keys = []
    for kind in HOST_KEY_TYPES:
        f = upper(d) / f"etc/ssh/ssh_host_{kind}_key.pub"
        if f.exists():
            keys.append(" ".join(f.read_text().split()[:2]))
    return keys


def _escaped(p: Path) -> str:
    """A path in --overlay='s colon-separated list (nspawn reads backslash escapes)."""
    return str(p).replace("\\", "\\\\").replace(":", "\\:")


def _ssh_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def boot(d: Path, base: Path, port: int | None = None, timeout: float = 180.0) -> ContainerBox:
    """Boot the box (or find it running) and wait until its sshd answers."""
    existing = running(d)
    if existing:
        return existing
    if not created(d):
        raise TrainboxError(f"the container box in {d} has no disk", "run `python -m provision up --sandbox` again")
    if port is None or not procs.port_free(port):
        port = procs.free_port()
    cfg = upper(d) / PORT_CFG
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"# trainbox: this box's port on the host's loopback\nPort {port}\n")
    log = console_log(d)
    with open(log, "a") as f:
        f.write(f"\n--- trainbox: boot at {time.strftime('%F %T')} on 127.0.0.1:{port}\n")
    argv = [
        shutil.which("systemd-nspawn") or "systemd-nspawn",
        "-D",
        str(base),
        # The root read-only below, an image's frozen layers over it (lowest first), this box's layer on top.
        "--overlay=" + ":".join(["+/", *(_escaped(p) for p in lowers(d)), _escaped(upper(d)), "/"]),
        "--boot",
        "-M",
        machine_name(d),
        # No system bus on a machine whose PID 1 is not systemd: nothing to register with.
        "--register=no",
        "--keep-unit",
        "--console=passive",  # the guest's console goes to the log; nspawn never reads our terminal
        "--kill-signal=SIGRTMIN+4",  # what SIGTERM to nspawn sends PID 1: systemd's clean poweroff
    ]
    pid = procs.spawn(argv, log)  # its own session (setsid): it outlives this CLI
    start = _start_time(pid)
    rec: dict[str, object] = {"pid": pid, "start_time": start, "port": port, "host_keys": []}
    _record(d).write_text(json.dumps(rec))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            _record(d).unlink(missing_ok=True)
            last = [l for l in log.read_text().splitlines() if l.strip()][-1:] or ["?"]
            raise RemoteError(f"the container box did not boot ({last[0].strip()})", f"see {log}")
        if _ssh_answers(port):
            keys = _host_keys(d)
            if keys:
                rec["host_keys"] = keys
                _record(d).write_text(json.dumps(rec))
                return ContainerBox(d, port, pid, tuple(keys))
        time.sleep(0.1)
    poweroff(d)
    raise RemoteError(f"the container box did not answer SSH on 127.0.0.1:{port} within {timeout:.0f}s", f"see {log}")


def poweroff(d: Path, timeout: float = 60.0) -> None:
    """Shut the guest down cleanly (as `stop` does an instance); kill it if it hangs."""
    box = running(d)
    if box is None:
        _record(d).unlink(missing_ok=True)
        return
    try:
        os.kill(box.pid, signal.SIGTERM)  # nspawn sends PID 1 the --kill-signal: poweroff
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while procs.alive(box.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if procs.alive(box.pid) and _start_time(box.pid) == json.loads(_record(d).read_text())["start_time"]:
        power_cut(d, timeout=10)  # SIGKILL to nspawn alone would leave the guest running
    _record(d).unlink(missing_ok=True)


def remove(d: Path) -> None:
    """Terminate: power off, then delete the box's layer (its disk)."""
    poweroff(d)
    shutil.rmtree(d, ignore_errors=True)


def user_data_of(ec2, instance_id: str) -> bytes:
    """The instance's user-data, as EC2 hands it to the instance (bytes: trainbox's is gzipped)."""
    attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    value = attr.get("UserData", {}).get("Value")
    return base64.b64decode(value) if value else b""
