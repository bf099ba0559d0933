"""The container box's root file system: a Debian 12 made by debootstrap, once per machine.

The root plays the AMI: every container box boots it read-only under its
own writable layer (sandbox/container.py). It is built once and kept in a
machine-wide cache (``TRAINBOX_CACHE``, else the platform's user cache dir;
never TRAINBOX_HOME, which tests make per test) under a key of its recipe,
so a changed recipe builds a new root and an unchanged one is reused.

The build is atomic: debootstrap writes into a temp dir next to the cache
entry, which is renamed into place only when complete, under a lock, so two
processes never build it twice and an interrupted build never looks done.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from common.errors import TrainboxError
from common.progress import Tail

SUITE = "bookworm"  # Debian 12: the same Python (3.11) and systemd generation as the DLAMI's Ubuntu 22.04/24.04
MIRROR = "http://deb.debian.org/debian"
# What an instance has: systemd as PID 1, sshd, sudo, Python with venv, `ss` for the
# guard, cloud-init to run the user-data. python3-cffi-backend: debootstrap does not
# resolve the virtual package python3-cryptography (a cloud-init dependency) needs.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
    "cloud-init",
    "python3-cffi-backend",
)

# cloud-init as EC2 runs it, with the NoCloud datasource (a seed in the box's layer)
# instead of EC2's metadata service. `locale: false`: its locale module fails on a
# minbase root (no `locales`). The container shares the host's network: cloud-init
# must not configure it, nor grow a disk that is a directory.
CLOUD_CFG = """\
# trainbox: the container box's cloud-init (the sandbox's stand-in for EC2's).
datasource_list: [ NoCloud, None ]
network: {config: disabled}
locale: false
growpart: {mode: "off"}
resize_rootfs: false
manage_etc_hosts: localhost
# The host keys each box makes at first boot (no DSA: OpenSSH no longer accepts it).
ssh_genkeytypes: [ed25519, ecdsa, rsa]
# The login user, as on the Deep Learning AMI: ubuntu, passwordless sudo, no
# password (locked: key login only), the key pair's public key from the metadata.
system_info:
  default_user:
    name: ubuntu
    lock_passwd: true
    gecos: trainbox login user
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
"""

# The container shares the host's network: its sshd listens on 127.0.0.1 only
# (the per-box port is in the box's layer).
SSHD_CFG = "# trainbox: the container shares the host's network\nListenAddress 127.0.0.1\n"

# What an AMI's /etc/hosts holds and debootstrap makes none of: without it
# "localhost" does not resolve on the box (TensorBoard checks its port on
# "localhost": socket.gaierror). cloud-init's manage_etc_hosts: localhost then
# adds the box's own name (127.0.1.1), as on EC2.
ETC_HOSTS = """\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

FORMAT = 2  # bump when configure() changes


def recipe() -> dict:
    return {
        "format": FORMAT,
        "suite": SUITE,
        "variant": "minbase",
        "packages": list(PACKAGES),
        "cloud_cfg": CLOUD_CFG,
        "sshd_cfg": SSHD_CFG,
        "etc_hosts": ETC_HOSTS,
    }


def key() -> str:
    return f"debian-{SUITE}-" + hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]


def cache_dir() -> Path:
    from common import paths

    return paths.cache_dir("rootfs").resolve()  # a box records its lower layer by this path: no link in it


def path() -> Path:
    """Where the root for the current recipe lives (built or not)."""
    return cache_dir() / key()


def built() -> bool:
    return (path() / "etc" / "trainbox-rootfs").exists()


def configure(root: Path) -> None:
    """Turn a debootstrap'ed root into the box's image (the part an AMI bakes in)."""
    (root / "etc/cloud/cloud.cfg.d/90-trainbox.cfg").write_text(CLOUD_CFG)
    (root / "etc/ssh/sshd_config.d/10-trainbox.conf").write_text(SSHD_CFG)
    (root / "etc/hosts").write_text(ETC_HOSTS)
    # No host keys in the image: cloud-init makes each box its own at first boot,
    # as on EC2 (two boxes never share a key).
    for f in (root / "etc/ssh").glob("ssh_host_*"):
        f.unlink()
    # Each box gets its own machine id at first boot.
    (root / "etc/machine-id").write_text("")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/trainbox-rootfs").write_text(json.dumps({"key": key(), "built_at": time.time()}) + "\n")


# debootstrap's own progress: "I: <Step> <package> <version>", one line per package per step.
STEPS = ("Retrieving", "Validating", "Extracting", "Unpacking", "Configuring")
STAGE = {
    "Retrieving": "downloading",
    "Validating": "downloading",
    "Extracting": "unpacking",
    "Unpacking": "unpacking",
    "Configuring": "configuring",
}
NOT_PACKAGES = {
    "InRelease",
    "Release",
    "Release.gpg",
    "Packages",
    "base",
    "required",
}  # "I: Retrieving Packages" and the like


def package_step(line: str) -> tuple[str, str] | None:
    """(step, package) of one of debootstrap's per-package lines, else None."""
    words = line.split()  # "I: Retrieving adduser 3.134", "I: Unpacking adduser..."
    if len(words) >= 3 and words[0] == "I:" and words[1] in STEPS:
        package = words[2].removesuffix("...")
        if package and package not in NOT_PACKAGES:
            return words[1], package
    return None


def expected_steps(logs_dir: Path) -> int | None:
    """The per-package lines of this machine's last build (any recipe's): the bar's total, else unknown."""
    logs = sorted(logs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for log in logs:
        try:
            n = sum(1 for line in log.read_text(errors="replace").splitlines() if package_step(line))
        except OSError:
            continue
        if n:
            return n
    return None


def follow_build(
    argv: list[str], log: Path, what: str, say: Callable[[str], None], total: int | None = None, stream=None
) -> tuple[int, set[str], Tail, float]:
    """Run argv, its output to log and to ONE bar (progress.Bar) driven by its
    per-package lines; (exit code, packages seen, the output's tail, seconds)."""
    from common import progress

    bar = progress.Bar(what, total, unit="step", stream=stream, say=say if stream is None else None)
    tail = Tail()
    packages: set[str] = set()
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                stdin=subprocess.DEVNULL,
                errors="replace",
            )
            assert proc.stdout is not None  # PIPE
            for line in proc.stdout:
                out.write(line)
                tail.add(line)
                step = package_step(line)
                if step is None:
                    continue
                bar.set_phase(STAGE[step[0]])
                if step[0] == "Retrieving":  # one per .deb (the later steps name some by other names)
                    packages.add(step[1])
                bar.advance(1, step[1])
            code = proc.wait()
    finally:
        bar.close()
    return code, packages, tail, bar.elapsed()


def debootstrap(target: Path, say: Callable[[str], None], log: Path, argv: list[str] | None = None) -> int:
    """Build the root into target with ONE progress bar; the number of packages, or TrainboxError with the output's tail."""
    argv = argv or ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(target), MIRROR]
    code, packages, tail, took = follow_build(argv, log, "root file system", say, expected_steps(log.parent))
    if code != 0:
        said = [l for l in tail.lines if l.startswith(("E:", "W:"))][-1:] or [f"exit {code}"]
        say(f"debootstrap failed after {took:.0f} s; the last of its output:\n{tail.text()}")
        raise TrainboxError(
            f"building the container box's root file system failed ({said[0]})",
            f"see {log} (debootstrap's full output); `--sandbox-box process` uses the process box instead",
        )
    return len(packages)


def ensure(say: Callable[[str], None]) -> Path:
    """The root for the current recipe, built first if this machine has none (minutes, once)."""
    target = path()
    if built():
        return target
    lock = open(cache_dir() / f"{key()}.lock", "w")
    try:
        if not _try_lock(lock):
            say(f"another trainbox is building the container box's root file system ({target}); waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if built():
            return target
        if target.exists():  # a root from before its marker was written: never used, never complete
            shutil.rmtree(target)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        for stale in target.parent.glob(f"{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # an interrupted build's (we hold the lock)
        log = target.parent / f"{target.name}.log"
        say(
            f"building the container box's root file system (Debian {SUITE}, once per machine, about 1-2 min): {target}"
        )
        t0 = time.monotonic()
        try:
            n = debootstrap(tmp, say, log)
            configure(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        size = subprocess.run(["du", "-sm", str(target)], capture_output=True, text=True).stdout.split()[:1]
        say(
            f"root file system: {n} packages in {time.monotonic() - t0:.0f} s ({size[0] if size else '?'} MB; log: {log}), "
            "reused from now on"
        )
        return target
    finally:
        lock.close()


def _try_lock(f) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
