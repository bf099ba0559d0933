"""One progress bar for a long, quiet step (the container box's root file
system, the environment's install on the box), not a line per package.

On a terminal it is a tqdm bar on stderr; elsewhere (a log, CI, a pipe) it
says a line when the step starts, one at each tenth of a known total (none
when the total is unknown: then one per phase) and nothing else, so a build
of 140 packages is a handful of lines. The step's caller says the one-line
summary at the end, or the output's tail on a failure (``tail``).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO


class Bar:
    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "pkg",
        stream: TextIO | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.say = say or (lambda s: print(s, file=self.stream, flush=True))
        self.n = 0
        self.phase: str | None = None
        self.started = time.monotonic()
        self._tenth = 0
        self._tqdm = None
        isatty = getattr(self.stream, "isatty", None)
        if isatty and isatty():
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=what, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)

    def set_phase(self, phase: str) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        if self._tqdm is not None:
            self._tqdm.set_description(f"{self.what}: {phase}")
        elif not self.total:
            self.say(f"  {self.what}: {phase}" + (f" ({self.n} so far)" if self.n else ""))

    def set_total(self, total: int) -> None:
        self.total = total
        if self._tqdm is not None:
            self._tqdm.total = total
            self._tqdm.refresh()

    def advance(self, n: int = 1, item: str | None = None) -> None:
        self.n += n
        if self._tqdm is not None:
            if item:
                self._tqdm.set_postfix_str(item[:30], refresh=False)
            self._tqdm.update(n)
            return
        if self.total:
            tenth = min(10, self.n * 10 // self.total)
            if tenth > self._tenth:
                self._tenth = tenth
                self.say(f"  {self.what}: {tenth * 10}%" + (f" ({self.phase})" if self.phase else ""))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None


class Tail:
    """The last lines of a step's output, to show once if it fails."""

    def __init__(self, n: int = 15):
        self.lines: deque[str] = deque(maxlen=n)

    def add(self, line: str) -> None:
        self.lines.append(line.rstrip("\n"))

    def text(self, indent: str = "    ") -> str:
        return "\n".join(indent + l for l in self.lines)
