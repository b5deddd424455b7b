"""Read how a checkpoint wants to be used: pooling, normalization, max length, prompts, similarity.

Sources, later ones winning: defaults for a bare transformers checkpoint; a sentence-transformers folder
(modules.json, 1_Pooling/config.json, sentence_bert_config.json, config_sentence_transformers.json);
the catalog entry of a packaged copy; bicross.json (bicross's own format); explicit user arguments.

Learned pooling also has a trained vector: `1_Pooling/learned_pooling.safetensors` (one tensor, "weight",
shape `(hidden,)`, in the pooling module's folder), read and written here so training, search and the
sentence-transformers module (bicross.training.st_pooling) agree on the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from bicross.errors import InvalidInput
from bicross.models.pooling import POOLINGS
from bicross.types import Pooling, Similarity

__all__ = ["LEARNED_POOLING_WEIGHTS", "EncoderSettings", "learned_pooling_config", "read_encoder_settings",
           "read_pooling_weight", "read_pooling_weight_file", "write_encoder_settings", "write_pooling_weight"]

SETTINGS_FILE = "bicross.json"
LEARNED_POOLING_WEIGHTS = "learned_pooling.safetensors"  # inside the pooling module's folder
_SIMILARITIES = ("cosine", "dot", "euclidean")


@dataclass(frozen=True)
class EncoderSettings:
    """How texts become vectors and how vectors are compared."""

    pooling: Pooling = "mean"
    normalize: bool = False
    max_length: int = 512
    query_prefix: str = ""
    document_prefix: str = ""
    similarity: Similarity = "cosine"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise InvalidInput(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if self.similarity not in _SIMILARITIES:
            raise InvalidInput(f"unknown similarity {self.similarity!r}; choose one of {', '.join(_SIMILARITIES)}")
        if self.max_length < 2:
            raise InvalidInput(f"max_length must be at least 2 tokens, got {self.max_length}")

    def updated(self, **changes: Any) -> EncoderSettings:
        """A copy with the non-None `changes` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def read_encoder_settings(folder: Path, overrides: dict[str, Any] | None = None) -> EncoderSettings:
    """Collect the settings stored in `folder`, then apply `overrides` (e.g. from the catalog)."""
    settings = EncoderSettings().updated(**_from_sentence_transformers(folder))
    settings = settings.updated(**(overrides or {}))
    own = folder / SETTINGS_FILE
    if own.is_file():
        known = {f.name for f in fields(EncoderSettings)}
        settings = settings.updated(**{k: v for k, v in _read_json(own).items() if k in known})
    return settings


def write_encoder_settings(folder: Path, settings: EncoderSettings) -> None:
    """Store settings as bicross.json beside the weights."""
    (folder / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=2) + "\n")


def learned_pooling_config(dim: int) -> dict[str, Any]:
    """What the pooling module's config.json says for learned pooling (read back by `_pooling_config`)."""
    return {"word_embedding_dimension": dim, "pooling_mode": "learned", "weight_file": LEARNED_POOLING_WEIGHTS,
            "description": "bicross learned pooling: sum of token states weighted by softmax over the non-padding "
                           "tokens of token_states @ weight (a zero weight is mean pooling)"}


def read_pooling_weight(folder: Path) -> torch.Tensor:
    """The learned-pooling vector `(hidden,)` of the model in `folder`; InvalidInput naming the file if wrong."""
    return read_pooling_weight_file(_pooling_folder(folder) / LEARNED_POOLING_WEIGHTS, _hidden_size(folder))


def read_pooling_weight_file(file: Path, hidden: int | None) -> torch.Tensor:
    """Read one learned-pooling file; `hidden` None skips the size check (pooling checks it on the states)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        raise InvalidInput(f"the model uses pooling 'learned' but {file} is missing: save the model again with "
                           "bicross, or load it with another pooling (pooling='mean')")
    try:
        weight = load_file(str(file)).get("weight")
    except (OSError, SafetensorError) as error:
        raise InvalidInput(f"cannot read the learned pooling weight {file}: {error}") from error
    if weight is None or weight.dim() != 1 or (hidden is not None and weight.shape[0] != hidden):
        found = "no 'weight' tensor" if weight is None else f"a weight of shape {tuple(weight.shape)}"
        raise InvalidInput(f"learned pooling file {file} holds {found}, but the model needs shape "
                           f"({hidden if hidden is not None else 'hidden'},): save the model again with bicross")
    return weight.float()


def write_pooling_weight(pooling_folder: Path, weight: torch.Tensor) -> None:
    """Store the learned-pooling vector in the pooling module's folder (float32, CPU, detached)."""
    from safetensors.torch import save_file

    pooling_folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight.detach().float().cpu().contiguous()}, str(pooling_folder / LEARNED_POOLING_WEIGHTS))


def _pooling_folder(folder: Path) -> Path:
    """The pooling module's folder named in modules.json (1_Pooling when bicross saved it; ST may pick another)."""
    modules_file = folder / "modules.json"
    modules = _read_json(modules_file) if modules_file.is_file() else []
    paths = [m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")]
    return folder / (paths[0] if paths else "1_Pooling")


def _hidden_size(folder: Path) -> int | None:
    config = folder / "config.json"
    size = _read_json(config).get("hidden_size") if config.is_file() else None
    return size if isinstance(size, int) else None


def _from_sentence_transformers(folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = _read_json(modules_file)
        types = [m.get("type", "") for m in modules]
        found["normalize"] = any(t.endswith("Normalize") for t in types)
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                found.update(_pooling_config(folder / module.get("path", "")))
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        max_length = _read_json(config).get("max_seq_length")
        if max_length:
            found["max_length"] = int(max_length)
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        data = _read_json(st_config)
        prompts = data.get("prompts") or {}
        found["query_prefix"] = prompts.get("query", None)
        found["document_prefix"] = prompts.get("document", prompts.get("passage", None))
        if data.get("similarity_fn_name") in {"cosine", "dot", "euclidean"}:
            found["similarity"] = data["similarity_fn_name"]
    return found


def _pooling_config(folder: Path) -> dict[str, Any]:
    file = folder / "config.json"
    if not file.is_file():
        return {}
    data = _read_json(file)
    if data.get("pooling_mode") == "learned":  # bicross's own module (bicross.training.st_pooling)
        return {"pooling": "learned"}
    for key, pooling in (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                         ("pooling_mode_max_tokens", "max"), ("pooling_mode_weightedmean_tokens", "weighted_mean")):
        if data.get(key):
            return {"pooling": pooling}
    return {}


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"cannot read model settings {file}: {error}") from error
