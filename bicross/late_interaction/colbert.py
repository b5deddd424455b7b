"""ColBERT (Khattab & Zaharia 2020): one unit vector per token, scored against another text's by MaxSim.

texts -> `ColBERTTokenizer` (markers, [MASK] query augmentation, punctuation mask) -> any transformers
encoder (`AutoModel`) -> token states `(b, t, hidden)` -> linear projection without bias to `dim` (128 by
default) -> L2 normalisation per token -> `TokenVectors` (vectors + the mask of those that count) ->
`bicross.scoring.late_interaction.maxsim`.

This is the trainable model (a `torch.nn.Module`, for `bicross.training.late_interaction_steps`); for search
wrap it (or a saved folder) in `ColBERTReranker`. `save` writes PyLate's folder layout, `load` reads that,
PyLate's and Stanford ColBERT's (see `checkpoints`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bicross.errors import InvalidInput
from bicross.late_interaction.checkpoints import (
    atomic_folder,
    quiet_from_pretrained,
    read_colbert,
    torch_model_folder,
    write_colbert,
)
from bicross.late_interaction.config import ColBERTConfig
from bicross.late_interaction.tokens import ColBERTTokenizer, Kind, TokenInputs

__all__ = ["ColBERT", "TokenVectors", "project_tokens"]

_ONNX_HINT = ("an ONNX-only backbone (the packaged answerai-colbert-small-v1) runs through ColBERTReranker.load, not "
              "as a trainable model")


@dataclass(frozen=True)
class TokenVectors:
    """Unit token vectors `(b, t, dim)` of a batch and the bool mask `(b, t)` of those that count in MaxSim."""

    vectors: torch.Tensor
    mask: torch.Tensor

    def unpadded(self) -> list[torch.Tensor]:
        """Each text's vectors that count, `(tokens_i, dim)`, in batch order."""
        return [vectors[mask] for vectors, mask in zip(self.vectors, self.mask, strict=True)]


def project_tokens(token_states: torch.Tensor, projection: torch.Tensor | None) -> torch.Tensor:
    """ColBERT's head: `(b, t, hidden)` states -> `(b, t, dim)` unit vectors (`projection` `(dim, hidden)` or None).

    >>> states = torch.tensor([[[3.0, 4.0, 1.0]]])
    >>> project_tokens(states, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])).tolist()  # drop dim 3, normalise
    [[[0.6000000238418579, 0.800000011920929]]]
    """
    vectors = token_states if projection is None else token_states @ projection.to(token_states.dtype).T
    return F.normalize(vectors, p=2, dim=-1)


class ColBERT(torch.nn.Module):
    """A transformers encoder, a projection to `config.dim` and per-token normalisation."""

    def __init__(self, backbone: torch.nn.Module, tokenizer: ColBERTTokenizer, config: ColBERTConfig,
                 projection: torch.Tensor | None = None, base: str = "") -> None:
        """`projection` `(dim, hidden)` starts the linear layer from trained weights; None draws it at random."""
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config
        self.base = base
        hidden = int(backbone.config.hidden_size)
        self.projection: torch.nn.Linear | None = None
        if config.dim is not None:
            self.projection = torch.nn.Linear(hidden, config.dim, bias=False)
            if projection is not None:
                if tuple(projection.shape) != (config.dim, hidden):
                    raise InvalidInput(f"the projection has shape {tuple(projection.shape)}, the backbone (hidden "
                                       f"{hidden}) and dim {config.dim} need ({config.dim}, {hidden})")
                with torch.no_grad():
                    self.projection.weight.copy_(projection)
        elif projection is not None:
            raise InvalidInput("a projection was given but config.dim is None (no projection); set dim to its rows")
        self._accepts_token_types = "token_type_ids" in inspect.signature(backbone.forward).parameters

    @classmethod
    def from_backbone(cls, name_or_path: str, config: ColBERTConfig | None = None) -> ColBERT:
        """A new ColBERT on a transformers encoder (`config` None: the defaults): random projection; markers missing
        from the vocabulary are added as tokens (with new embedding rows), as PyLate does for its "[Q] "/"[D] "."""
        from transformers import AutoModel, AutoTokenizer

        config = config or ColBERTConfig()
        folder = torch_model_folder(name_or_path, _ONNX_HINT)
        hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
        backbone = quiet_from_pretrained(AutoModel, folder)
        missing = [marker for marker in (config.query_marker, config.document_marker)
                   if marker not in hf_tokenizer.get_vocab()]
        if missing:
            hf_tokenizer.add_tokens(missing, special_tokens=True)
            backbone.resize_token_embeddings(len(hf_tokenizer))
        tokenizer = ColBERTTokenizer(hf_tokenizer, **config.tokenizer_options())
        return cls(backbone, tokenizer, config, base=name_or_path)

    @classmethod
    def load(cls, name_or_path: str, **overrides: Any) -> ColBERT:
        """Load a bicross, PyLate or Stanford ColBERT folder; `overrides` are ColBERTConfig fields other than
        `dim` (e.g. a longer `document_length`)."""
        from transformers import AutoModel, AutoTokenizer

        if "dim" in overrides:
            raise InvalidInput("dim is fixed by the saved projection; use ColBERT.from_backbone for another size")
        checkpoint = read_colbert(torch_model_folder(name_or_path, _ONNX_HINT))
        config = replace(checkpoint.config, **overrides)
        hf_tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.folder))
        backbone = quiet_from_pretrained(AutoModel, checkpoint.folder)
        tokenizer = ColBERTTokenizer(hf_tokenizer, **config.tokenizer_options())
        return cls(backbone, tokenizer, config, checkpoint.projection, base=name_or_path)

    @property
    def projection_weight(self) -> torch.Tensor | None:
        """The projection `(dim, hidden)`, or None when the backbone's states are used as they are."""
        return None if self.projection is None else self.projection.weight

    def forward(self, inputs: TokenInputs) -> TokenVectors:
        """Token vectors of a padded batch (from `self.tokenizer.batch`)."""
        device = next(self.backbone.parameters()).device
        feed = {name: torch.from_numpy(value).to(device) for name, value in inputs.model_inputs().items()
                if name != "token_type_ids" or self._accepts_token_types}
        states = self.backbone(**feed).last_hidden_state  # (b, t, hidden)
        vectors = project_tokens(states, self.projection_weight)  # (b, t, dim)
        return TokenVectors(vectors, torch.from_numpy(inputs.scoring_mask).to(device))

    def encode(self, texts: Sequence[str], kind: Kind) -> TokenVectors:
        """Tokenize `texts` as queries or documents and encode them as one batch."""
        return self(self.tokenizer.batch(texts, kind))

    def save(self, folder: str | Path, card: str = "") -> Path:
        """Write the model in PyLate's layout plus bicross's settings (see `checkpoints`), atomically."""
        with atomic_folder(folder) as staging:
            write_colbert(staging, self.backbone, self.tokenizer.hf, self.config, self.projection_weight)
            if card:
                (staging / "README.md").write_text(card, encoding="utf-8")
        return Path(folder)

