"""A rich progress bar for long loops, or nothing when it is turned off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["ProgressTask", "progress_task"]


class ProgressTask(Protocol):
    """Advance a progress display by some amount of work."""

    def __call__(self, amount: int) -> None:
        """Record `amount` more units of work done."""
        ...


@contextmanager
def progress_task(description: str, total: int, enabled: bool) -> Iterator[ProgressTask]:
    """Show a transient bar on stderr while the block runs (a no-op when disabled)."""
    if not enabled:
        yield lambda amount: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda amount: progress.advance(task, amount)
