"""Issue 27: a long quiet step shows ONE bar, not a line per package (the
container box's root file system: debootstrap's ~800 per-package lines).
Driven by a real child process printing debootstrap's lines; on a stream that
is not a terminal the bar is a handful of lines."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from common.errors import TrainboxError
from sandbox import rootfs

N = 140


def fake_debootstrap(tmp_path: Path, fail: bool = False) -> list[str]:
    script = tmp_path / "debootstrap.py"
    script.write_text(f"""
import sys
print("I: Retrieving InRelease"); print("I: Retrieving Packages"); print("I: Validating Packages")
print("I: Resolving dependencies of required packages...")
print("I: Checking component main on http://deb.debian.org/debian...")
for step in ("Retrieving", "Validating", "Unpacking", "Configuring"):
    for i in range({N}):
        # debootstrap's own forms: "I: Retrieving adduser 3.134", "I: Unpacking adduser..."
        print(f"I: {{step}} pkg{{i}} 1.{{i}}-1" if step in ("Retrieving", "Validating") else f"I: {{step}} pkg{{i}}...", flush=True)
        if {fail!r} and step == "Unpacking" and i == 3:
            print("dpkg: error processing archive pkg3 (--unpack): disk full", flush=True)
            print("E: Couldn't install pkg3", flush=True)
            sys.exit(1)
print("I: Base system installed successfully.")
""")
    return [sys.executable, str(script)]


def test_a_build_with_a_known_total_says_a_line_per_tenth_not_per_package(tmp_path):
    said: list[str] = []
    code, packages, _tail, _took = rootfs.follow_build(
        fake_debootstrap(tmp_path), tmp_path / "x.log", "root file system", said.append, total=4 * N
    )
    assert code == 0 and len(packages) == N
    assert said == [
        f"  root file system: {p}%" + f" ({ph})"
        for p, ph in zip(range(10, 101, 10), (["downloading"] * 5 + ["unpacking"] * 2 + ["configuring"] * 3))
    ], said
    log = (tmp_path / "x.log").read_text()
    assert log.count("I: Retrieving pkg") == N, "the full output is in the log"


def test_a_first_build_with_no_total_says_one_line_per_phase(tmp_path):
    said: list[str] = []
    rootfs.follow_build(fake_debootstrap(tmp_path), tmp_path / "x.log", "root file system", said.append)
    assert [l.split(":")[1].split()[0] for l in said] == ["downloading", "unpacking", "configuring"]
    # ... and the next build's total is this one's count of per-package lines.
    assert rootfs.expected_steps(tmp_path) == 4 * N


def test_debootstrap_success_counts_packages_and_a_failure_shows_its_tail_once(tmp_path):
    said: list[str] = []
    assert rootfs.debootstrap(tmp_path / "root", said.append, tmp_path / "ok.log", argv=fake_debootstrap(tmp_path)) == N
    assert len(said) <= 4 and not any("pkg7 " in l for l in said), said
    said.clear()
    with pytest.raises(TrainboxError) as e:
        rootfs.debootstrap(
            tmp_path / "root", said.append, tmp_path / "bad.log", argv=fake_debootstrap(tmp_path, fail=True)
        )
    assert "E: Couldn't install pkg3" in str(e.value) and str(tmp_path / "bad.log") in e.value.fix
    (failure,) = [l for l in said if "failed" in l]
    assert "disk full" in failure and failure.count("I: Unpacking pkg3") == 1
    assert len(said) <= 6


def test_the_real_log_of_this_machines_last_build_counts_every_step(tmp_path):
    """debootstrap's real lines (the cached root's log, if this machine built one)."""
    logs = sorted(rootfs.cache_dir().glob("*.log"))
    if not logs:
        pytest.skip("this machine has built no root file system yet")
    text = logs[-1].read_text()
    steps = [rootfs.package_step(l) for l in text.splitlines()]
    counted = sum(1 for s in steps if s)
    lines = [l.split() for l in text.splitlines()]
    step_lines = [w for w in lines if len(w) >= 3 and w[0] == "I:" and w[1] in rootfs.STEPS]
    # All but the index's own (InRelease, Packages) and the stage headers ("Unpacking required packages...").
    assert counted == len([w for w in step_lines if w[2] not in ("InRelease", "Packages", "required", "base")])
    retrieved = {s[1] for s in steps if s and s[0] == "Retrieving"}
    r = rootfs.follow_build(["cat", str(logs[-1])], tmp_path / "replay.log", "root file system", lambda s: None)
    assert r[1] == retrieved and len(retrieved) > 100  # the summary's count: one per .deb
    assert {s[0] for s in steps if s} == set(rootfs.STEPS)


def test_on_a_terminal_it_is_one_tqdm_bar(tmp_path):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    said: list[str] = []
    rootfs.follow_build(
        fake_debootstrap(tmp_path), tmp_path / "x.log", "root file system", said.append, total=4 * N, stream=tty
    )
    assert said == [] and "root file system" in tty.getvalue() and "\r" in tty.getvalue()
    assert tty.getvalue().count("\n") <= 1, "one bar redrawn in place"
