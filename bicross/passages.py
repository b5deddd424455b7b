"""Split long documents into overlapping passages by tokens, so no part of a document goes unread.

A bi-encoder or cross-encoder reads at most `max_length` tokens (256 for bicross's defaults), so the rest
of a longer document is invisible to it. With `PassageConfig(window, stride)` a collection stores each
document as passages instead: windows of at most `window` tokens as the encoder reads them (its special
tokens and the title included), the next one starting `stride` text tokens after the last. Windows are
cut where a word starts when the window allows, and the cuts come from the document encoder's tokenizer
offsets, so every passage is a real substring `document.text[start:end]` (character span kept, the first
starting at 0 and the last ending at the text's end). The title, if any, is prefixed to every passage as
`Document.full_text` does, so a passage reads like a short document; a document within one window stays
one passage spanning its whole text.

Shortcuts: a window that `window - title tokens` leaves too short keeps at least half the window of text
(a very long title then makes the encoder truncate); a model's document prefix (e5's "passage: ") is
counted only when passed as `prefix`. The cross-encoder reads the query beside a passage, so the last
tokens of a full-window passage may be cut there; overlapping windows repeat them in the next passage,
except at the document's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bicross.errors import InvalidInput
from bicross.scoring.passages import PassageAggregate, check_aggregation
from bicross.types import Document

__all__ = ["PassageConfig", "passage_text", "split_documents", "token_windows"]

_TOKENIZE_BATCH = 256  # documents per tokenizer call


@dataclass(frozen=True)
class PassageConfig:
    """How a collection splits documents (window, stride in tokens) and scores them from their passages.

    `window` counts what the encoder reads (special tokens and title included), so `window` = the model's
    max_length means no passage is truncated; `stride` is the step between window starts (overlap =
    window - stride, less the title). `aggregate` and `k` are the default document score: its best
    passage ("max"), its first ("first", like truncation), or the sum of its k best ("sum-top-k").
    """

    window: int = 256
    stride: int = 128
    aggregate: PassageAggregate = "max"
    k: int = 2

    def __post_init__(self) -> None:
        for name in ("window", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"passage {name} must be a whole number of tokens >= 1, got {value!r}; e.g. "
                                   "--passage-window 256 --passage-stride 128")
        if self.stride > self.window:
            raise InvalidInput(f"passage stride ({self.stride}) must be <= the window ({self.window}), or text "
                               f"between windows would never be read; e.g. --passage-stride {self.window // 2}")
        check_aggregation(self.aggregate, self.k)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PassageConfig:
        """Read a manifest entry written by `to_dict`."""
        return cls(int(values["window"]), int(values["stride"]), values.get("aggregate", "max"),
                   int(values.get("k", 2)))


def token_windows(word_starts: Sequence[bool], window: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges `[start, end)` of overlapping windows over `len(word_starts)` tokens.

    A window ends where a word starts (unless one word fills it); the next starts `stride` tokens after the
    last one started, moved back to its word's start, and never after the last one ended, so every token is
    in a window. The last window ends at the last token.

    >>> token_windows([True] * 10, window=4, stride=2)
    [(0, 4), (2, 6), (4, 8), (6, 10)]
    >>> token_windows([True, True, False, True, False, True, True], window=4, stride=2)
    [(0, 3), (1, 5), (3, 7)]
    >>> token_windows([True] * 3, window=4, stride=2)
    [(0, 3)]
    """
    count = len(word_starts)
    if count <= window:
        return [(0, count)]
    windows = []
    start = 0
    while start + window < count:
        cut = start + window
        while cut > start and not word_starts[cut]:
            cut -= 1
        if cut == start:  # one word longer than the window: cut inside it
            cut = start + window
        windows.append((start, cut))
        following = min(start + stride, cut)
        snapped = following
        while snapped > start and not word_starts[snapped]:
            snapped -= 1
        start = snapped if snapped > start else following
    windows.append((start, count))
    return windows


def split_documents(documents: Sequence[Document], tokenizer: Any, config: PassageConfig,
                    prefix: str = "") -> list[list[tuple[int, int]]]:
    """Character spans `(start, end)` in `document.text` of each document's passages, in order.

    `tokenizer`: the document encoder's `bicross.models.tokenization.Tokenizer` (a fast Hugging Face
    tokenizer: offsets come from it); `prefix`: the encoder's document prefix, counted in every window.
    """
    hf = getattr(tokenizer, "hf", tokenizer)
    if not getattr(hf, "is_fast", False):
        raise InvalidInput("splitting documents into passages needs a fast (Rust) tokenizer, which gives character "
                           "offsets; this model has a slow one: save it with a tokenizer.json, or index without "
                           "--passage-window")
    specials = int(hf.num_special_tokens_to_add(pair=False))
    if config.window <= specials:
        raise InvalidInput(f"a passage window of {config.window} tokens leaves no room for text beside the model's "
                           f"{specials} special tokens; use a window of at least {specials + 16}")
    spans: list[list[tuple[int, int]]] = []
    for begin in range(0, len(documents), _TOKENIZE_BATCH):
        batch = documents[begin:begin + _TOKENIZE_BATCH]
        texts = _encode(hf, [d.text for d in batch])
        heads = _encode(hf, [prefix + (f"{d.title}. " if d.title else "") for d in batch])
        for number, document in enumerate(batch):
            offsets = texts["offset_mapping"][number]
            words = texts.word_ids(number)
            starts = [i == 0 or words[i] is None or words[i] != words[i - 1] for i in range(len(words))]
            budget = config.window - specials - len(heads["input_ids"][number])
            budget = max(budget, (config.window - specials + 1) // 2)
            windows = token_windows(starts, budget, min(config.stride, budget))
            spans.append(_character_spans(windows, offsets, len(document.text)))
    return spans


def passage_text(document: Document, start: int, end: int) -> str:
    """What the encoders read for one passage: the title (if any), then `text[start:end]`, as `full_text` joins them.

    >>> passage_text(Document("d", "one two three", title="Numbers"), 4, 13)
    'Numbers. two three'
    """
    chunk = document.text[start:end]
    return f"{document.title}. {chunk}" if document.title else chunk


def _encode(hf: Any, texts: list[str]) -> Any:
    # verbose=False: texts longer than the model's max length are the point here, not a mistake to warn about
    return hf(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
              return_token_type_ids=False, truncation=False, verbose=False)


def _character_spans(windows: list[tuple[int, int]], offsets: Sequence[tuple[int, int]],
                     length: int) -> list[tuple[int, int]]:
    """Token windows as character spans; the first starts at 0 and the last ends at `length`, so the passages
    cover the whole text (leading and trailing spaces included)."""
    if len(windows) == 1:
        return [(0, length)]
    spans = []
    for number, (first, last) in enumerate(windows):
        start = 0 if number == 0 else int(offsets[first][0])
        end = length if number == len(windows) - 1 else int(offsets[last - 1][1])
        spans.append((start, end))
    return spans
