"""Progress of long loops on stderr: a live rich bar on a terminal, plain lines in a log, or nothing.

A redrawn bar shows nothing useful in a file (`bicross train ... > run.log 2>&1` would stay empty for an
hour), so where stderr is not a terminal the same progress is printed as one line per tenth of the work,
with the elapsed time and an estimate of the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = ["LineProgress", "ProgressTask", "progress_task"]


class ProgressTask(Protocol):
    """Advance a progress display by some amount of work."""

    def __call__(self, amount: int) -> None:
        """Record `amount` more units of work done."""
        ...


class LineProgress:
    """Print `description: done/total (pct%), elapsed, ETA [detail]` each time another tenth of the work is done.

    >>> ticks = iter(range(0, 1000, 10))  # the clock is read at the start and at each printed line
    >>> lines = []
    >>> bar = LineProgress("encoding", 4, lines.append, clock=lambda: float(next(ticks)), steps=2)
    >>> for _ in range(4): bar.advance(1)
    >>> lines
    ['encoding: 2/4 (50%), 0:00:10 elapsed, ETA 0:00:10', 'encoding: 4/4 (100%), 0:00:20 elapsed, ETA 0:00:00']
    """

    def __init__(self, description: str, total: int, write: Callable[[str], Any], done: int = 0,
                 clock: Callable[[], float] = time.monotonic, steps: int = 10) -> None:
        self.description, self.total, self.write, self.clock, self.steps = description, total, write, clock, steps
        self.done = self.start_done = done
        self.started = clock()
        self.printed = self._tenth(done)

    def advance(self, amount: int, detail: str = "") -> None:
        """Count `amount` more done; print a line if that crossed into another tenth."""
        self.done += amount
        tenth = self._tenth(self.done)
        if tenth <= self.printed:
            return
        self.printed = tenth
        elapsed = self.clock() - self.started
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        line = f"{self.description}: {self.done}/{self.total} ({share:.0%}), {_clock(elapsed)} elapsed, " \
               f"ETA {_clock(remaining)}"
        self.write(line + (f", {detail}" if detail else ""))

    def _tenth(self, done: int) -> int:
        return self.steps if not self.total else min(self.steps, done * self.steps // self.total)


def _clock(seconds: float) -> str:
    whole = int(round(max(seconds, 0.0)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def stderr_console():
    """The console progress goes to (stderr), and whether it can redraw a live bar."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def progress_task(description: str, total: int, enabled: bool) -> Iterator[ProgressTask]:
    """Show a transient bar on stderr while the block runs (plain lines when stderr is a file; a no-op when
    disabled)."""
    if not enabled:
        yield lambda amount: None
        return
    console = stderr_console()
    if not console.is_terminal:
        lines = LineProgress(description, total, lambda line: console.print(line, markup=False, highlight=False))
        yield lines.advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda amount: progress.advance(task, amount)
