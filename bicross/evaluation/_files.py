"""Line reading with file:line errors and atomic writing, shared by the TREC and BEIR readers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from bicross import textfiles
from bicross.errors import InvalidInput


def iter_lines(path: str | os.PathLike[str], what: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without line ending) for each non-blank line of `path`.

    `what` names the expected content ("TREC run file") for the error messages. A byte-order mark (UTF-8,
    or UTF-16/32 as Excel's "Unicode text" writes) is honoured, see `bicross.textfiles`.
    """
    for number, text in textfiles.iter_lines(path, what):
        if text.strip():
            yield number, text


def atomic_write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> None:
    """Write lines (each ending in a newline) so that `path` is either the old or the new file.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed over
    `path`; a crash never leaves a half-written file behind.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InvalidInput(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist; "
                           "create it first")
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX only)
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
