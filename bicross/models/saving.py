"""Write a model folder atomically: fill a staging folder, then swap it in by renames.

Shared by the training room's savers and the late-interaction models (the core never imports training).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["atomic_folder"]


class atomic_folder:  # noqa: N801 - used as a context manager, named like one
    """`with atomic_folder(target) as staging:` fill `staging`; on success it replaces `target` by renames.

    On an exception `target` is untouched and the staging folder removed; a kill leaves it under a
    `.partial` name that the next save clears.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.staging = self.target.with_name(f".{self.target.name}.partial")

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        return self.staging

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        previous = self.target.with_name(f".{self.target.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        if self.target.exists():
            os.replace(self.target, previous)  # two renames: a folder cannot be replaced by one
        os.replace(self.staging, self.target)
        shutil.rmtree(previous, ignore_errors=True)
