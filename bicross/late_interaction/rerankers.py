"""ColBERT and Poly-encoder rerankers: the `Reranker` interface Searcher uses (`score(pairs)`, `identity`, `rank`).

A first stage's top_k arrives as (query, document text) pairs. Each distinct query and document is encoded
once per call; a document whose text is in the `TokenStore` (found by text hash) is read from it instead of
encoded, so a store filled at indexing time turns reranking into query encoding plus MaxSim. The base class
owns that flow; a subclass implements the three parts that differ (`_encode_queries`, `_encode_documents`,
`_score`).

Runtimes are bicross's `Backend`s (PyTorch with bf16 autocast, or ONNX Runtime), so the packaged int8 ONNX
answerai-colbert-small-v1 backbone runs as well as a trained PyTorch ColBERT; `from_model` wraps a model
being trained (for dev evaluation). `load_reranker("colbert:DIR" | "poly:DIR")` is the CLI's entry point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bicross.errors import InvalidInput
from bicross.late_interaction.checkpoints import read_colbert, read_poly
from bicross.late_interaction.colbert import project_tokens
from bicross.late_interaction.config import ColBERTConfig, PolyConfig
from bicross.late_interaction.token_store import StoreDType, TokenStore
from bicross.late_interaction.tokens import ColBERTTokenizer
from bicross.models.backends import Backend, BackendName, DType, batch_size_for, load_backend
from bicross.models.pooling import pool
from bicross.models.resolve import model_fingerprint
from bicross.models.tokenization import Tokenizer, check_texts, length_sorted_batches, pad_batch
from bicross.progress import progress_task
from bicross.rerankers.cross_encoder import RankedDocument
from bicross.rerankers.protocol import Reranker
from bicross.scoring.late_interaction import code_attention, maxsim, poly_scores

if TYPE_CHECKING:
    from bicross.late_interaction.colbert import ColBERT
    from bicross.late_interaction.poly import PolyEncoder

__all__ = ["ColBERTReranker", "PolyReranker", "Reranker", "load_reranker"]  # Reranker: bicross.rerankers.protocol


class _LateInteractionReranker:
    """Encode each distinct query and document once (documents from the store when it has them), then score."""

    def __init__(self, store: TokenStore | None) -> None:
        if store is not None and store.model != self.document_identity:
            from bicross.errors import IndexMismatch

            raise IndexMismatch(f"the token store at {store.folder} holds vectors of {store.model!r}, this reranker "
                                f"makes {self.document_identity!r}; rebuild the store with build_store")
        self.store = store

    @property
    def document_identity(self) -> str:
        """What a stored document vector depends on (a store built by another model is refused)."""
        raise NotImplementedError

    def score(self, pairs: Sequence[tuple[str, str]], show_progress: bool = False) -> np.ndarray:
        """Scores `(n,)` in input order."""
        queries = [query for query, _ in pairs]
        documents = [document for _, document in pairs]
        check_texts(queries, "query")
        check_texts(documents, "document")
        if not pairs:
            return np.empty(0, dtype=np.float32)
        distinct_queries = list(dict.fromkeys(queries))
        distinct_documents = list(dict.fromkeys(documents))
        encoded_queries = self._encode_queries(distinct_queries)
        vectors = dict(zip(distinct_documents, self.document_vectors(distinct_documents, show_progress), strict=True))
        scores = np.empty(len(pairs), dtype=np.float32)
        rows_of: dict[str, list[int]] = {}
        for row, query in enumerate(queries):
            rows_of.setdefault(query, []).append(row)
        for query, encoded in zip(distinct_queries, encoded_queries, strict=True):
            rows = rows_of[query]
            scores[rows] = self._score(encoded, [vectors[documents[row]] for row in rows])
        return scores

    def rank(self, query: str, documents: Sequence[str], top_n: int | None = None) -> list[RankedDocument]:
        """Documents sorted by relevance to `query`, best first."""
        if top_n is not None and top_n <= 0:
            raise InvalidInput(f"top_n must be positive, got {top_n}")
        scores = self.score([(query, document) for document in documents])
        order = np.argsort(-scores, kind="stable")[:top_n]
        return [RankedDocument(int(i), float(scores[i])) for i in order]

    def document_vectors(self, texts: Sequence[str], show_progress: bool = False) -> list[np.ndarray]:
        """`(vectors_i, dim)` float32 per text: from the store where it holds the text, else encoded now."""
        found = [None if self.store is None else self.store.find_text(text) for text in texts]
        missing = [i for i, position in enumerate(found) if position is None]
        encoded = iter(self._encode_documents([texts[i] for i in missing], show_progress) if missing else [])
        return [next(encoded) if position is None else self.store.vectors(position)  # type: ignore[union-attr]
                for position in found]

    def build_store(self, folder: str | Path, ids: Sequence[str], texts: Sequence[str], dtype: StoreDType = "float16",
                    chunk: int = 256, show_progress: bool = False) -> TokenStore:
        """Encode documents into a new token store at `folder` (or append to the one there), `chunk` at a time."""
        if isinstance(ids, str) or len(ids) != len(texts) or not ids:
            raise InvalidInput(f"build_store needs one text per id and at least one document, got {len(ids)} ids and "
                               f"{len(texts)} texts")
        folder = Path(folder)
        store = TokenStore.open(folder, model=self.document_identity) if (folder / "manifest.json").is_file() else None
        for start in range(0, len(ids), chunk):
            batch = list(texts[start:start + chunk])
            vectors = self._encode_documents(batch, show_progress)
            if store is None:
                store = TokenStore.create(folder, int(vectors[0].shape[1]), dtype, model=self.document_identity)
            store = store.append(list(ids[start:start + chunk]), vectors, batch)
        assert store is not None
        return store

    def _encode_queries(self, texts: list[str]) -> list[Any]:
        raise NotImplementedError

    def _encode_documents(self, texts: list[str], show_progress: bool) -> list[np.ndarray]:
        raise NotImplementedError

    def _score(self, query: Any, documents: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class ColBERTReranker(_LateInteractionReranker):
    """MaxSim between ColBERT token vectors of the query and of each candidate document."""

    def __init__(self, backend: Backend, tokenizer: ColBERTTokenizer, projection: torch.Tensor | None = None, *,
                 name: str = "colbert", fingerprint: str = "", store: TokenStore | None = None,
                 batch_size: int | None = None) -> None:
        self.backend, self.tokenizer, self.projection = backend, tokenizer, projection  # projection (dim, hidden)
        self.name, self.fingerprint = name, fingerprint
        self.batch_size = batch_size_for(backend, batch_size)
        super().__init__(store)

    @classmethod
    def load(cls, name_or_path: str, *, backend: BackendName = "auto", dtype: DType = "auto",
             threads: int | None = None, store: TokenStore | str | Path | None = None, batch_size: int | None = None,
             config: ColBERTConfig | None = None) -> ColBERTReranker:
        """Load a ColBERT folder (bicross, PyLate or Stanford layout), or a bare transformers/ONNX backbone.

        `config` replaces the folder's settings (e.g. a longer `document_length`); its `dim` must be the saved
        projection's, or None to score the backbone's states as they are (the only choice for a bare
        backbone). The packaged answerai-colbert-small-v1 backbone loads by its hub id (int8 ONNX) or as
        `answerdotai/answerai-colbert-small-v1-pytorch` (its PyTorch copy), with the settings in `onnx_backbone`.
        """
        from bicross.late_interaction.checkpoints import has_colbert_settings
        from bicross.late_interaction.onnx_backbone import resolve_colbert_folder

        folder, packaged = resolve_colbert_folder(name_or_path)
        checkpoint = read_colbert(folder) if packaged is None and (config is None or has_colbert_settings(folder)) \
            else None
        config = config or (checkpoint.config if checkpoint is not None else packaged)
        assert config is not None
        projection = checkpoint.projection if checkpoint is not None and config.dim is not None else None
        if config.dim is not None and (projection is None or projection.shape[0] != config.dim):
            found = "no projection" if projection is None else f"a projection to {projection.shape[0]} dimensions"
            raise InvalidInput(f"{name_or_path} has {found} but the config asks for dim {config.dim}: pass a config "
                               "with the saved dim, or dim=None to use the backbone's states as they are")
        from transformers import AutoTokenizer

        tokenizer = ColBERTTokenizer(AutoTokenizer.from_pretrained(str(folder)), **config.tokenizer_options())
        runtime = load_backend(folder, "encoder", backend, dtype, threads)
        fingerprint = model_fingerprint(folder) + _tensor_digest(projection)
        opened = TokenStore.open(store) if isinstance(store, str | Path) else store
        return cls(runtime, tokenizer, projection, name=name_or_path, fingerprint=fingerprint, store=opened,
                   batch_size=batch_size)

    @classmethod
    def from_model(cls, model: ColBERT, store: TokenStore | None = None, batch_size: int = 16) -> ColBERTReranker:
        """Rerank with a ColBERT being trained (its live weights), e.g. for dev evaluation.

        The identity names the model, not its changing weights: give each evaluation a fresh ScoreCache.
        """
        from bicross.models.backends import TorchBackend

        projection = None if model.projection_weight is None else model.projection_weight.detach()
        return cls(TorchBackend(model.backbone), model.tokenizer, projection, name=model.base or "colbert",
                   store=store, batch_size=batch_size)

    @property
    def identity(self) -> str:
        """Model, weights (projection included) and tokenization: what a score depends on."""
        options = self.tokenizer.settings()
        return f"colbert|{self.document_identity}|query_length={options['query_length']}|" \
               f"attend_to_expansion={options['attend_to_expansion']}"

    @property
    def document_identity(self) -> str:
        """What a document's token vectors depend on."""
        options = self.tokenizer.settings()
        return (f"{self.name}|{self.fingerprint}|dim={'hidden' if self.projection is None else self.projection.shape[0]}"
                f"|document_length={options['document_length']}|markers={options['query_marker']},"
                f"{options['document_marker']}|skip_punctuation={options['skip_punctuation']}")

    def encode_queries(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Each query's token vectors `(query tokens, dim)` ([MASK]-augmented), e.g. for full retrieval."""
        check_texts(texts, "query")
        return self._encode_queries(list(texts))

    def _vectors(self, tokens, rows) -> tuple[torch.Tensor, np.ndarray]:
        inputs = self.tokenizer.pad(tokens, rows)
        states = self.backend.forward(inputs.model_inputs())  # (b, t, hidden) float32
        return project_tokens(states, self.projection), inputs.scoring_mask  # (b, t, dim)

    def _encode_queries(self, texts: list[str]) -> list[torch.Tensor]:
        tokens = self.tokenizer.tokenize(texts, "query")
        encoded: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        for rows in length_sorted_batches(tokens.lengths, self.batch_size):
            with torch.inference_mode():
                vectors, _ = self._vectors(tokens, rows)  # every query token counts (query augmentation)
            for out, row in enumerate(rows):
                encoded[int(row)] = vectors[out]
        return encoded

    def _encode_documents(self, texts: list[str], show_progress: bool) -> list[np.ndarray]:
        tokens = self.tokenizer.tokenize(texts, "document")
        encoded: list[np.ndarray] = [np.empty(0)] * len(texts)
        with progress_task("encoding documents", len(texts), show_progress) as advance:
            for rows in length_sorted_batches(tokens.lengths, self.batch_size):
                with torch.inference_mode():
                    vectors, mask = self._vectors(tokens, rows)
                for out, row in enumerate(rows):
                    encoded[int(row)] = vectors[out][torch.from_numpy(mask[out])].numpy()  # (counted tokens, dim)
                advance(len(rows))
        return encoded

    def _score(self, query: torch.Tensor, documents: list[np.ndarray]) -> np.ndarray:
        padded, mask = _pad(documents)
        return maxsim(query, padded, document_mask=mask).numpy()


class PolyReranker(_LateInteractionReranker):
    """Poly-encoder scores: the query's m context vectors against each document's single vector."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, codes: torch.Tensor, config: PolyConfig, *,
                 document_backend: Backend | None = None, name: str = "poly", fingerprint: str = "",
                 store: TokenStore | None = None, batch_size: int | None = None) -> None:
        self.backend, self.document_backend = backend, document_backend or backend
        self.tokenizer, self.codes, self.config = tokenizer, codes, config  # codes (m, hidden)
        self.name, self.fingerprint = name, fingerprint
        self.batch_size = batch_size_for(backend, batch_size)
        super().__init__(store)

    @classmethod
    def load(cls, name_or_path: str, *, backend: BackendName = "auto", dtype: DType = "auto",
             threads: int | None = None, store: TokenStore | str | Path | None = None,
             batch_size: int | None = None) -> PolyReranker:
        """Load a Poly-encoder folder written by `PolyEncoder.save`."""
        from bicross.models.resolve import resolve_model

        checkpoint = read_poly(resolve_model(name_or_path).path)
        runtime = load_backend(checkpoint.folder, "encoder", backend, dtype, threads)
        documents = None if checkpoint.document_folder is None else \
            load_backend(checkpoint.document_folder, "encoder", backend, dtype, threads)
        fingerprint = model_fingerprint(checkpoint.folder) + _tensor_digest(checkpoint.codes)
        if checkpoint.document_folder is not None:
            fingerprint += model_fingerprint(checkpoint.document_folder)
        opened = TokenStore.open(store) if isinstance(store, str | Path) else store
        return cls(runtime, Tokenizer.load(checkpoint.folder), checkpoint.codes, checkpoint.config,
                   document_backend=documents, name=name_or_path, fingerprint=fingerprint, store=opened,
                   batch_size=batch_size)

    @classmethod
    def from_model(cls, model: PolyEncoder, store: TokenStore | None = None, batch_size: int = 16) -> PolyReranker:
        """Rerank with a Poly-encoder being trained (its live weights and codes); as `ColBERTReranker.from_model`,
        the identity does not follow the weights."""
        from bicross.models.backends import TorchBackend

        documents = None if model.document_backbone is None else TorchBackend(model.document_backbone)
        return cls(TorchBackend(model.backbone), Tokenizer(model.tokenizer), model.codes.detach(), model.config,
                   document_backend=documents, name=model.base or "poly", store=store, batch_size=batch_size)

    @property
    def identity(self) -> str:
        """Model, weights, codes and lengths: what a score depends on."""
        return f"poly|{self.document_identity}|codes={self.config.codes}|query_length={self.config.query_length}"

    @property
    def document_identity(self) -> str:
        """What a stored document vector depends on."""
        return (f"{self.name}|{self.fingerprint}|document_length={self.config.document_length}|"
                f"pooling={self.config.document_pooling}")

    def _encode_queries(self, texts: list[str]) -> list[torch.Tensor]:
        tokens = self.tokenizer.single(texts, self.config.query_length)
        encoded: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        for rows in length_sorted_batches(tokens.lengths, self.batch_size):
            batch = pad_batch(tokens, rows, self.tokenizer.pad_id)
            with torch.inference_mode():
                states = self.backend.forward(batch)  # (b, t, hidden)
                context = code_attention(self.codes, states, torch.from_numpy(batch["attention_mask"]))  # (b, m, h)
            for out, row in enumerate(rows):
                encoded[int(row)] = context[out]
        return encoded

    def _encode_documents(self, texts: list[str], show_progress: bool) -> list[np.ndarray]:
        tokens = self.tokenizer.single(texts, self.config.document_length)
        encoded: list[np.ndarray] = [np.empty(0)] * len(texts)
        with progress_task("encoding documents", len(texts), show_progress) as advance:
            for rows in length_sorted_batches(tokens.lengths, self.batch_size):
                batch = pad_batch(tokens, rows, self.tokenizer.pad_id)
                with torch.inference_mode():
                    states = self.document_backend.forward(batch)
                    vectors = pool(states, torch.from_numpy(batch["attention_mask"]), self.config.document_pooling)
                for out, row in enumerate(rows):
                    encoded[int(row)] = vectors[out][None].float().numpy()  # (1, hidden): one "token" per document
                advance(len(rows))
        return encoded

    def _score(self, query: torch.Tensor, documents: list[np.ndarray]) -> np.ndarray:
        candidates = torch.from_numpy(np.concatenate(documents))  # (n, hidden)
        return poly_scores(query[None], candidates)[0].numpy()


def load_reranker(spec: str, *, store: TokenStore | str | Path | None = None, **options: Any) -> ColBERTReranker | PolyReranker:
    """`colbert:DIR_OR_ID` or `poly:DIR_OR_ID` -> the reranker (the CLI's `--reranker` values); options go to `load`."""
    kind, separator, name = spec.partition(":")
    if not separator or not name or kind not in ("colbert", "poly"):
        raise InvalidInput(f"late-interaction reranker {spec!r} must be colbert:DIR or poly:DIR (a folder or hub id), "
                           "e.g. colbert:answerdotai/answerai-colbert-small-v1")
    if kind == "colbert":
        return ColBERTReranker.load(name, store=store, **options)
    return PolyReranker.load(name, store=store, **options)


def _pad(documents: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(tokens_i, dim)` arrays into `(n, t, dim)` with the mask of real rows `(n, t)`."""
    width = max(1, max(len(array) for array in documents))
    dim = documents[0].shape[1]
    padded = torch.zeros(len(documents), width, dim)
    mask = torch.zeros(len(documents), width, dtype=torch.bool)
    for i, array in enumerate(documents):
        padded[i, :len(array)] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        mask[i, :len(array)] = True
    return padded, mask


def _tensor_digest(tensor: torch.Tensor | None) -> str:
    """A short hash of a small tensor's values ("" for None), for identities."""
    if tensor is None:
        return ""
    data = tensor.detach().float().contiguous().cpu().numpy().tobytes()
    return "-" + hashlib.sha256(data).hexdigest()[:8]
