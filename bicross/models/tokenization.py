"""Text checks, tokenization with truncation accounting, and length-sorted padded batches.

Encoders and rerankers share this so that batching, padding and input checks live in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bicross.errors import InvalidInput

__all__ = ["TokenizedTexts", "Tokenizer", "check_texts", "length_sorted_batches", "pad_batch"]


def check_texts(texts: Sequence[str], what: str) -> None:
    """Refuse inputs no model can use: non-strings, empty or whitespace-only text, unencodable text."""
    if isinstance(texts, str):
        raise InvalidInput(f"{what} must be a list of strings, got a single string")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"{what} #{position} is {type(text).__name__}, expected str")
        if not text.strip():
            raise InvalidInput(f"{what} #{position} is empty or whitespace only; remove it or give it text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInput(
                f"{what} #{position} holds characters that are not valid Unicode ({error.reason} at "
                f"offset {error.start}); decode the source as UTF-8 before passing it"
            ) from None


@dataclass(frozen=True)
class TokenizedTexts:
    """Token ids per text (already cut to max_length) and which texts were cut."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    truncated: np.ndarray  # (n,) bool

    @property
    def lengths(self) -> np.ndarray:
        """Token count per text, (n,)."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


class Tokenizer:
    """A Hugging Face fast tokenizer that reports truncation instead of cutting silently."""

    def __init__(self, hf_tokenizer: object) -> None:
        self.hf = hf_tokenizer

    @classmethod
    def load(cls, folder: Path) -> Tokenizer:
        """Load the tokenizer files in `folder`."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)))

    @property
    def pad_id(self) -> int:
        """Id used for padding (0 when the tokenizer defines none)."""
        return int(getattr(self.hf, "pad_token_id", None) or 0)

    def single(self, texts: Sequence[str], max_length: int) -> TokenizedTexts:
        """Tokenize texts alone, cut to `max_length` tokens, flagging the ones that were cut."""
        encoded = self.hf(list(texts), truncation=True, max_length=max_length,  # type: ignore[operator]
                          return_overflowing_tokens=True, return_token_type_ids=True)
        return _first_windows(encoded, len(texts))

    def pairs(self, queries: Sequence[str], documents: Sequence[str], max_length: int) -> TokenizedTexts:
        """Tokenize (query, document) pairs, cutting the document first so the query survives."""
        try:
            encoded = self.hf(list(queries), list(documents), truncation="only_second",  # type: ignore[operator]
                              max_length=max_length, return_overflowing_tokens=True,
                              return_token_type_ids=True)
        except Exception:  # noqa: BLE001 - the query alone is longer than max_length: cut both
            encoded = self.hf(list(queries), list(documents), truncation="longest_first",  # type: ignore[operator]
                              max_length=max_length, return_token_type_ids=True)
            encoded["overflow_to_sample_mapping"] = list(range(len(queries)))
        return _first_windows(encoded, len(queries))


def _first_windows(encoded: dict, count: int) -> TokenizedTexts:
    """Keep the first window of each text; extra overflow windows mean the text was truncated."""
    mapping = encoded["overflow_to_sample_mapping"]
    ids: list[list[int]] = [[] for _ in range(count)]
    types: list[list[int]] = [[] for _ in range(count)]
    windows = np.zeros(count, dtype=np.int64)
    for row, sample in enumerate(mapping):
        if windows[sample] == 0:
            ids[sample] = encoded["input_ids"][row]
            types[sample] = encoded["token_type_ids"][row]
        windows[sample] += 1
    return TokenizedTexts(ids, types, windows > 1)


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Yield index batches, longest texts first, so each batch pads to a similar length.

    >>> [b.tolist() for b in length_sorted_batches(np.array([3, 9, 1, 7]), 2)]
    [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be positive, got {batch_size}")
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def pad_batch(tokens: TokenizedTexts, rows: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad the selected rows into int64 arrays `(batch, longest)` plus the attention mask."""
    width = max(len(tokens.input_ids[r]) for r in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for out, row in enumerate(rows):
        length = len(tokens.input_ids[row])
        input_ids[out, :length] = tokens.input_ids[row]
        token_type_ids[out, :length] = tokens.token_type_ids[row]
        attention_mask[out, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
