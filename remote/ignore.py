"""Which files of a project are pushed: git's ignore rules, exactly.

A project's pushed set is what ``git ls-files --cached --others
--exclude-standard`` would list for a clean checkout (tests/remote/test_ignore.py
holds it to git itself), minus what trainbox never sends:

- ``.gitignore`` files at every level, plus an optional ``.trainboxignore``
  beside any of them (its lines come after the ``.gitignore``'s, so they win)
  and the repository's ``.git/info/exclude``. The rules are git's (negations,
  anchoring, ``**``, directory-only patterns), from the ``pathspec`` library's
  GitIgnoreSpec; a deeper file overrides a shallower one, the last matching
  line of a file decides, and an excluded directory is not entered (so nothing
  under it can be re-included, as in git).
- always: ``.git``, virtual environments (a directory holding ``pyvenv.cfg``),
  ``__pycache__`` and the given local paths (the laptop's ``runs/``).

Not covered: a file that is tracked although an ignore rule matches it (``git
add -f``) is not pushed, since trainbox reads no git index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

IGNORE_FILES = (".gitignore", ".trainboxignore")
ALWAYS = {".git", "__pycache__"}


class ProjectFilter:
    """``skip(rel, is_dir)``: whether the path ``rel`` (posix, relative to root) stays home."""

    def __init__(self, root: Path, exclude: tuple[Path, ...] = ()):
        self.root = Path(root)
        real = os.path.realpath(self.root)
        self._exclude = set()
        for p in exclude:
            rp = os.path.realpath(p)
            if rp != real and os.path.commonpath([real, rp]) == real:
                self._exclude.add(Path(os.path.relpath(rp, real)).as_posix())
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, rel_dir: str) -> pathspec.GitIgnoreSpec | None:
        if rel_dir not in self._specs:
            d = self.root / rel_dir if rel_dir else self.root
            lines: list[str] = []
            if not rel_dir:
                lines += _read(d / ".git" / "info" / "exclude")
            for name in IGNORE_FILES:
                lines += _read(d / name)
            self._specs[rel_dir] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[rel_dir]

    def skip(self, rel: str, is_dir: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if name in ALWAYS or rel in self._exclude:
            return True
        if is_dir and (self.root / rel / "pyvenv.cfg").is_file():
            return True
        # The deepest ignore file with a matching line decides.
        parts = rel.split("/")
        for depth in range(len(parts) - 1, -1, -1):
            spec = self._spec("/".join(parts[:depth]))
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            verdict = spec.check_file(sub).include
            if verdict is not None:
                return verdict
        return False


def _read(path: Path) -> list[str]:
    try:
        return path.read_text(errors="surrogateescape").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
