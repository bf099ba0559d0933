"""Issue 27: the environment's install on the box (the bootstrap streams the
installer's lines, one per package) is ONE bar and a one-line summary, and
the installer's tail once on a failure. Driven by a real child process that
prints uv's and pip's lines through the bootstrap's own `progress` filter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from remote import setup

TEMPLATE = (setup.__file__.rsplit("/remote/", 1)[0]) + "/templates/bootstrap.sh.j2"
N = 132


def progress_filter() -> str:
    """The bootstrap's own `progress` shell function, as the template has it."""
    (line,) = [l for l in Path(TEMPLATE).read_text().splitlines(keepends=True) if l.startswith("progress() {")]
    return line


def installer(kind: str, fail: bool = False) -> str:
    if kind == "uv":
        body = f"""
print("Resolved {N} packages in 1.20s", flush=True)
print("Prepared {N} packages in 9.1s", flush=True)
print("Installed {N} packages in 310ms", flush=True)
for i in range({N}):
    print(f" + pkg{{i}}==1.{{i}}", flush=True)
"""
    else:
        body = f"""
for i in range({N}):
    print(f"Collecting pkg{{i}}==1.{{i}}", flush=True)
    print(f"  Downloading pkg{{i}}-1.{{i}}-py3-none-any.whl (12 kB)", flush=True)
    if {fail!r} and i == 40:
        print("ERROR: Could not find a version that satisfies the requirement pkg40==1.40", flush=True)
        raise SystemExit(1)
print("Installing collected packages: " + ", ".join(f"pkg{{i}}" for i in range({N})), flush=True)
print("Successfully installed " + " ".join(f"pkg{{i}}-1.{{i}}" for i in range({N})), flush=True)
"""
    return body


def run_install(tmp_path, kind: str, fail: bool = False) -> tuple[list[str], bool]:
    script = tmp_path / "installer.py"
    script.write_text(installer(kind, fail))
    bash = (
        f"{progress_filter()}\necho 'trainbox-setup: installer: {kind}; installing tensorflow keras'\n"
        f"{sys.executable} {script} 2>&1 | progress; exit ${{PIPESTATUS[0]}}"
    )
    said: list[str] = []
    shown = setup.InstallProgress(said.append)
    proc = subprocess.Popen(["bash", "-c", bash], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        shown.line(line.rstrip("\n"))
    ok = proc.wait() == 0
    shown.done(ok, "~/trainbox/setup.log")
    return said, ok


def test_uv_install_is_a_bar_and_one_summary(tmp_path):
    said, ok = run_install(tmp_path, "uv")
    assert ok and said[0] == "trainbox-setup: installer: uv; installing tensorflow keras"
    assert said[-1] == f"environment: {N} packages in 0 s" or re.fullmatch(
        rf"environment: {N} packages in \d+ s", said[-1]
    )
    assert len(said) <= 14, said  # a line per tenth at most, never per package
    assert not any("pkg7==" in l for l in said)


def test_pip_install_is_a_bar_and_one_summary(tmp_path):
    said, ok = run_install(tmp_path, "pip")
    assert ok and re.fullmatch(rf"environment: {N} packages in \d+ s", said[-1]), said
    assert len(said) <= 6, said
    assert not any("Collecting" in l for l in said)


def test_a_failed_install_shows_its_tail_once(tmp_path):
    said, ok = run_install(tmp_path, "pip", fail=True)
    assert not ok
    (tail,) = [l for l in said if "the install failed" in l]
    assert "Could not find a version that satisfies the requirement pkg40" in tail
    assert "~/trainbox/setup.log" in tail
    assert sum(l.count("Could not find a version") for l in said) == 1
