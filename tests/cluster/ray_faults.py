"""Workers and faults for the cluster tests, pickled by value so Ray workers need not import this file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bicross.errors import InvalidInput


def die_once(marker: Path, shard: int) -> None:
    """Kill this worker's process the first time any worker gets here; the marker file says it happened."""
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # atomic: exactly one worker dies
    except FileExistsError:
        return
    os.close(handle)
    os._exit(1)


def die_always(shard: int) -> None:
    """Kill this worker's process on every shard."""
    os._exit(1)


class _Squares:
    identity = "squares"

    def __call__(self, shard: list[int]) -> list[int]:
        return [value * value for value in shard]


@dataclass(frozen=True)
class Squares:
    """A worker factory: each worker squares the numbers of its shard."""

    def __call__(self) -> _Squares:
        return _Squares()


class _Refuses:
    identity = "refuses"

    def __call__(self, shard: list[int]) -> list[int]:
        raise InvalidInput(f"shard starting at {shard[0]} is refused")


@dataclass(frozen=True)
class Refuses:
    """A worker factory whose worker raises on every shard (a bug or bad input: not retried)."""

    def __call__(self) -> _Refuses:
        return _Refuses()
