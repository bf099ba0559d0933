"""Benchmark: trainbox's push over a slow link, against `tar | ssh` and rsync on the same link.

The box is a real sshd in a network namespace of this run's own, reached
through a veth pair whose both ends are shaped by `tc` tbf (token bucket: the
link's rate; netem is absent on these machines), at each --rates Mbit/s. The
addresses are link-local ones of that veth pair (169.254.211.1 and .2),
reachable from nowhere else; the namespace, the veth pair and the sshd are
removed at the end, whatever happens. Needs root (ip netns, tc).

The project is mixed: many small text files (code: compressible) and a few
big random ones (weights, images: incompressible, sent raw by the codecs).
For each rate (0: the veth pair unshaped, a fast link) it prints the time of
trainbox's push with each way to compress it (sync.push's ``compress=``:
none, ssh's own -C, gzip, zstd; remote/wirecodec.py), of `tar | ssh` and of
`rsync -a`, and each push's ratios to those two (issue 26: push <= 1.05x
`tar | ssh`), to the uncompressed push, and the share of the link's rate it
moved, counting the project's uncompressed bytes (goal >= 0.95x). Then a
push cut at ~60 % (the sshd session serving it killed) and run again: the
bytes the second push sent against the bytes missing on the box
(goal <= 1.05x).

    sudo .venv/bin/python bench/link.py [--rates 20,100,0] [--small 1500] [--big 3] [--big-mb 6] [--repeat 3]

No timed assertions anywhere: it prints ratios against baselines measured in
the same run (docs/architecture.md, "Tests").
"""

from __future__ import annotations

import argparse
import getpass
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import (  # noqa: E402
    hostkeys,
    paths,
    procs,  # noqa: E402
)
from remote import sync  # noqa: E402
from remote.connection import LinkDropped, connect  # noqa: E402
from remote.target import Target  # noqa: E402
from sandbox import sshd  # noqa: E402

HOST_IP, BOX_IP, PORT = "169.254.211.1", "169.254.211.2", 2222
HOWS = ("none", "ssh", "gzip", "zstd")  # sync.push's compress=, each measured


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class Link:
    """A namespace with a veth pair into it, both ends tbf-shaped; removed by close()."""

    def __init__(self):
        tag = os.getpid() % 100_000
        self.ns, self.host, self.box = f"tbx-link-{tag}", f"tbxh{tag}", f"tbxb{tag}"
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "link", "add", self.host, "type", "veth", "peer", "name", self.box)
            sh("ip", "link", "set", self.box, "netns", self.ns)
            sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", self.host)
            sh("ip", "link", "set", self.host, "up")
            self.inside("ip", "addr", "add", f"{BOX_IP}/30", "dev", self.box)
            self.inside("ip", "link", "set", self.box, "up")
            self.inside("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def inside(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def shape(self, mbit: int) -> None:
        # tbf: a burst of at least one timer tick's worth of bytes, else it cannot reach the rate.
        burst = max(32_000, mbit * 1_000_000 // 8 // 100)
        spec = ["root", "tbf", "rate", f"{mbit}mbit", "burst", str(burst), "latency", "50ms"]
        sh("tc", "qdisc", "replace", "dev", self.host, *spec)
        self.inside("tc", "qdisc", "replace", "dev", self.box, *spec)

    def unshape(self) -> None:
        sh("tc", "qdisc", "del", "dev", self.host, "root", check=False)
        self.inside("tc", "qdisc", "del", "dev", self.box, "root", check=False)

    def close(self) -> None:
        sh("ip", "netns", "del", self.ns, check=False)  # takes the box's end, and so the pair, with it
        sh("ip", "link", "del", self.host, check=False)  # if the namespace never got it

    def gone(self) -> bool:
        return (
            sh("ip", "netns", "pids", self.ns, check=False).returncode != 0
            and sh("ip", "link", "show", self.host, check=False).returncode != 0
        )


def start_box_sshd(link: Link, d: Path, public: str) -> tuple[int, str, str]:
    """An sshd inside the namespace on BOX_IP:PORT; (pid, its start time, its host key)."""
    d.mkdir(parents=True)
    private_host, public_host = sshd.new_private_key()
    paths.write_private(d / "host_ed25519_key", private_host)
    (d / "authorized_keys").write_text(public + "\n")
    config = sshd.CONFIG.format(port=PORT, dir=d, users=getpass.getuser()).replace(
        "ListenAddress 127.0.0.1", f"ListenAddress {BOX_IP}"
    )
    (d / "sshd_config").write_text(config)
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    # `ip netns exec` enters the namespace and execs sshd: the pid is sshd's.
    pid = procs.spawn(
        ["ip", "netns", "exec", link.ns, sshd.sshd_binary(), "-D", "-e", "-f", str(d / "sshd_config")], d / "log"
    )
    if not procs.wait_for_port(PORT, pid, timeout=10, host=BOX_IP):
        raise SystemExit(f"the namespace's sshd did not start: {(d / 'log').read_text()[-300:]}")
    started = procs.start_time(pid)
    assert started
    return pid, started, " ".join(public_host.split()[:2])


def make_project(root: Path, small: int, big: int, big_mb: int) -> int:
    rng = random.Random(0)
    words = ["model", "layer", "epoch", "batch", "return", "import", "self", "data", "loss", "def"]
    total = 0
    for i in range(small):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(60)) + "\n"
        p = root / "src" / f"pkg{i % 20}" / f"mod{i}.py"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        total += len(text)
    for i in range(big):
        (root / "weights").mkdir(exist_ok=True)
        (root / "weights" / f"w{i}.bin").write_bytes(os.urandom(big_mb << 20))
        total += big_mb << 20
    return total


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def session_running(listener: int, needle: str) -> int | None:
    """A child of the listener (an sshd session) with a process running needle below it."""
    for child in procs.descendants(listener):
        try:
            if int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1]) != listener:
                continue
        except (OSError, ValueError, IndexError):
            continue
        for p in procs.descendants(child):
            try:
                if needle in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    return child
            except OSError:
                pass
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="20,100,0", help="Mbit/s, comma-separated (0: unshaped)")
    ap.add_argument("--small", type=int, default=1500, help="small text files (~3 KB each)")
    ap.add_argument("--big", type=int, default=3, help="big random files")
    ap.add_argument("--big-mb", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/link.py needs root (ip netns, tc)")

    work = Path(tempfile.mkdtemp(prefix="trainbox-link-"))
    os.environ["TRAINBOX_HOME"] = str(work / "home")
    user = getpass.getuser()
    private, public = sshd.new_private_key()
    key = work / "key"
    paths.write_private(key, private)
    link = Link()
    pid, started = None, ""
    try:
        pid, started, host_key = start_box_sshd(link, work / "sshd", public)
        hostkeys.pin(BOX_IP, PORT, [host_key])
        ssh = " ".join(
            ["ssh", "-i", str(key), "-p", str(PORT), "-o", f"UserKnownHostsFile={paths.known_hosts()}"]
            + ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        )
        src = work / "project"
        total = make_project(src, args.small, args.big, args.big_mb)
        box = work / "box"
        conn = connect(Target(BOX_IP, PORT, user, str(key), str(box)), timeout=20)
        print(f"project: {args.small} small files + {args.big} x {args.big_mb} MB random = {total / 1e6:.1f} MB")
        for rate in (int(r) for r in args.rates.split(",")):
            if rate:
                link.shape(rate)
            else:
                link.unshape()

            def push_with(how: str):
                def push(tag: str) -> None:
                    sync.push(conn, src, str(box / tag), compress=how)

                push.__name__ = f"trainbox-{how}"
                return push

            def tar_ssh(tag: str) -> None:
                subprocess.run(
                    f"tar -C {src} -cf - . | {ssh} {user}@{BOX_IP} "
                    f"'mkdir -p {box}/{tag} && tar -C {box}/{tag} -x --no-same-owner --no-same-permissions -f -'",
                    shell=True,
                    check=True,
                )

            def rsync(tag: str) -> None:
                subprocess.run(["rsync", "-a", "-e", ssh, f"{src}/", f"{user}@{BOX_IP}:{box}/{tag}/"], check=True)

            contenders = [push_with(how) for how in HOWS] + [tar_ssh, rsync]
            runs: dict = {f.__name__: [] for f in contenders}
            n = len(contenders)
            for i in range(args.repeat):  # each contender once per round, the order rotated; medians compared
                for f in contenders[i % n :] + contenders[: i % n]:
                    runs[f.__name__].append(timed(lambda f=f, rate=rate: f(f"{f.__name__}-{rate}")))
                    shutil.rmtree(box / f"{f.__name__}-{rate}", ignore_errors=True)
            t = {name: statistics.median(times) for name, times in runs.items()}
            link_name = f"{rate} Mbit/s" if rate else "unshaped"
            print(f"{link_name} (medians of {args.repeat}): tar|ssh {t['tar_ssh']:6.2f}s  rsync -a {t['rsync']:6.2f}s")
            for how in HOWS:
                mine = t[f"trainbox-{how}"]
                moved = total * 8 / mine / 1e6
                share = f"  moved {moved:6.1f} Mbit/s of files = {moved / rate:.2f} of the link" if rate else ""
                print(
                    f"  trainbox, compress={how:<4} {mine:6.2f}s  vs tar|ssh {mine / t['tar_ssh']:.3f}  "
                    f"vs rsync {mine / t['rsync']:.3f}  vs none {mine / t['trainbox-none']:.3f}{share}"
                )
            for name, times in runs.items():
                print(f"     {name} runs (s): {' '.join(f'{x:.2f}' for x in times)}", file=sys.stderr)

        # A push cut at ~60 % (its sshd session killed), then run again.
        dest = box / "resumed"

        class CutAt60:
            sent = 0
            total = 0

            def __call__(self, n: int):
                self.total = n
                return self

            def update(self, n: int) -> None:
                self.sent += n
                if self.sent >= 0.6 * self.total > 0 and self.total:
                    self.total = 0  # once
                    session = session_running(pid, "tar -x")
                    if session and procs.recorded_alive(pid, started):
                        os.kill(session, signal.SIGKILL)

            def close(self) -> None:
                pass

        try:
            sync.push(conn, src, str(dest), CutAt60())
            print("the cut push was not cut (it ended first)")
        except LinkDropped:
            pass
        missing = sum(
            p.stat().st_size
            for p in src.rglob("*")
            if p.is_file()
            and not (
                (dest / p.relative_to(src)).is_file() and (dest / p.relative_to(src)).stat().st_size == p.stat().st_size
            )
        )
        plan = sync.push(conn, src, str(dest))
        print(
            f"resumed push (compress=auto): sent {plan.sent_bytes / 1e6:.2f} MB ({plan.tar_bytes / 1e6:.2f} MB of tar "
            f"before compression) for {missing / 1e6:.2f} MB missing of {total / 1e6:.2f} MB "
            f"= {plan.sent_bytes / max(missing, 1):.3f}x the remainder ({plan.tar_bytes / max(missing, 1):.3f}x uncompressed)"
        )
        conn.close()
    finally:
        if pid is not None and procs.recorded_alive(pid, started):
            procs.terminate(pid)
        link.close()
        print(f"namespace and veth removed: {link.gone()}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
