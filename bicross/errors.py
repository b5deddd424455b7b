"""One exception tree for everything bicross raises on purpose.

Every message says what went wrong and how to fix it; callers catch `BicrossError`.
"""

from __future__ import annotations

__all__ = [
    "BicrossError",
    "IndexCorrupt",
    "IndexLocked",
    "IndexMismatch",
    "InvalidInput",
    "MissingExtra",
    "ModelNotFound",
]


class BicrossError(Exception):
    """Base class of every error bicross raises deliberately."""


class ModelNotFound(BicrossError):
    """A model name or path could not be resolved to local files."""


class IndexCorrupt(BicrossError):
    """A collection folder is unreadable, incomplete or fails its checksums."""


class IndexMismatch(BicrossError):
    """A collection was built with another model, dimension or similarity than the one used now."""


class IndexLocked(BicrossError):
    """Another process holds the write lock of a collection."""


class InvalidInput(BicrossError, ValueError):
    """User input (text, file, parameter) is malformed or out of range."""


class MissingExtra(BicrossError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package!r} is not installed; install it with: pip install \"bicross[{extra}]\""
        )
