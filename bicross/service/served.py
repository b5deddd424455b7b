"""A collection as the service holds it: searches read the last committed state while a write commits.

Two `Collection` objects share one folder: `writer`, through which every add and delete goes (its own
methods take the folder's write lock and commit atomically), and `snapshot`, a shallow copy taken after
each commit that searches read. A commit gives the writer a new state and leaves the snapshot's alone,
so a search that started before it finishes against one consistent state (ids, documents, BM25 and
vectors of one generation), and searches keep being answered while the new BM25 index is built.

A write's embedding step runs under the model worker's lock (one model copy, one call at a time); the
rest of the commit (BM25, files, fsync) runs without it, beside the searches.

Another process may commit to the folder too (`bicross add`, a re-index by `adapt` / `distill`, another
`--workers` process). Every commit replaces manifest.json by a rename, so one `stat` of it per request tells
whether the folder moved on (`changed`); only then does `refresh` load the new generation, off the event
loop, and swap snapshot, writer and bi-encoder together (a new encoder if the manifest names another model).
A reload that fails (a damaged folder, a missing model) leaves the previous state served, records
`reload_error`, and is tried again only at the folder's next commit.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bicross.index.collection import Changes, Collection
from bicross.index.store import MANIFEST, read_manifest

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.rerankers.cache import ScoreCache
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.search import SearchConfig, Searcher
    from bicross.types import Document

__all__ = ["EncoderFor", "Refresh", "ServedCollection", "manifest_signature"]

EncoderFor = Callable[[Mapping[str, Any]], "BiEncoder"]  # a manifest's "model" entry -> its loaded bi-encoder
Refresh = Literal["unchanged", "reloaded", "failed"]
Signature = tuple[int, int, int, int]

_log = logging.getLogger("bicross.service")


def manifest_signature(folder: Path) -> Signature | None:
    """(device, inode, mtime ns, size) of the folder's manifest; None when it cannot be read.

    A commit writes the manifest aside and renames it over the old one, so each commit gives it a new inode:
    an equal signature means no commit since (a reused inode would also need the same mtime and size).
    """
    try:
        stat = os.stat(folder / MANIFEST)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class _Serving:
    """What searches read, swapped as one value so a search never pairs a snapshot with another's encoder."""

    snapshot: Collection
    encoder: BiEncoder


class ServedCollection:
    """One served collection folder: its committed snapshot, its writer and its bi-encoder."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._writer: Collection | None = None
        self._serving: _Serving | None = None
        self._seen: Signature | None = None  # the manifest's signature when the folder was last looked at
        self.reload_error: str | None = None  # why the folder's latest commit is not served (None: it is)
        self._writing = threading.Lock()  # one write at a time in this process; the folder lock keeps out others
        self._reloading = threading.Lock()  # one reload at a time: requests noticing the same commit share it

    def open(self, encoder_for: EncoderFor) -> None:
        """Open the folder (checksums verified) with the bi-encoder its manifest names."""
        seen = manifest_signature(self.path)  # before reading: a commit after this is noticed by `changed`
        writer = Collection.open(self.path)
        encoder = encoder_for(writer.manifest["model"])
        writer.check_encoder(encoder)
        self._writer, self._serving, self._seen = writer, _Serving(copy.copy(writer), encoder), seen

    @property
    def snapshot(self) -> Collection:
        """The last committed state, as searches see it."""
        assert self._serving is not None, "open() first"
        return self._serving.snapshot

    @property
    def encoder(self) -> BiEncoder:
        """The bi-encoder of the snapshot (the one its manifest names)."""
        assert self._serving is not None, "open() first"
        return self._serving.encoder

    @property
    def model_name(self) -> str:
        """The bi-encoder that built the collection (its manifest's name)."""
        return str(self.snapshot.manifest["model"]["name"])

    def searcher(self, reranker: CrossEncoder | None, config: SearchConfig, cache: ScoreCache) -> Searcher:
        """A Searcher over the current snapshot (cheap: no model is loaded); a later reload leaves it as it is."""
        from bicross.search import Searcher

        serving = self._serving
        assert serving is not None, "open() first"
        return Searcher(serving.snapshot, serving.encoder, reranker, config, cache)

    def changed(self) -> bool:
        """Whether the folder may have a commit this process has not looked at (one `stat`: cheap per request)."""
        return manifest_signature(self.path) != self._seen

    def refresh(self, encoder_for: EncoderFor) -> Refresh:
        """Serve the folder's latest commit if another process made it; call off the event loop (it loads files).

        Searches that already have a `searcher` finish on the previous snapshot. A failure keeps the previous
        state, sets `reload_error` and returns "failed"; the next commit is tried again, this one is not.
        """
        with self._reloading:
            signature = manifest_signature(self.path)
            if signature == self._seen:
                return "unchanged"  # a request that noticed the same commit reloaded it meanwhile
            try:
                return self._reload(encoder_for)
            except Exception as error:  # noqa: BLE001 - the previous state stays served; reported, not raised
                generation = self.snapshot.manifest["generation"]
                self.reload_error = (f"collection {self.name!r}: the latest commit in {self.path} failed to load "
                                     f"({type(error).__name__}: {error}); still serving generation {generation}")
                _log.warning("%s", self.reload_error)
                return "failed"
            finally:
                self._seen = signature  # set last: requests arriving during the reload wait for it too

    def _reload(self, encoder_for: EncoderFor) -> Refresh:
        serving = self._serving
        assert serving is not None, "open() first"
        if read_manifest(self.path) == serving.snapshot.manifest:
            self.reload_error = None
            return "unchanged"  # the commit was this process's own write (or the served manifest came back)
        loaded = Collection.open(self.path, verify_checksums=False)  # sizes only: hashing is O(folder) per commit
        model = loaded.manifest["model"]
        same_model = serving.encoder.fingerprint == model["fingerprint"]
        encoder = serving.encoder if same_model else encoder_for(model)
        loaded.check_encoder(encoder)
        with self._writing:
            if self._serving is not serving:
                return "unchanged"  # a write of ours committed meanwhile: its writer had reloaded a newer state
            self._writer, self._serving = loaded, _Serving(copy.copy(loaded), encoder)
        self.reload_error = None
        _log.info("collection %r: serving generation %s of %s%s", self.name, loaded.manifest["generation"], self.path,
                  "" if same_model else f" with bi-encoder {model['name']}")
        return "reloaded"

    def add(self, documents: Sequence[Document], model_lock: threading.Lock) -> Changes:
        """Add or replace documents in one commit; searches see them once it is committed."""
        assert self._writer is not None and self._serving is not None
        with self._writing:
            encoder = self._serving.encoder
            changes = self._writer.add(documents, _serialized(encoder, model_lock))
            self._serving = _Serving(copy.copy(self._writer), encoder)
        return changes

    def delete(self, ids: Sequence[str]) -> Changes:
        """Delete documents by id in one commit (all or nothing)."""
        assert self._writer is not None and self._serving is not None
        with self._writing:
            changes = self._writer.delete(ids)
            self._serving = _Serving(copy.copy(self._writer), self._serving.encoder)
        return changes

    def info(self) -> dict[str, Any]:
        """What `bicross info` prints, as fields."""
        from bicross.index.searchers import describe_searcher

        snapshot = self.snapshot  # one read: a reload may swap it meanwhile
        manifest = snapshot.manifest
        return {"name": self.name, "path": str(self.path), "documents": len(snapshot),
                "generation": manifest["generation"], "model": manifest["model"]["name"],
                "fingerprint": manifest["model"]["fingerprint"], "dimension": manifest["dimension"],
                "similarity": manifest["similarity"], "dense_searcher": describe_searcher(manifest),
                "bm25": manifest.get("bm25", {}), "truncated_documents": manifest.get("truncated_documents", 0)}


def _serialized(encoder: BiEncoder, model_lock: threading.Lock) -> BiEncoder:
    """The same encoder (shared weights) whose `encode` waits for the model worker's lock."""
    proxy = copy.copy(encoder)
    encode = encoder.encode

    def locked_encode(*args: Any, **options: Any) -> Any:
        with model_lock:
            return encode(*args, **options)

    proxy.encode = locked_encode  # type: ignore[method-assign]
    return proxy
