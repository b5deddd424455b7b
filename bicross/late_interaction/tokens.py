"""ColBERT's tokenization: marker tokens, query augmentation with [MASK], punctuation left out of MaxSim.

Query: `[CLS] [Q] tokens [SEP]`, then [MASK] up to `query_length` (query augmentation: the encoder turns the
masks into soft expansion terms, and every one of the `query_length` vectors counts in MaxSim). By default the
encoder does not attend to the masks (ColBERT's and PyLate's `attend_to_expansion_tokens=False`); their output
vectors are still used.
Document: `[CLS] [D] tokens [SEP]`, cut to `document_length`; padding and punctuation tokens (each character
of `string.punctuation` that is one token in the vocabulary, ColBERT's skiplist) are encoded but do not
count in MaxSim.

Markers are token ids inserted right after [CLS], as ColBERT and PyLate do, not text prefixes: the tokenizer
cannot split a marker into pieces, and no word of the text is cut to make room for it. The default markers
are BERT's `[unused0]` / `[unused1]`, what ColBERT and answerai-colbert-small-v1 were trained with; they
already have embeddings in every BERT vocabulary, so no new rows are needed. A vocabulary without them
(RoBERTa-style) gets them added by `ColBERT.from_backbone` (PyLate's "[Q] "/"[D] " way); loading a trained
model whose markers are missing from its tokenizer is refused.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bicross.errors import InvalidInput
from bicross.models.tokenization import Tokenizer, check_texts

__all__ = ["ColBERTTokenizer", "Kind", "RaggedTokens", "TokenInputs"]

Kind = Literal["query", "document"]


@dataclass(frozen=True)
class RaggedTokens:
    """Token ids per text with the marker in place (not padded yet), and which texts were cut."""

    kind: Kind
    input_ids: list[list[int]]
    truncated: np.ndarray  # (n,) bool

    @property
    def lengths(self) -> np.ndarray:
        """Token count per text, (n,)."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass(frozen=True)
class TokenInputs:
    """A padded batch: what the encoder reads, and which output vectors count in MaxSim."""

    input_ids: np.ndarray  # (b, t) int64
    attention_mask: np.ndarray  # (b, t) int64: what the encoder attends to
    scoring_mask: np.ndarray  # (b, t) bool: which output vectors MaxSim reads

    def model_inputs(self) -> dict[str, np.ndarray]:
        """The encoder's inputs as int64 arrays (token types all 0), the `Backend.forward` format."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": np.zeros_like(self.input_ids)}


class ColBERTTokenizer:
    """Turn texts into ColBERT query or document token batches (see the module notes)."""

    def __init__(self, hf_tokenizer: Any, *, query_marker: str = "[unused0]", document_marker: str = "[unused1]",
                 query_length: int = 32, document_length: int = 180, attend_to_expansion: bool = False,
                 skip_punctuation: bool = True) -> None:
        if query_length < 4 or document_length < 4:
            raise InvalidInput(f"query_length and document_length must be at least 4 tokens, got {query_length} "
                               f"and {document_length}")
        self.hf = hf_tokenizer
        self.tokenizer = Tokenizer(hf_tokenizer)
        self.query_marker, self.document_marker = query_marker, document_marker
        self.query_length, self.document_length = query_length, document_length
        self.attend_to_expansion = attend_to_expansion
        self.skip_punctuation = skip_punctuation
        self.marker_ids = {"query": self._token_id(query_marker, "query_marker"),
                           "document": self._token_id(document_marker, "document_marker")}
        mask_id = getattr(hf_tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise InvalidInput("the tokenizer has no mask token, which ColBERT pads queries with (query "
                               "augmentation); use a BERT-like tokenizer with a [MASK] token")
        self.mask_id = int(mask_id)
        self.skiplist = frozenset(_punctuation_ids(hf_tokenizer)) if skip_punctuation else frozenset()

    @property
    def pad_id(self) -> int:
        """Id that pads documents."""
        return self.tokenizer.pad_id

    def tokenize(self, texts: Sequence[str], kind: Kind) -> RaggedTokens:
        """`[CLS] marker tokens [SEP]` per text, cut to the kind's length (the marker takes one token)."""
        check_texts(texts, kind)
        limit = self.query_length if kind == "query" else self.document_length
        tokens = self.tokenizer.single(texts, limit - 1)
        marker = self.marker_ids[kind]
        ids = [row[:1] + [marker] + row[1:] for row in tokens.input_ids]
        return RaggedTokens(kind, ids, tokens.truncated)

    def pad(self, tokens: RaggedTokens, rows: Sequence[int] | np.ndarray | None = None) -> TokenInputs:
        """Pad the chosen rows (all by default): queries to `query_length` with [MASK], documents to the longest."""
        rows = range(len(tokens.input_ids)) if rows is None else rows
        selected = [tokens.input_ids[int(row)] for row in rows]
        if not selected:
            raise InvalidInput("cannot pad an empty batch of texts")
        query = tokens.kind == "query"
        width = self.query_length if query else max(len(ids) for ids in selected)
        input_ids = np.full((len(selected), width), self.mask_id if query else self.pad_id, dtype=np.int64)
        attention = np.zeros((len(selected), width), dtype=np.int64)
        for out, ids in enumerate(selected):
            input_ids[out, :len(ids)] = ids
            attention[out, :len(ids)] = 1
        if query:
            if self.attend_to_expansion:
                attention[:] = 1
            scoring = np.ones((len(selected), width), dtype=bool)  # every [MASK] counts: query augmentation
        else:
            scoring = attention.astype(bool)
            if self.skiplist:
                scoring &= ~np.isin(input_ids, np.fromiter(self.skiplist, dtype=np.int64))
        return TokenInputs(input_ids, attention, scoring)

    def batch(self, texts: Sequence[str], kind: Kind) -> TokenInputs:
        """Tokenize and pad `texts` as one batch."""
        return self.pad(self.tokenize(texts, kind))

    def settings(self) -> dict[str, Any]:
        """The options this tokenizer was built with (saved beside a model)."""
        return {"query_marker": self.query_marker, "document_marker": self.document_marker,
                "query_length": self.query_length, "document_length": self.document_length,
                "attend_to_expansion": self.attend_to_expansion, "skip_punctuation": self.skip_punctuation}

    def _token_id(self, token: str, what: str) -> int:
        token_id = self.hf.convert_tokens_to_ids(token)
        unknown = getattr(self.hf, "unk_token_id", None)
        if token_id is None or (token_id == unknown and token != getattr(self.hf, "unk_token", None)):
            raise InvalidInput(f"{what} {token!r} is not a token of this vocabulary; pick a token it has (e.g. "
                               "[unused0] / [unused1] in BERT vocabularies) or build the model with "
                               "ColBERT.from_backbone, which adds missing markers")
        return int(token_id)


def _punctuation_ids(hf_tokenizer: Any) -> list[int]:
    """Ids of the punctuation characters that are single tokens (ColBERT's skiplist)."""
    ids = []
    for symbol in string.punctuation:
        pieces = hf_tokenizer.encode(symbol, add_special_tokens=False)
        if len(pieces) == 1:
            ids.append(int(pieces[0]))
    return ids
