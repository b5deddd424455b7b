"""Document encoding on Ray: a `BiEncoder` whose `encode(..., "document")` runs in shards on Ray actors.

`ShardedBiEncoder` is a `BiEncoder` (same name, fingerprint, settings and query encoding, done here), so
`Collection.build` and `Collection.add` take it as they take any encoder: only the embedding step moves to
the cluster, and the collection is written by the same code with the same atomic commit. A failed run
(a shard out of retries, a worker that cannot load the model) raises before anything is written.

Each actor loads the model itself from its name or path (`EncoderSpec`), with the driver's settings, so
weights never travel with the tasks; every node must resolve that name to the same files (a packaged copy,
the hub cache, or a shared path), which the fingerprint check enforces. Shards are consecutive slices of the
input, gathered in order, so row i of the result is text i. A worker given a GPU by Ray encodes on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from bicross.cluster.runtime import ClusterConfig, for_workers
from bicross.cluster.shards import ShardPool, plan_shards
from bicross.encoders.bi_encoder import DEFAULT_BI_ENCODER, BiEncoder, EncodedTexts
from bicross.errors import IndexMismatch
from bicross.models.backends import BackendName, DType
from bicross.models.settings import EncoderSettings
from bicross.models.tokenization import check_texts
from bicross.progress import progress_task

__all__ = ["EncoderSpec", "ShardedBiEncoder"]


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker loads the bi-encoder: name or path, runtime options and the exact settings to use."""

    name_or_path: str = DEFAULT_BI_ENCODER
    document_model: str | None = None
    backend: BackendName = "auto"
    dtype: DType = "auto"
    batch_size: int | None = None
    settings: EncoderSettings | None = None  # None: the checkpoint's own
    overrides: dict[str, Any] = field(default_factory=dict)  # EncoderSettings fields, when `settings` is None

    def load(self, threads: int | None = None) -> BiEncoder:
        """The bi-encoder this spec names, loaded in this process."""
        overrides = asdict(self.settings) if self.settings is not None else self.overrides
        return BiEncoder.load(self.name_or_path, document_model=self.document_model, backend=self.backend,
                              dtype=self.dtype, threads=threads, batch_size=self.batch_size, **overrides)


class _DocumentWorker:
    """Inside an actor: one bi-encoder, encoding shards of document texts."""

    def __init__(self, encoder: BiEncoder) -> None:
        self.encoder = encoder
        self.identity = encoder.fingerprint

    def __call__(self, texts: list[str]) -> EncodedTexts:
        return self.encoder.encode(texts, "document")


@dataclass(frozen=True)
class _DocumentWorkerFactory:
    """Picklable: crosses to each actor as a spec, and loads the model there."""

    spec: EncoderSpec
    threads: int

    def __call__(self) -> _DocumentWorker:
        return _DocumentWorker(_on_assigned_gpu(self.spec.load(self.threads)))


def _on_assigned_gpu(encoder: BiEncoder) -> BiEncoder:
    """Move the document tower to the GPU Ray assigned this actor, if any (PyTorch backend only)."""
    import ray
    import torch

    from bicross.models.backends import TorchBackend

    tower = encoder.document_tower
    if ray.get_gpu_ids() and torch.cuda.is_available() and isinstance(tower.backend, TorchBackend):
        tower.backend = TorchBackend(tower.backend.model, tower.backend.dtype, "cuda")
    return encoder


class ShardedBiEncoder(BiEncoder):
    """A bi-encoder that embeds documents in shards on Ray actors (queries here, as they are few and small)."""

    def __init__(self, local: BiEncoder, spec: EncoderSpec, cluster: ClusterConfig | None = None) -> None:
        """`local`: the same model loaded here (its identity goes into the manifest; it encodes queries);
        `spec`: how each worker loads it."""
        super().__init__(local.query_tower, local.settings, local.document_tower, local.batch_size)
        self.spec = spec
        self.cluster = cluster or ClusterConfig()

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_BI_ENCODER, *, document_model: str | None = None,  # type: ignore[override]
             backend: BackendName = "auto", dtype: DType = "auto", threads: int | None = None,
             batch_size: int | None = None, cluster: ClusterConfig | None = None,
             **overrides: object) -> ShardedBiEncoder:
        """Load the model here and describe it to the workers with the settings it resolved to."""
        local = BiEncoder.load(name_or_path, document_model=document_model, backend=backend, dtype=dtype,
                               threads=threads, batch_size=batch_size, **overrides)
        spec = EncoderSpec(for_workers(name_or_path), None if document_model is None else for_workers(document_model),
                           backend, dtype, batch_size, local.settings)
        return cls(local, spec, cluster)

    def encode(self, texts: Sequence[str], kind: Literal["query", "document"],
               show_progress: bool = False) -> EncodedTexts:
        """Queries: as `BiEncoder.encode`. Documents: shards of `cluster.shard_size` texts on the Ray workers."""
        if kind == "query" or not texts:
            return super().encode(texts, kind, show_progress)
        check_texts(texts, kind)
        ranges = plan_shards(len(texts), self.cluster.shard_size)
        shards = [list(texts[r.start:r.stop]) for r in ranges]
        parts: list[EncodedTexts] = []
        factory = _DocumentWorkerFactory(self.spec, self.cluster.threads)
        with ShardPool(factory, self.cluster, len(shards)) as pool, \
                progress_task("encoding", len(texts), show_progress) as advance:
            if pool.identity != self.fingerprint:
                raise IndexMismatch(f"the Ray workers loaded {self.spec.name_or_path} with fingerprint {pool.identity}, "
                                    f"but here it is {self.fingerprint}: give every node the same model files")
            for part in pool.imap(shards):
                parts.append(part)
                advance(len(part.embeddings))
        embeddings = np.concatenate([part.embeddings for part in parts])  # (n, dim), row i is text i
        return EncodedTexts(embeddings, sum(part.truncated for part in parts))
