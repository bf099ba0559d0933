"""What a project pushes: git itself is the oracle for the ignore rules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from remote import sync
from remote.ignore import ProjectFilter

FILES = [
    "train.py",
    "README.md",
    "keep.log",
    "debug.log",
    "notes/todo.txt",
    "src/pkg/__init__.py",
    "src/pkg/model.py",
    "src/pkg/cache.bin",
    "src/pkg/keep.bin",
    "src/build/out.o",
    "src/build/important.txt",
    "build/x.o",
    "docs/build/page.html",
    "data/raw/a.csv",
    "data/raw/keep/b.csv",
    "data/README",
    "deep/a/b/c/secret.key",
    "deep/a/b/c/public.key",
    "anchored/top.txt",
    "sub/anchored/top.txt",
    "sub/tmp/y",
    "tmp/y",
    "space name/file with space.txt",
    "weights/model.h5",
    "weights/small/keep.h5",
]
IGNORES = {
    ".gitignore": "*.log\n!keep.log\n/build/\n/anchored/\ntmp/\ndata/raw/*\n!data/raw/keep/\n*.h5\n",
    "src/.gitignore": "*.bin\n!keep.bin\nbuild/\n",
    "src/build/.gitignore": "!important.txt\n",  # no effect: its directory is excluded above
    "deep/a/.gitignore": "**/c/*.key\n!b/c/public.key\n",
    "weights/.gitignore": "!small/*.h5\n",
}


def make_project(root: Path) -> None:
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    for rel, text in IGNORES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null", "HOME": str(root)}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout


def test_the_pushed_set_is_what_git_lists(tmp_path):
    root = tmp_path / "project"
    make_project(root)
    git(root, "init", "-q")
    git(
        root, "add", "train.py", "src/pkg/model.py", ".gitignore", "deep/a/.gitignore"
    )  # some tracked, the rest untracked
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("notes/\n")
    expected = set(git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")) - {""}
    assert "keep.log" in expected and "data/raw/keep/b.csv" in expected and "src/build/important.txt" not in expected

    pushed = set(sync.scan_local(root, ProjectFilter(root).skip))
    assert pushed == expected


def test_trainbox_never_pushes_git_venvs_caches_or_the_local_runs(tmp_path):
    root = tmp_path / "project"
    make_project(root)
    git(root, "init", "-q")
    for rel in (
        ".venv/pyvenv.cfg",
        ".venv/lib/site.py",
        "env2/pyvenv.cfg",
        "src/__pycache__/m.cpython-312.pyc",
        "runs/20260101-000000-abcd/model.keras",
        "scratch/big.bin",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / ".trainboxignore").write_text("scratch/\n!debug.log\n")
    pushed = set(sync.scan_local(root, ProjectFilter(root, exclude=(root / "runs",)).skip))
    assert not any(
        p.startswith((".git/", ".venv/", "env2/", "runs/", "scratch/")) or "__pycache__" in p for p in pushed
    )
    assert "train.py" in pushed and "debug.log" in pushed, ".trainboxignore's lines win over .gitignore's"
