"""bicross's learned pooling as a sentence-transformers module, so ST loads models trained with it.

`TrainableBiEncoder.save` names this class in modules.json ("bicross.training.st_pooling.LearnedPooling").
Sentence-transformers 6 imports a module class from outside its own package only when trusted, so load with
`SentenceTransformer(path, trust_remote_code=True)` (and bicross installed). The math is bicross's
`learned_pooling`; the files are the ones bicross reads (`config.json` and `learned_pooling.safetensors` in
the pooling folder). Only sentence-transformers imports this file: bicross itself never does, so the core
does not depend on sentence-transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bicross.models.pooling import learned_pooling
from bicross.models.settings import (
    LEARNED_POOLING_WEIGHTS,
    learned_pooling_config,
    read_pooling_weight_file,
    write_pooling_weight,
)

try:  # sentence-transformers >= 6
    from sentence_transformers.base.modules import Module
except ImportError:  # 5.x
    from sentence_transformers.models import Module

__all__ = ["LearnedPooling"]


class LearnedPooling(Module):
    """Token embeddings -> sentence embedding, weighted by softmax(token_states @ weight) over real tokens."""

    config_keys = ["word_embedding_dimension"]

    def __init__(self, word_embedding_dimension: int, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.word_embedding_dimension = word_embedding_dimension
        start = torch.zeros(word_embedding_dimension) if weight is None else weight
        self.weight = torch.nn.Parameter(start.float())  # (hidden,); zeros: mean pooling

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Add `sentence_embedding (batch, hidden)` pooled from `token_embeddings` and `attention_mask`."""
        states = features["token_embeddings"]  # (batch, seq, hidden)
        mask = features.get("attention_mask")
        mask = torch.ones(states.shape[:2], device=states.device, dtype=torch.long) if mask is None else mask
        features["sentence_embedding"] = learned_pooling(states, mask, self.weight)
        return features

    def get_embedding_dimension(self) -> int:
        """Output size: pooling keeps the hidden size."""
        return self.word_embedding_dimension

    get_sentence_embedding_dimension = get_embedding_dimension  # the name sentence-transformers 5 asks for

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write config.json and the weight file exactly as `TrainableBiEncoder.save` does."""
        import json

        folder = Path(output_path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(learned_pooling_config(self.word_embedding_dimension), indent=2))
        write_pooling_weight(folder, self.weight)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> LearnedPooling:
        """Read the pooling folder (local or on the hub) that `save` or bicross wrote."""
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        dim = int(cls.load_config(model_name_or_path, **hub)["word_embedding_dimension"])
        folder = Path(cls.load_dir_path(model_name_or_path, **hub))
        return cls(dim, read_pooling_weight_file(folder / LEARNED_POOLING_WEIGHTS, dim))
