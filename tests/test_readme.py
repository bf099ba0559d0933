"""The README is code: its first command runs as written in a fresh copy of the
repo, its links lead somewhere, and no tracked file holds a merge conflict."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from testkit import REPO, run_cli

README = REPO / "README.md"

_CONFLICT = re.compile(r"^(<<<<<<< |>>>>>>> |=======$)", re.M)


def conflict_markers(text: str) -> list[str]:
    """The lines of text that git writes around a conflict it left unresolved
    (a lone ``=======`` counts only beside ``<<<<<<<``: it is also Markdown)."""
    found = [m.group(0) for m in _CONFLICT.finditer(text)]
    if not any(f.startswith("<<<<<<<") for f in found):
        found = [f for f in found if f != "======="]
    return found


def tracked_files() -> list[Path]:
    """What a fresh clone holds: tracked files, and files git would add (not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [REPO / p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def readme_commands() -> list[str]:
    """The README's fenced bash blocks, in order: the first sets up and runs the
    sandbox end to end, the second runs the tests."""
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)]


def test_the_marker_scan_finds_a_conflict_git_left():
    left = "text\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> main\nmore\n"
    assert conflict_markers(left) == ["<<<<<<< ", "=======", ">>>>>>> "]
    assert conflict_markers("Title\n=======\n\nbody\n") == []  # a Markdown heading


def test_no_tracked_file_holds_a_merge_conflict():
    hits = []
    for path in tracked_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # a binary file: git marks no conflict inside one
        if conflict_markers(text):
            hits.append(str(path.relative_to(REPO)))
    assert hits == [], f"unresolved merge conflicts in {hits}"


def test_every_local_link_in_the_readme_and_docs_leads_to_a_file():
    broken = []
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_readme_is_a_quickstart():
    text = README.read_text()
    assert len(text.encode()) <= 12_500, f"README.md is {len(text.encode())} bytes: move reference to docs/"
    first, tests = readme_commands()[:2]
    assert "python -m provision up --sandbox" in first and "python -m provision down" in first
    assert "pytest" in tests
    # Neither command may need sudo: a root shell (a container, CI) has none.
    assert not re.search(r"(^|[;&|]\s*)sudo\b", first) and not re.search(r"(^|[;&|]\s*)sudo\b", tests)


def test_ci_runs_the_readmes_test_command():
    tests = readme_commands()[1]
    ci = (REPO / ".ci" / "run").read_text()
    for part in (p.strip() for p in tests.split("&&")):
        assert part in ci, f"the README's test command has `{part}`, which .ci/run does not run"


def _fresh_copy(dst: Path) -> Path:
    """The repo as a fresh clone has it (no .venv, no runs/), uncommitted edits included."""
    for path in tracked_files():
        target = dst / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dst


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the README's commands are for Debian/Ubuntu")
@pytest.mark.timeout(1500)
def test_the_readmes_first_command_runs_verbatim_in_a_fresh_copy(tmp_path):
    clone = _fresh_copy(tmp_path / "trainbox")
    command = readme_commands()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST", "AWS_"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env["TRAINBOX_HOME"] = os.environ["TRAINBOX_HOME"]  # the test's own, not the user's
    p = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"`{shlex.quote(command)}` exited {p.returncode}:\n{out[-4000:]}"
    lines = out.splitlines()
    assert len(lines) <= 200, f"the first command printed {len(lines)} lines:\n{out[:6000]}"
    assert "\x1b" not in out and "[0m" not in out  # no terminal debris in a log
    assert re.search(r"box 'default' is up", out)
    assert re.search(r"box 'default' is gone \(\d+ resources deleted, each verified\)", out)
    runs = list((clone / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.keras").is_file() and (runs[0] / "report.html").is_file()
    doubled = [line for line, n in Counter(lines).items() if n > 1 and line.strip()]
    assert doubled == [], f"lines printed twice: {doubled}"
    # Nothing is left billing in the sandbox, and `ls` says so in plain words.
    # (--sandbox: with no box left, a bare `ls` would ask AWS itself, and tests reach 127.0.0.1 only)
    left = run_cli("provision", "ls", "--sandbox", cwd=clone)
    assert left.code == 0, left.err
    assert "nothing" in left.out and "left" in left.out
