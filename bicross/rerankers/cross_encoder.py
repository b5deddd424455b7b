"""Cross-encoder: the query and a document are read together (`[CLS] q [SEP] d [SEP]`) and scored jointly.

Slower than a bi-encoder (one forward pass per pair) and more accurate, so it reranks a shortlist. Any
sequence-classification checkpoint works: one logit (relevance, regression) or several labels (e.g. NLI).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bicross.errors import InvalidInput
from bicross.models.backends import Backend, BackendName, DType, batch_size_for, load_backend
from bicross.models.resolve import model_fingerprint, resolve_model
from bicross.models.tokenization import Tokenizer, check_texts, length_sorted_batches, pad_batch
from bicross.progress import progress_task

__all__ = ["DEFAULT_CROSS_ENCODER", "Activation", "CrossEncoder", "RankedDocument"]

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-12-v2"
Activation = Literal["none", "sigmoid", "softmax"]


@dataclass(frozen=True)
class RankedDocument:
    """A document's position in the input list and its score, as returned by `rank`."""

    index: int
    score: float


class CrossEncoder:
    """Score (query, document) pairs with a sequence-classification model."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, *, name: str = "cross-encoder",
                 fingerprint: str = "", labels: tuple[str, ...] = (), max_length: int = 512,
                 activation: Activation = "none", batch_size: int | None = None) -> None:
        if max_length < 4:
            raise InvalidInput(f"max_length must be at least 4 tokens, got {max_length}")
        self.backend = backend
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint
        self.labels = labels
        self.max_length = max_length
        self.activation = activation
        self.batch_size = batch_size_for(backend, batch_size)

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_CROSS_ENCODER, *, backend: BackendName = "auto",
             dtype: DType = "auto", threads: int | None = None, max_length: int | None = None,
             activation: Activation = "none", batch_size: int | None = None) -> CrossEncoder:
        """Load a cross-encoder from a hub id, a packaged copy or a local folder.

        `batch_size` None: 32 pairs per pass, or 1 for dynamically quantized ONNX models, whose scores would
        otherwise depend on the other pairs in the batch (see `batch_size_for`).
        """
        resolved = resolve_model(name_or_path)
        runtime = load_backend(resolved.path, "classifier", backend, dtype, threads)
        labels = _read_labels(resolved.path)
        limit = max_length or int(resolved.settings.get("max_length", _model_max_length(resolved.path)))
        return cls(runtime, Tokenizer.load(resolved.path), name=name_or_path,
                   fingerprint=model_fingerprint(resolved.path), labels=labels, max_length=limit,
                   activation=activation, batch_size=batch_size)

    @property
    def identity(self) -> str:
        """What a score depends on: model name, weight fingerprint, max_length and activation."""
        return f"{self.name}|{self.fingerprint}|max_length={self.max_length}|activation={self.activation}"

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray:
        """Scores in input order: `(n,)` for one-logit models, `(n, labels)` otherwise."""
        queries = [query for query, _ in pairs]
        documents = [document for _, document in pairs]
        check_texts(queries, "query")
        check_texts(documents, "document")
        if not pairs:
            return np.empty(0, dtype=np.float32)
        tokens = self.tokenizer.pairs(queries, documents, self.max_length)
        output: np.ndarray | None = None
        with progress_task("reranking", len(pairs), show_progress) as advance:
            for rows in length_sorted_batches(tokens.lengths, self.batch_size):
                logits = self.backend.forward(pad_batch(tokens, rows, self.tokenizer.pad_id))  # (batch, labels)
                if output is None:
                    output = np.empty((len(pairs), logits.shape[1]), dtype=np.float32)
                output[rows] = _activate(logits, self.activation).numpy()
                advance(len(rows))
        assert output is not None
        return output[:, 0] if output.shape[1] == 1 else output

    def rank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[RankedDocument]:
        """Documents sorted by relevance to `query`, best first (one-logit models only)."""
        if top_n is not None and top_n <= 0:
            raise InvalidInput(f"top_n must be positive, got {top_n}")
        scores = self.score([(query, document) for document in documents])
        if scores.ndim != 1:
            raise InvalidInput(f"rank needs a one-logit relevance model; {self.name} has labels {self.labels}")
        order = np.argsort(-scores, kind="stable")[:top_n]
        return [RankedDocument(int(i), float(scores[i])) for i in order]


def _activate(logits: torch.Tensor, activation: Activation) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    if activation == "softmax":
        return torch.softmax(logits, dim=-1)
    return logits


def _read_labels(folder: Path) -> tuple[str, ...]:
    config = folder / "config.json"
    if not config.is_file():
        return ()
    id2label = json.loads(config.read_text()).get("id2label") or {}
    return tuple(id2label[key] for key in sorted(id2label, key=int))


def _model_max_length(folder: Path) -> int:
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        file = folder / name
        if file.is_file():
            value = json.loads(file.read_text()).get(key)
            if isinstance(value, int) and 0 < value <= 100_000:
                return value
    return 512
