"""Bi-encoder: queries and documents are embedded independently, so documents are embedded once.

One tower (a backend + tokenizer) is shared by queries and documents unless a separate document model is
given, or the folder holds one in `document/` (as `TrainableBiEncoder.save` writes a two-tower model).
Pooling, normalization, prefixes and max length come from the checkpoint (see models/settings.py) and can
be overridden. Learned pooling reads its trained vector from the (query) model's folder; both towers use it,
as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bicross.models.backends import Backend, BackendName, DType, batch_size_for, load_backend
from bicross.models.pooling import pool
from bicross.models.resolve import model_fingerprint, resolve_model
from bicross.models.settings import EncoderSettings, read_encoder_settings, read_pooling_weight
from bicross.models.tokenization import Tokenizer, check_texts, length_sorted_batches, pad_batch
from bicross.progress import progress_task
from bicross.types import Similarity

__all__ = ["BiEncoder", "EncodedTexts", "Tower"]

DEFAULT_BI_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class EncodedTexts:
    """Embeddings `(n, dim)` float32 in input order, and how many texts were cut to max_length."""

    embeddings: np.ndarray
    truncated: int


@dataclass
class Tower:
    """One encoder network: its runtime, tokenizer and identity (and the vector learned pooling needs)."""

    backend: Backend
    tokenizer: Tokenizer
    name: str
    fingerprint: str
    pooling_weight: torch.Tensor | None = None  # (hidden,); only read when settings.pooling == "learned"

    @classmethod
    def load(cls, name_or_path: str, backend: BackendName = "auto", dtype: DType = "auto",
             threads: int | None = None) -> tuple[Tower, dict]:
        """Resolve and open a model; also return the catalog settings that came with it."""
        resolved = resolve_model(name_or_path)
        runtime = load_backend(resolved.path, "encoder", backend, dtype, threads)
        tower = cls(runtime, Tokenizer.load(resolved.path), name_or_path, model_fingerprint(resolved.path))
        return tower, {"path": resolved.path, **resolved.settings}

    def embed(self, texts: Sequence[str], settings: EncoderSettings, batch_size: int,
              show_progress: bool = False) -> EncodedTexts:
        """Embed texts in length-sorted batches; return vectors in the order given."""
        tokens = self.tokenizer.single(texts, settings.max_length)
        output: np.ndarray | None = None
        # detached: a live training model's Parameter must not make the vectors require grad
        weight = None if self.pooling_weight is None else self.pooling_weight.detach()
        with progress_task("encoding", len(texts), show_progress) as advance:
            for rows in length_sorted_batches(tokens.lengths, batch_size):
                batch = pad_batch(tokens, rows, self.tokenizer.pad_id)
                states = self.backend.forward(batch)  # (batch, seq, hidden)
                vectors = pool(states, torch.from_numpy(batch["attention_mask"]), settings.pooling, weight)
                if settings.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                if output is None:
                    output = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                output[rows] = vectors.numpy()
                advance(len(rows))
        assert output is not None  # check_texts refused empty input before this point
        return EncodedTexts(output, int(tokens.truncated.sum()))


class BiEncoder:
    """Embed queries and documents into one vector space.

    Use `BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2")` or pass a local folder; any
    sentence-transformers or bare transformers checkpoint works.
    """

    def __init__(self, query_tower: Tower, settings: EncoderSettings, document_tower: Tower | None = None,
                 batch_size: int | None = None) -> None:
        self.query_tower = query_tower
        self.document_tower = document_tower or query_tower
        self.settings = settings
        self.batch_size = min(batch_size_for(query_tower.backend, batch_size),
                              batch_size_for(self.document_tower.backend, batch_size))

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_BI_ENCODER, *, document_model: str | None = None,
             backend: BackendName = "auto", dtype: DType = "auto", threads: int | None = None,
             batch_size: int | None = None, **overrides: object) -> BiEncoder:
        """Load a bi-encoder; `overrides` are EncoderSettings fields (pooling, normalize, similarity, ...).

        `document_model` None: a `document/` subfolder with a config.json is the document tower, if there is one.
        `batch_size` None: 32 texts per pass, or 1 for dynamically quantized ONNX models (`batch_size_for`).
        """
        tower, extra = Tower.load(name_or_path, backend, dtype, threads)
        path: Path = extra.pop("path")
        settings = read_encoder_settings(path, extra).updated(**overrides)
        # learned pooling: one vector for both towers (as in training), read from the query model's folder
        weight = read_pooling_weight(path) if settings.pooling == "learned" else None
        if document_model is None and (path / "document" / "config.json").is_file():
            document_model = str(path / "document")  # the separate document tower a two-tower save writes
        document_tower = None
        if document_model is not None and document_model != name_or_path:
            document_tower, _ = Tower.load(document_model, backend, dtype, threads)
            document_tower = replace(document_tower, pooling_weight=weight)
        return cls(replace(tower, pooling_weight=weight), settings, document_tower, batch_size)

    @property
    def name(self) -> str:
        """The model name (query tower; `query|document` when the towers differ)."""
        if self.document_tower is self.query_tower:
            return self.query_tower.name
        return f"{self.query_tower.name}|{self.document_tower.name}"

    @property
    def fingerprint(self) -> str:
        """Content hash of the weights, stored in an index to refuse a mismatched encoder."""
        if self.document_tower is self.query_tower:
            return self.query_tower.fingerprint
        return f"{self.query_tower.fingerprint}|{self.document_tower.fingerprint}"

    @property
    def similarity(self) -> Similarity:
        """How query and document vectors are compared."""
        return self.settings.similarity

    def encode(self, texts: Sequence[str], kind: Literal["query", "document"],
               show_progress: bool = False) -> EncodedTexts:
        """Embed texts as queries or documents (prefix and tower chosen by `kind`)."""
        check_texts(texts, kind)
        prefix = self.settings.query_prefix if kind == "query" else self.settings.document_prefix
        tower = self.query_tower if kind == "query" else self.document_tower
        prefixed = [prefix + text for text in texts] if prefix else list(texts)
        if not prefixed:
            return EncodedTexts(np.empty((0, 0), dtype=np.float32), 0)
        return tower.embed(prefixed, self.settings, self.batch_size, show_progress)

    def encode_queries(self, queries: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Query embeddings `(n, dim)` float32."""
        return self.encode(queries, "query", show_progress).embeddings

    def encode_documents(self, documents: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Document embeddings `(n, dim)` float32."""
        return self.encode(documents, "document", show_progress).embeddings
