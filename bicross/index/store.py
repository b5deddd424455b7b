"""The collection folder on disk: generation-numbered files, checksums, a manifest written last, a lock.

A commit writes every new data file under the next generation's name (`role.gNNNNNN.suffix`) in a staging
folder, fsyncs it, renames it into place, fsyncs the folder, and only then replaces `manifest.json`
atomically (write aside, fsync, rename). A process killed at any point leaves the previous manifest,
which names only complete files, so the folder always opens at its last committed state. Files are never
modified once named by a manifest: a later commit either carries them over unchanged (`carry`) or writes
new ones.

Readers: the files of the previous generation are kept until the next commit, so a reader that read the
previous manifest just before a commit can still load what it names; a reader overtaken by two commits
sees a missing file, re-reads the manifest and retries (see `Collection.open`).
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bicross.errors import IndexCorrupt, IndexLocked

__all__ = ["FORMAT_VERSION", "MANIFEST", "commit", "read_manifest", "verify_files", "write_lock"]

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_FORMAT_NAME = "bicross-collection"
_STAGING_PREFIX = ".bicross-staging-"
# Only names bicross itself writes are ever deleted: a user's `.git` or `backup.gz` in the folder is kept.
_OWN_FILE = re.compile(r"^[^.]+\.g\d{6}(\..+)?$|^" + re.escape(_STAGING_PREFIX) + r"|^\.manifest\.json\.tmp-\d+$")

Writer = Callable[[Path], None]

# Crash-test hook: called with the name of each step of a commit ("file-staged", "file-renamed",
# "manifest-staged", "manifest-replaced", "committed", "file-removed", "cleaned"). Tests set it in a
# writer subprocess to SIGKILL it at an exact point; it is None otherwise.
_step_hook: Callable[[str], None] | None = None


@contextlib.contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's exclusive write lock; a second writer gets IndexLocked at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLocked(f"{folder} is being written by another process (another `bicross index`, "
                              "`add` or `delete`); wait for it to finish and try again") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def commit(folder: Path, writers: Mapping[str, Writer], manifest: dict[str, Any],
           carry: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write each file with its writer under a new generation, then the manifest; return the manifest.

    Args:
        folder: the collection folder; call inside `write_lock(folder)`.
        writers: maps a role like "embeddings.npy" to a function writing that file (or folder) at a path;
            the file is named "embeddings.gNNNNNN.npy" after the new generation.
        manifest: fields to record beside "format", "generation" and "files".
        carry: roles of the current manifest's "files" to keep as they are (not rewritten, not re-hashed).
    """
    previous = _read_previous(folder)
    generation = int(previous.get("generation", 0)) + 1
    files: dict[str, dict[str, Any]] = {}
    for role, spec in (carry or {}).items():
        if role in writers:
            raise ValueError(f"role {role!r} is both carried over and rewritten")
        if not (folder / spec["name"]).exists():
            raise IndexCorrupt(f"{folder}: {role} file {spec['name']} is missing; rebuild the index")
        files[role] = dict(spec)
    for role, write in writers.items():
        stem, dot, suffix = role.partition(".")
        final = folder / f"{stem}.g{generation:06d}{dot}{suffix}"
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{stem}-", dir=folder)) / final.name
        write(staging)
        _fsync_tree(staging)
        _step("file-staged")
        _remove(final)  # left by a commit of this generation that was interrupted before its manifest
        os.replace(staging, final)
        staging.parent.rmdir()
        _step("file-renamed")
        files[role] = {"name": final.name, **_checksum(final)}
    _fsync_dir(folder)  # the renames are durable before a manifest names the files
    full = {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest,
            "generation": generation, "files": files}
    _atomic_write_text(folder / MANIFEST, json.dumps(full, indent=2, sort_keys=True) + "\n")
    _step("committed")
    previous_files = previous.get("files") if isinstance(previous.get("files"), dict) else {}
    keep = {spec["name"] for spec in files.values()}
    keep |= {spec.get("name") for spec in previous_files.values() if isinstance(spec, dict)}
    _remove_stale(folder, keep)
    _step("cleaned")
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
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT_NAME:
        raise IndexCorrupt(f"{file} is not a bicross collection manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        how = (f"it was written by an older bicross: rebuild it with `bicross index CORPUS --index {folder}`"
               if isinstance(version, int) and version < FORMAT_VERSION else
               "upgrade bicross to read it, or rebuild it with this version")
        raise IndexCorrupt(f"{folder} has format version {version}, this bicross reads {FORMAT_VERSION}; {how}")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("generation"), int):
        raise IndexCorrupt(f"{file} lacks its files or generation; rebuild the index")
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


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def _read_previous(folder: Path) -> dict[str, Any]:
    """The current manifest as a plain dict, or {} when there is none (or it is unreadable)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("generation", 0), int):
        return {}
    return manifest


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
    if path.is_dir():
        _fsync_dir(path)


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
    _step("manifest-staged")
    os.replace(temporary, target)
    _step("manifest-replaced")
    _fsync_dir(target.parent)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete files of generations no manifest of the last two names, and leftovers of interrupted commits."""
    for entry in sorted(folder.iterdir()):
        if entry.name in keep or entry.name in {MANIFEST, ".lock"}:
            continue
        if _OWN_FILE.match(entry.name):
            _remove(entry)
            _step("file-removed")
