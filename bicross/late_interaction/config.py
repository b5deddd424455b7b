"""The settings of a ColBERT and a Poly-encoder model: frozen, checked, saved beside the weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from bicross.errors import InvalidInput

__all__ = ["ColBERTConfig", "PolyConfig", "config_from_dict"]


@dataclass(frozen=True)
class ColBERTConfig:
    """Projection size and tokenization of a ColBERT model (the defaults are ColBERT's and PyLate's).

    `dim` None keeps the backbone's hidden states (no projection), as the packaged answerai-colbert-small-v1
    ONNX backbone, which ships without its projection layer, must be run.
    """

    dim: int | None = 128
    query_length: int = 32
    document_length: int = 180
    query_marker: str = "[unused0]"
    document_marker: str = "[unused1]"
    attend_to_expansion: bool = False  # whether the encoder attends to the query's [MASK] padding
    skip_punctuation: bool = True

    def __post_init__(self) -> None:
        if self.dim is not None and (isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1):
            raise InvalidInput(f"dim must be a positive number of dimensions or None (no projection), got {self.dim!r}")
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 4:
                raise InvalidInput(f"{name} must be a whole number of tokens >= 4, got {value!r}")
        if not self.query_marker or not self.document_marker or self.query_marker == self.document_marker:
            raise InvalidInput("query_marker and document_marker must be two different, non-empty tokens")

    def tokenizer_options(self) -> dict[str, Any]:
        """The keyword arguments of `ColBERTTokenizer` this config sets."""
        return {name: value for name, value in asdict(self).items() if name != "dim"}


@dataclass(frozen=True)
class PolyConfig:
    """Codes, lengths and the document vector's pooling of a Poly-encoder (m = 16 codes by default).

    `document_pooling` "mean" by default: the paper takes the first output token ("cls"), but the trainable
    backbone bicross ships (all-MiniLM-L6-v2) was trained with mean pooling, and the tests' tiny random backbone
    learned its six planted pairs through the mean in 15 epochs (6 of 6 first) but not through [CLS] in 25 (4 of 6).

    `code_init_std` None draws the codes from N(0, 1/hidden), ParlAI's initialisation, so their dot products
    with token states start on the states' scale.
    """

    codes: int = 16
    query_length: int = 64
    document_length: int = 256
    document_pooling: Literal["cls", "mean"] = "mean"
    code_init_std: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.codes, bool) or not isinstance(self.codes, int) or self.codes < 1:
            raise InvalidInput(f"codes must be a positive whole number (m context codes), got {self.codes!r}")
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise InvalidInput(f"{name} must be a whole number of tokens >= 2, got {value!r}")
        if self.document_pooling not in ("cls", "mean"):
            raise InvalidInput(f"document_pooling must be 'cls' or 'mean', got {self.document_pooling!r}")
        if self.code_init_std is not None and not (math.isfinite(self.code_init_std) and self.code_init_std > 0):
            raise InvalidInput(f"code_init_std must be a finite number > 0 or None, got {self.code_init_std!r}")


def config_from_dict(kind: type[ColBERTConfig] | type[PolyConfig], values: dict[str, Any],
                     source: str) -> ColBERTConfig | PolyConfig:
    """Build a config from saved values, refusing keys this bicross does not know (a newer format)."""
    known = {field.name for field in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(f"{source} has settings this bicross does not know ({', '.join(unknown)}); upgrade bicross "
                           "or save the model again with this version")
    return kind(**values)
