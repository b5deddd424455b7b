"""The collection folder: atomic generation commits, manifest checks, checksums and the write lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bicross.errors import IndexCorrupt, IndexLocked
from bicross.index.store import FORMAT_VERSION, MANIFEST, commit, read_manifest, verify_files, write_lock


def _writer(payload: bytes):
    return lambda target: target.write_bytes(payload)


def _commit(folder: Path, payload: bytes, **manifest: object) -> dict:
    with write_lock(folder):
        return commit(folder, {"data.bin": _writer(payload), "ids.jsonl": _writer(b'"a"\n')}, dict(manifest))


def _fail(target: Path) -> None:
    target.write_bytes(b"half written")
    raise RuntimeError("disk full")


def test_commit_writes_generation_files_and_manifest(tmp_path: Path) -> None:
    manifest = _commit(tmp_path, b"abc", count=1)
    assert manifest["generation"] == 1 and manifest["count"] == 1
    assert manifest["files"]["data.bin"]["name"] == "data.g000001.bin"
    assert manifest["files"]["data.bin"]["bytes"] == 3
    assert (tmp_path / "data.g000001.bin").read_bytes() == b"abc"
    assert read_manifest(tmp_path) == manifest
    verify_files(tmp_path, manifest)


def test_commit_keeps_the_previous_generation_until_the_next(tmp_path: Path) -> None:
    first = _commit(tmp_path, b"old")
    manifest = _commit(tmp_path, b"newer")
    assert manifest["generation"] == 2
    assert (tmp_path / "data.g000002.bin").read_bytes() == b"newer"
    # a reader that read the first manifest just before the commit can still load what it names
    verify_files(tmp_path, first)
    _commit(tmp_path, b"newest")
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {MANIFEST, ".lock", "data.g000002.bin", "ids.g000002.jsonl", "data.g000003.bin", "ids.g000003.jsonl"}


def test_carried_files_are_kept_unchanged_and_not_rewritten(tmp_path: Path) -> None:
    first = _commit(tmp_path, b"payload")
    with write_lock(tmp_path):
        second = commit(tmp_path, {"ids.jsonl": _writer(b'"b"\n')}, {}, carry={"data.bin": first["files"]["data.bin"]})
    assert second["files"]["data.bin"] == first["files"]["data.bin"]
    assert second["files"]["ids.jsonl"]["name"] == "ids.g000002.jsonl"
    _commit(tmp_path, b"x")
    _commit(tmp_path, b"y")  # two commits later data.g000001.bin is no longer named by a recent manifest
    assert not (tmp_path / "data.g000001.bin").exists()
    verify_files(tmp_path, read_manifest(tmp_path))


def test_carrying_a_missing_file_is_refused(tmp_path: Path) -> None:
    first = _commit(tmp_path, b"payload")
    (tmp_path / "data.g000001.bin").unlink()
    with write_lock(tmp_path), pytest.raises(IndexCorrupt, match="data.g000001.bin is missing"):
        commit(tmp_path, {}, {}, carry={"data.bin": first["files"]["data.bin"]})
    assert read_manifest(tmp_path) == first


def test_interrupted_commit_keeps_previous_generation(tmp_path: Path) -> None:
    before = _commit(tmp_path, b"committed")
    with write_lock(tmp_path), pytest.raises(RuntimeError, match="disk full"):
        commit(tmp_path, {"ids.jsonl": _writer(b"new ids"), "data.bin": _fail}, {})
    after = read_manifest(tmp_path)
    assert after == before
    verify_files(tmp_path, after)
    assert (tmp_path / "data.g000001.bin").read_bytes() == b"committed"
    # the next successful commit sweeps the half-written leftovers away (and keeps generation 1 one more commit)
    _commit(tmp_path, b"retry")
    assert {p.name for p in tmp_path.iterdir()} == {MANIFEST, ".lock", "data.g000002.bin", "ids.g000002.jsonl",
                                                    "data.g000001.bin", "ids.g000001.jsonl"}
    assert (tmp_path / "data.g000002.bin").read_bytes() == b"retry"


def test_commit_never_deletes_files_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (tmp_path / "backup.gz").write_bytes(b"user data")
    (tmp_path / "notes.txt").write_text("keep me")
    _commit(tmp_path, b"one")
    _commit(tmp_path, b"two")
    assert (tmp_path / ".git" / "HEAD").is_file()
    assert (tmp_path / "backup.gz").read_bytes() == b"user data"
    assert (tmp_path / "notes.txt").is_file()


def test_folder_role_is_checksummed_as_a_tree(tmp_path: Path) -> None:
    def write_tree(target: Path) -> None:
        target.mkdir()
        (target / "part").write_bytes(b"12345")

    with write_lock(tmp_path):
        manifest = commit(tmp_path, {"shards": write_tree}, {})
    assert (manifest["files"]["shards"]["name"], manifest["files"]["shards"]["bytes"]) == ("shards.g000001", 5)
    (tmp_path / "shards.g000001" / "part").write_bytes(b"12346")
    with pytest.raises(IndexCorrupt, match="fails its checksum"):
        verify_files(tmp_path, manifest)


def test_nonexistent_folder_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexCorrupt, match="no index at"):
        read_manifest(tmp_path / "nowhere")


def test_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.g000001.bin").write_bytes(b"abc")
    with pytest.raises(IndexCorrupt, match=f"has no {MANIFEST}"):
        read_manifest(tmp_path)


def test_garbage_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_bytes(b"{not json\xff")
    with pytest.raises(IndexCorrupt, match="is not valid JSON"):
        read_manifest(tmp_path)


def test_manifest_of_another_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else", "format_version": FORMAT_VERSION}))
    with pytest.raises(IndexCorrupt, match="not a bicross collection manifest"):
        read_manifest(tmp_path)


def test_manifest_of_the_previous_format_is_refused_asking_for_a_rebuild(tmp_path: Path) -> None:
    _commit(tmp_path, b"abc")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["format_version"] = 1
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="format version 1, this bicross reads 2; .*older bicross: rebuild it"):
        read_manifest(tmp_path)


def test_manifest_with_other_format_version_is_refused(tmp_path: Path) -> None:
    _commit(tmp_path, b"abc")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match=f"format version {FORMAT_VERSION + 1}, this bicross reads {FORMAT_VERSION}"):
        read_manifest(tmp_path)


def test_missing_data_file_is_refused(tmp_path: Path) -> None:
    manifest = _commit(tmp_path, b"abc")
    (tmp_path / "data.g000001.bin").unlink()
    with pytest.raises(IndexCorrupt, match="data.bin file data.g000001.bin is missing"):
        verify_files(tmp_path, manifest)


def test_truncated_file_is_refused_by_size_even_without_checksums(tmp_path: Path) -> None:
    manifest = _commit(tmp_path, b"abcdef")
    (tmp_path / "data.g000001.bin").write_bytes(b"abc")
    with pytest.raises(IndexCorrupt, match="has 3 bytes, the manifest says 6"):
        verify_files(tmp_path, manifest, checksums=False)


def test_flipped_byte_fails_checksum(tmp_path: Path) -> None:
    manifest = _commit(tmp_path, b"abcdef")
    (tmp_path / "data.g000001.bin").write_bytes(b"abcdeF")
    with pytest.raises(IndexCorrupt, match="data.g000001.bin fails its checksum"):
        verify_files(tmp_path, manifest)


_TRY_LOCK = """
import sys
from pathlib import Path
from bicross.errors import IndexLocked
from bicross.index.store import write_lock
try:
    with write_lock(Path(sys.argv[1])):
        pass
except IndexLocked as error:
    print(error)
    sys.exit(3)
"""


def _lock_from_another_process(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _TRY_LOCK, str(folder)], capture_output=True, text=True,
                          timeout=600)


def test_write_lock_refuses_a_second_process(tmp_path: Path) -> None:
    with write_lock(tmp_path):
        held = _lock_from_another_process(tmp_path)
    assert held.returncode == 3, held.stderr
    assert "being written by another process" in held.stdout
    released = _lock_from_another_process(tmp_path)
    assert released.returncode == 0, released.stderr + released.stdout


def test_write_lock_refuses_a_second_writer_in_the_same_process(tmp_path: Path) -> None:
    with write_lock(tmp_path), pytest.raises(IndexLocked):
        with write_lock(tmp_path):
            pass
