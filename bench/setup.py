"""Bench: the box's environment install (issue 7), against an sshd on 127.0.0.1.

Each contender runs as its own fresh login user (cold home, cold pip/uv
caches) over SSH, installing the same pins from the real package index:
  ours   `remote setup` (the bootstrap: fetch uv, uv venv, uv pip install)
  pip    python3 -m venv && pip install
  uv     uv venv && uv pip install (uv already on the box: its install is not timed)
  rerun  `remote setup` again on ours' ready box
uv and ours run --rounds times (default 3) in alternating order, each as a
fresh user; their medians are compared (the machine is shared: one run of
each is noise). pip runs once, for reference.
Goals: ours <= 1.2x uv; rerun <= 2 s. Run as root (it creates users):
    .venv/bin/python bench/setup.py [--packages small] [--rounds N]
This MAY download from the package index; tests never do.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import hostkeys, paths  # noqa: E402
from remote import setup  # noqa: E402
from remote.connection import connect  # noqa: E402
from remote.target import Target  # noqa: E402
from sandbox import sshd  # noqa: E402


def new_user() -> str:
    name = f"tbxb{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return name


def remove_user(name: str) -> None:
    subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def timed_ssh(target: Target, command: str) -> float:
    conn = connect(target, timeout=10)
    try:
        t = time.monotonic()
        r = conn.run(command, hide=True, warn=True, in_stream=False)
        took = time.monotonic() - t
    finally:
        conn.close()
    if r.exited != 0:
        raise SystemExit(f"failed ({r.exited}): {command}\n{(r.stdout + r.stderr)[-2000:]}")
    return took


def timed_cli(user: str, port: int, key: Path, env: dict) -> tuple[float, str]:
    t = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "remote", "setup", "--host", f"{user}@127.0.0.1:{port}", "--identity", str(key)],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"remote setup failed: {p.stderr[-2000:]}")
    return took, p.stderr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--packages",
        choices=["full", "small"],
        default="full",
        help="full: the pins without jupyterlab; small: keras + pillow + scipy only (a slow index)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of uv and ours, in alternating order, each a fresh user: the medians are compared (default 3)",
    )
    ap.add_argument(
        "--only", choices=["ours"], help="time only ours (fresh and re-run): a quick look at its phases, no ratios"
    )
    args = ap.parse_args()
    os.environ["TRAINBOX_HOME"] = tempfile.mkdtemp(prefix="trainbox-bench-home-")
    opts = setup.SetupOptions(jupyter=False)
    reqs = [f"tensorflow-cpu=={setup.TF_VERSION}", *opts.requirements]
    if args.packages == "small":
        reqs = [f"keras=={setup.KERAS_VERSION}", "pillow>=10", "scipy>=1.11"]
    d = Path(tempfile.mkdtemp(prefix="trainbox-bench-sshd-"))
    d.chmod(0o755)
    private, public = sshd.new_private_key()
    key = d / "client_key"
    paths.write_private(key, private)
    server = sshd.start(d / "server", [public], users=["tbxb*"])
    (d / "server").chmod(0o755)
    (d / "server" / "authorized_keys").chmod(0o644)
    hostkeys.pin("127.0.0.1", server.port, [server.host_key])
    users: list[str] = []
    times: dict[str, list[float]] = {}
    q = " ".join(shlex.quote(r) for r in reqs)
    if args.packages == "small":
        print(
            "note: --packages small is not what `remote setup` installs; ours is timed on the full pins",
            file=sys.stderr,
        )

    def ours() -> None:
        nonlocal phases
        u = new_user()
        users.append(u)
        times.setdefault(OURS, []).append(timed_cli(u, server.port, key, {"TRAINBOX_JUPYTER": "0"})[0])
        phases = phase_lines(u)
        splits.append(split(phases, times[OURS][-1]))
        took, err = timed_cli(u, server.port, key, {"TRAINBOX_JUPYTER": "0"})
        assert "nothing to install" in err, err
        times.setdefault(RERUN, []).append(took)

    def uv() -> None:
        times.setdefault(UV, []).append(time_uv(server.port, key, q, users))

    phases: list[str] = []
    splits: list[tuple[float, float, float]] = []
    try:
        if args.only != "ours":
            times[PIP] = [time_pip(server.port, key, q, users)]
        for i in range(1 if args.only else args.rounds):
            for contender in [ours] if args.only else [uv, ours] if i % 2 == 0 else [ours, uv]:
                contender()
            while len(users) > 2:  # each user's env is a few GB
                remove_user(users.pop(0))
    finally:
        for u in users:
            remove_user(u)
        sshd.stop(d / "server")
    print_table(reqs, times, phases, splits)
    return 0


PIP, UV = "pip: python3 -m venv && pip install", "uv: uv venv && uv pip install"
OURS, RERUN = "ours: remote setup (fresh)", "ours: remote setup (re-run, ready)"


def fresh_target(port: int, key: Path, users: list) -> Target:
    u = new_user()
    users.append(u)
    return Target("127.0.0.1", port, u, str(key), "trainbox")


def time_pip(port: int, key: Path, q: str, users: list) -> float:
    return timed_ssh(fresh_target(port, key, users), f"python3 -m venv e && e/bin/pip install -q {q}")


def time_uv(port: int, key: Path, q: str, users: list) -> float:
    """uv's install, with uv already on the box (fetched first, untimed)."""
    t = fresh_target(port, key, users)
    timed_ssh(
        t,
        "python3 -m pip download -q --no-deps --only-binary :all: -d dl uv && cd dl && python3 -m zipfile -e uv-*.whl x "
        "&& install -m 0755 x/uv-*.data/scripts/uv ~/uv && cd && rm -rf dl",
    )
    return timed_ssh(
        t,
        f"export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt; ~/uv venv -q e && ~/uv pip install -q --python e/bin/python {q}",
    )


def phase_lines(user: str) -> list[str]:
    """The bootstrap log's timestamped lines: where the fresh run's time went."""
    log = Path(f"~{user}").expanduser() / "trainbox" / "setup.log"
    return [
        line.split(" ", 2)[2] for line in log.read_text().splitlines() if " +" in line and "trainbox-setup:" in line
    ]


def split(phases: list[str], total: float) -> tuple[float, float, float]:
    """ours' run in three: outside the bootstrap (CLI, SSH), inside before the install (checks, uv, venv), the install."""

    def at(text: str) -> float:
        return next(float(line.split("s ", 1)[0].lstrip("+")) for line in phases if text in line)

    end, start = at("phase: packages installed"), at("installer: ")
    return total - at("ready: "), start, end - start


def print_table(
    reqs: list[str], times: dict[str, list[float]], phases: list[str], splits: list[tuple[float, float, float]]
) -> None:
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (uptime's 1, 5, 15 min)")
    print(f"packages: {' '.join(reqs)}")
    print("ours, fresh, inside the bootstrap (its last round; time since it started):")
    for line in phases:
        print(f"  {line}")
    median = {name: statistics.median(ts) for name, ts in times.items()}
    inside = float(phases[-1].split("s ", 1)[0].lstrip("+")) if phases else 0.0
    print(f"  outside the bootstrap (CLI start, SSH connect, sending the script): {times[OURS][-1] - inside:.1f} s")
    print(
        "ours, each run: outside the bootstrap / inside, before the install / the install itself (s): "
        + ", ".join(f"{o:.1f}/{b:.1f}/{i:.1f}" for o, b, i in splits)
    )
    base = median.get(UV)
    print(f"{'contender':<40} {'median s':>8} {'x uv':>6}  runs (s)")
    for name, ts in times.items():
        ratio = f"{median[name] / base:>6.2f}" if base else f"{'-':>6}"
        print(f"{name:<40} {median[name]:>8.1f} {ratio}  {' '.join(f'{t:.1f}' for t in ts)}")
    print(
        f"goals: fresh <= 1.2x uv: {('MET' if median[OURS] <= 1.2 * base else 'MISSED') if base else 'not measured'}; "
        f"re-run <= 2 s: {'MET' if median[RERUN] <= 2 else 'MISSED'}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
