"""Poly-encoder (Humeau et al. 2020): m learned codes read the query; the document stays one stored vector.

query -> transformers encoder -> token states `(b, t, hidden)` -> `code_attention` with the m codes ->
context vectors `(b, m, hidden)`.
document -> encoder (the same one, or a separate `document_backbone`) -> pooled vector `(hidden,)` (mean by
default, [CLS] as in the paper with `document_pooling="cls"`) -> can be computed once and stored (a
`TokenStore` with one vector per document).
score = `poly_scores(context, documents)`: the document's vector attends over the m context vectors, and the
mix is dotted with it (`bicross.scoring.late_interaction`).

Trainable model (`torch.nn.Module`); for search wrap it (or a saved folder) in `PolyReranker`. The codes are
ParlAI's "learnt codes" variant (not the first m token outputs).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bicross.errors import InvalidInput
from bicross.late_interaction.checkpoints import (
    atomic_folder,
    quiet_from_pretrained,
    read_poly,
    torch_model_folder,
    write_poly,
)
from bicross.late_interaction.config import PolyConfig
from bicross.late_interaction.tokens import Kind
from bicross.models.pooling import pool
from bicross.scoring.late_interaction import code_attention, poly_scores

__all__ = ["PolyEncoder"]


class PolyEncoder(torch.nn.Module):
    """A transformers encoder with m learned context codes (query side) and a pooled document vector."""

    def __init__(self, backbone: torch.nn.Module, tokenizer: Any, config: PolyConfig, codes: torch.Tensor | None = None,
                 document_backbone: torch.nn.Module | None = None, base: str = "") -> None:
        """`codes` `(m, hidden)` resumes trained codes; None draws them (see `PolyConfig.code_init_std`)."""
        super().__init__()
        self.backbone = backbone
        self.document_backbone = document_backbone  # None: the backbone encodes documents too
        self.tokenizer = tokenizer
        self.config = config
        self.base = base
        hidden = int(backbone.config.hidden_size)
        if document_backbone is not None and int(document_backbone.config.hidden_size) != hidden:
            raise InvalidInput(f"the document backbone has hidden size {document_backbone.config.hidden_size}, the "
                               f"query backbone {hidden}: the score is their dot product, use one size")
        if codes is None:
            std = config.code_init_std or 1 / math.sqrt(hidden)
            codes = torch.randn(config.codes, hidden) * std
        if tuple(codes.shape) != (config.codes, hidden):
            raise InvalidInput(f"codes have shape {tuple(codes.shape)}, expected ({config.codes}, {hidden})")
        self.codes = torch.nn.Parameter(codes.detach().float().clone())  # (m, hidden)

    @classmethod
    def from_backbone(cls, name_or_path: str, config: PolyConfig | None = None,
                      separate_document_backbone: bool = False) -> PolyEncoder:
        """A new Poly-encoder on a transformers encoder (random codes, `config` None: the defaults); optionally a
        second copy of the encoder for documents."""
        from transformers import AutoModel, AutoTokenizer

        config = config or PolyConfig()
        folder = torch_model_folder(name_or_path, "a Poly-encoder is built on a PyTorch backbone")
        backbone = quiet_from_pretrained(AutoModel, folder)
        document = quiet_from_pretrained(AutoModel, folder) if separate_document_backbone else None
        return cls(backbone, AutoTokenizer.from_pretrained(str(folder)), config, document_backbone=document,
                   base=name_or_path)

    @classmethod
    def load(cls, name_or_path: str) -> PolyEncoder:
        """Load a folder written by `save`."""
        from transformers import AutoModel, AutoTokenizer

        checkpoint = read_poly(torch_model_folder(name_or_path, "a Poly-encoder is built on a PyTorch backbone"))
        document = None if checkpoint.document_folder is None else quiet_from_pretrained(AutoModel,
                                                                                           checkpoint.document_folder)
        return cls(quiet_from_pretrained(AutoModel, checkpoint.folder), AutoTokenizer.from_pretrained(str(checkpoint.folder)),
                   checkpoint.config, checkpoint.codes, document, base=name_or_path)

    def tokenize(self, texts: Sequence[str], kind: Kind) -> dict[str, torch.Tensor]:
        """Padded token tensors, cut to the kind's length."""
        from bicross.models.tokenization import check_texts

        check_texts(texts, kind)
        limit = self.config.query_length if kind == "query" else self.config.document_length
        return dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt"))

    def encode_queries(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Context vectors `(b, m, hidden)` of a tokenized query batch."""
        states = _states(self.backbone, batch)  # (b, t, hidden)
        return code_attention(self.codes, states, batch["attention_mask"])

    def encode_documents(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One vector `(b, hidden)` per document of a tokenized batch (what a store keeps)."""
        tower = self.document_backbone if self.document_backbone is not None else self.backbone
        return pool(_states(tower, batch), batch["attention_mask"], self.config.document_pooling)

    def forward(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """Scores `(queries, documents)` of every query against every document."""
        context = self.encode_queries(self.tokenize(queries, "query"))
        candidates = self.encode_documents(self.tokenize(documents, "document"))
        return poly_scores(context, candidates)

    def save(self, folder: str | Path, card: str = "") -> Path:
        """Write the backbone(s), the codes and the settings (see `checkpoints`), atomically."""
        with atomic_folder(folder) as staging:
            write_poly(staging, self.backbone, self.tokenizer, self.config, self.codes, self.document_backbone)
            if card:
                (staging / "README.md").write_text(card, encoding="utf-8")
        return Path(folder)


def _states(backbone: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(backbone.parameters()).device
    accepted = inspect.signature(backbone.forward).parameters
    feed = {name: value.to(device) for name, value in batch.items() if name in accepted}
    return backbone(**feed).last_hidden_state

