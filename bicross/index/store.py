"""The collection folder on disk: generation-numbered files, checksums, a manifest written last, a lock.

A commit writes every data file under a new generation name, fsyncs it, then replaces `manifest.json`
atomically. A crash at any point leaves the previous manifest, which names only complete files, so the
folder always opens at its last committed state. Files of older generations are removed after a commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bicross.errors import IndexCorrupt, IndexLocked

__all__ = ["FORMAT_VERSION", "MANIFEST", "commit", "read_manifest", "verify_files", "write_lock"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_FORMAT_NAME = "bicross-collection"
_STAGING_PREFIX = ".bicross-staging-"
# Only names bicross itself writes are ever deleted: a user's `.git` or `backup.gz` in the folder is kept.
_OWN_FILE = re.compile(r"^[^.]+\.g\d{6}(\..+)?$|^" + re.escape(_STAGING_PREFIX) + r"|^\.manifest\.json\.tmp-\d+$")

Writer = Callable[[Path], None]


@contextlib.contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's exclusive write lock; a second writer gets IndexLocked at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLocked(f"{folder} is being written by another process; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def commit(folder: Path, writers: dict[str, Writer], manifest: dict[str, Any]) -> dict[str, Any]:
    """Write each file with its writer under a new generation, then the manifest; return the manifest.

    `writers` maps a role like "embeddings.npy" to a function writing that file (or folder) at a path.
    Call inside `write_lock(folder)`.
    """
    previous = _read_generation(folder)
    generation = previous + 1
    files: dict[str, dict[str, Any]] = {}
    for role, write in writers.items():
        stem, dot, suffix = role.partition(".")
        final = folder / f"{stem}.g{generation:06d}{dot}{suffix}"
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{stem}-", dir=folder)) / final.name
        write(staging)
        _fsync_tree(staging)
        _remove(final)
        os.replace(staging, final)
        staging.parent.rmdir()
        files[role] = {"name": final.name, **_checksum(final)}
    full = {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest,
            "generation": generation, "files": files}
    _atomic_write_text(folder / MANIFEST, json.dumps(full, indent=2, sort_keys=True) + "\n")
    _remove_stale(folder, {f["name"] for f in files.values()})
    return full


def read_manifest(folder: Path) -> dict[str, Any]:
    """Parse and sanity-check a collection's manifest."""
    file = folder / MANIFEST
    if not folder.is_dir():
        raise IndexCorrupt(f"no index at {folder}: build one with `bicross index CORPUS --index {folder}`")
    if not file.is_file():
        raise IndexCorrupt(f"{folder} has no {MANIFEST}: it is not a bicross index, or its first build was "
                           "interrupted; rebuild it with `bicross index`")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexCorrupt(f"{file} is not valid JSON ({error}); rebuild the index") from None
    if manifest.get("format") != _FORMAT_NAME:
        raise IndexCorrupt(f"{file} is not a bicross collection manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorrupt(f"{folder} has format version {manifest.get('format_version')}, this bicross reads "
                           f"{FORMAT_VERSION}; rebuild it or use a matching bicross version")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any], checksums: bool = True) -> None:
    """Check every file the manifest names exists with its recorded size (and sha256)."""
    for role, expected in manifest["files"].items():
        path = folder / expected["name"]
        if not path.exists():
            raise IndexCorrupt(f"{folder}: {role} file {expected['name']} is missing; rebuild the index")
        actual = _checksum(path, with_hash=checksums)
        if actual["bytes"] != expected["bytes"]:
            raise IndexCorrupt(f"{folder}: {expected['name']} has {actual['bytes']} bytes, the manifest says "
                               f"{expected['bytes']} (truncated or overwritten); rebuild the index")
        if checksums and actual["sha256"] != expected["sha256"]:
            raise IndexCorrupt(f"{folder}: {expected['name']} fails its checksum (corrupted); rebuild the index")


def _read_generation(folder: Path) -> int:
    try:
        return int(json.loads((folder / MANIFEST).read_text()).get("generation", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _checksum(path: Path, with_hash: bool = True) -> dict[str, Any]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    for file in files:
        size += file.stat().st_size
        if with_hash:
            digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return {"bytes": size, "sha256": digest.hexdigest() if with_hash else None}


def _fsync_tree(path: Path) -> None:
    for file in ([p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]):
        with file.open("rb") as handle:
            os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _atomic_write_text(target: Path, text: str) -> None:
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    _fsync_dir(target.parent)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete files of older generations and staging leftovers of interrupted commits."""
    for entry in folder.iterdir():
        if entry.name in keep or entry.name in {MANIFEST, ".lock"}:
            continue
        if _OWN_FILE.match(entry.name):
            _remove(entry)
