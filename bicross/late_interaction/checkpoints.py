"""Late-interaction model folders: bicross writes PyLate's layout; it reads that, PyLate's and Stanford ColBERT's.

ColBERT, as saved by bicross (`write_colbert`):

    config.json, model.safetensors, tokenizer files   the backbone (transformers `save_pretrained`)
    modules.json                                      Transformer + pylate.models.Dense.Dense (1_Dense)
    1_Dense/config.json, 1_Dense/model.safetensors    the projection, `linear.weight` (dim, hidden), no bias
    config_sentence_transformers.json                 PyLate's query/document prefixes, lengths, skiplist
    late_interaction.json                             bicross's settings, exactly ({"kind": "colbert", ...})

Read (`read_colbert`): that folder; a PyLate checkpoint (the same layout without late_interaction.json,
settings from config_sentence_transformers.json); a Stanford ColBERT checkpoint (`artifact.metadata` beside a
transformers folder whose weights hold `linear.weight` next to the `bert.` backbone). Shortcuts: PyLate
checkpoints with more than one Dense module, an activation or a bias (ColBERT's projection has none), or
ColBERT v2 residual compression files are refused with a message, not guessed at.

Poly-encoder (`write_poly`): the backbone at the root (a separate document backbone in `document/`), the
codes in `poly_codes.safetensors` (`codes`, (m, hidden)), and late_interaction.json ({"kind": "poly", ...}).

Saving goes through `atomic_folder`: everything is written into a sibling staging folder, which then replaces
the target in one rename, so an interrupted save leaves the previous model (as bicross.training.models does;
the core cannot import the training room, hence a copy of its 20 lines here).
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from bicross.errors import InvalidInput, ModelNotFound
from bicross.late_interaction.config import ColBERTConfig, PolyConfig, config_from_dict
from bicross.models.resolve import resolve_model
from bicross.models.saving import atomic_folder

__all__ = ["SETTINGS_FILE", "ColBERTCheckpoint", "PolyCheckpoint", "atomic_folder", "has_colbert_settings",
           "quiet_from_pretrained", "read_colbert", "read_kind", "read_poly", "torch_model_folder", "write_colbert", "write_poly"]

SETTINGS_FILE = "late_interaction.json"
FORMAT_VERSION = 1
CODES_FILE = "poly_codes.safetensors"
_DENSE = "1_Dense"


@dataclass(frozen=True)
class ColBERTCheckpoint:
    """Where a ColBERT model's backbone is, its settings, its projection, and which layout it came in."""

    folder: Path
    config: ColBERTConfig
    projection: torch.Tensor | None  # (dim, hidden); None: the backbone's states are used as they are
    layout: Literal["bicross", "pylate", "stanford"]


@dataclass(frozen=True)
class PolyCheckpoint:
    """A Poly-encoder's backbone folder(s), settings and codes."""

    folder: Path
    config: PolyConfig
    codes: torch.Tensor  # (m, hidden)
    document_folder: Path | None  # a separate document backbone, or None (shared)


def read_kind(folder: Path) -> Literal["colbert", "poly"] | None:
    """The kind recorded in a bicross late-interaction folder, or None for any other folder."""
    settings = _read_settings(folder)
    return None if settings is None else settings["kind"]


def has_colbert_settings(folder: Path) -> bool:
    """Whether `folder` says how to run it as ColBERT (bicross's settings, PyLate's or Stanford's metadata)."""
    folder = Path(folder)
    pylate = _json(folder / "config_sentence_transformers.json")
    return (folder / SETTINGS_FILE).is_file() or (pylate is not None and "query_prefix" in pylate) \
        or (folder / "artifact.metadata").is_file()


def read_colbert(folder: Path) -> ColBERTCheckpoint:
    """Read a bicross, PyLate or Stanford ColBERT folder (see the module notes)."""
    folder = Path(folder)
    settings = _read_settings(folder)
    if settings is not None:
        if settings["kind"] != "colbert":
            raise InvalidInput(f"{folder} holds a {settings['kind']} model, not ColBERT: load it with PolyEncoder.load "
                               "or as poly:DIR")
        config = config_from_dict(ColBERTConfig, settings["config"], str(folder / SETTINGS_FILE))
        projection = _read_dense(folder) if config.dim is not None else None
        return ColBERTCheckpoint(folder, config, projection, "bicross")  # type: ignore[arg-type]
    pylate = _json(folder / "config_sentence_transformers.json")
    if pylate is not None and "query_prefix" in pylate:
        return ColBERTCheckpoint(folder, _pylate_config(folder, pylate), _read_dense(folder), "pylate")
    metadata = _json(folder / "artifact.metadata")
    if metadata is not None:
        return _stanford(folder, metadata)
    raise InvalidInput(f"{folder} is no ColBERT checkpoint: it has no {SETTINGS_FILE} (bicross), no "
                       "config_sentence_transformers.json with query_prefix (PyLate) and no artifact.metadata "
                       "(Stanford ColBERT); to start from a plain transformers backbone use ColBERT.from_backbone")


def write_colbert(staging: Path, backbone: torch.nn.Module, hf_tokenizer: Any, config: ColBERTConfig,
                  projection: torch.Tensor | None) -> None:
    """Write a ColBERT model into `staging` (an `atomic_folder` staging folder) in the layout above."""
    from safetensors.torch import save_file

    backbone.save_pretrained(str(staging))
    hf_tokenizer.save_pretrained(str(staging))
    hidden = int(backbone.config.hidden_size)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    if projection is not None:
        modules.append({"idx": 1, "name": "1", "path": _DENSE, "type": "pylate.models.Dense.Dense"})
        (staging / _DENSE).mkdir()
        (staging / _DENSE / "config.json").write_text(json.dumps(
            {"in_features": hidden, "out_features": int(projection.shape[0]), "bias": False,
             "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": projection.detach().float().contiguous().cpu()},
                  str(staging / _DENSE / "model.safetensors"))
    (staging / "modules.json").write_text(json.dumps(modules, indent=2))
    (staging / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": config.document_length - 1,
                                                                   "do_lower_case": False}))
    skiplist = list(string.punctuation) if config.skip_punctuation else []
    (staging / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "ColBERT", "similarity_fn_name": "MaxSim", "prompts": {}, "default_prompt_name": None,
        "query_prefix": config.query_marker, "document_prefix": config.document_marker,
        "query_length": config.query_length, "document_length": config.document_length,
        "attend_to_expansion_tokens": config.attend_to_expansion, "do_query_expansion": True,
        "skiplist_words": skiplist}, indent=2))
    _write_settings(staging, "colbert", asdict(config))


def read_poly(folder: Path) -> PolyCheckpoint:
    """Read a Poly-encoder folder written by `write_poly`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    settings = _read_settings(folder)
    if settings is None or settings["kind"] != "poly":
        what = "no late-interaction settings" if settings is None else f"a {settings['kind']} model"
        raise InvalidInput(f"{folder} holds {what}, not a Poly-encoder; train one (bicross.training."
                           "late_interaction_steps) or build one with PolyEncoder.from_backbone")
    config = config_from_dict(PolyConfig, settings["config"], str(folder / SETTINGS_FILE))
    if not (folder / CODES_FILE).is_file():
        raise ModelNotFound(f"{folder} has no {CODES_FILE} (the Poly-encoder's codes); save the model again")
    codes = load_file(str(folder / CODES_FILE))["codes"]
    if tuple(codes.shape)[:1] != (config.codes,):  # type: ignore[attr-defined]
        raise InvalidInput(f"{folder / CODES_FILE} holds {codes.shape[0]} codes, its settings say {config.codes}")  # type: ignore[attr-defined]
    document = folder / "document"
    return PolyCheckpoint(folder, config, codes, document if (document / "config.json").is_file() else None)  # type: ignore[arg-type]


def write_poly(staging: Path, backbone: torch.nn.Module, hf_tokenizer: Any, config: PolyConfig,
               codes: torch.Tensor, document_backbone: torch.nn.Module | None = None) -> None:
    """Write a Poly-encoder into `staging` (an `atomic_folder` staging folder)."""
    from safetensors.torch import save_file

    backbone.save_pretrained(str(staging))
    hf_tokenizer.save_pretrained(str(staging))
    if document_backbone is not None:
        document_backbone.save_pretrained(str(staging / "document"))
        hf_tokenizer.save_pretrained(str(staging / "document"))
    save_file({"codes": codes.detach().float().contiguous().cpu()}, str(staging / CODES_FILE))
    _write_settings(staging, "poly", asdict(config))


def torch_model_folder(name_or_path: str, hint: str) -> Path:
    """The local folder of `name_or_path` (hub id, packaged copy or path); it must hold PyTorch weights."""
    resolved = resolve_model(name_or_path)
    if not any((resolved.path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise ModelNotFound(f"{name_or_path} ({resolved.path}) has no PyTorch weights; {hint}")
    return resolved.path


def quiet_from_pretrained(loader: Any, folder: Path, **options: Any) -> Any:
    """`loader.from_pretrained(folder)` without transformers' per-load progress bar (put back as it was)."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(str(folder), **options)
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _write_settings(folder: Path, kind: str, config: dict[str, Any]) -> None:
    (folder / SETTINGS_FILE).write_text(json.dumps({"kind": kind, "format_version": FORMAT_VERSION, "config": config},
                                                   indent=2) + "\n")


def _read_settings(folder: Path) -> dict[str, Any] | None:
    settings = _json(folder / SETTINGS_FILE)
    if settings is None:
        return None
    if settings.get("kind") not in ("colbert", "poly") or not isinstance(settings.get("config"), dict):
        raise InvalidInput(f"{folder / SETTINGS_FILE} is not a bicross late-interaction settings file (kind colbert "
                           "or poly, and a config); save the model again")
    if settings.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(f"{folder / SETTINGS_FILE} has format version {settings.get('format_version')}, this "
                           f"bicross reads {FORMAT_VERSION}; upgrade bicross or save the model again")
    return settings


def _json(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{file} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{file} must hold a JSON object")
    return value


def _read_dense(folder: Path) -> torch.Tensor:
    """The projection (dim, hidden) of a PyLate-layout folder's single Dense module."""
    modules = _json_list(folder / "modules.json")
    dense = [module for module in modules if str(module.get("type", "")).endswith("Dense")]
    if len(dense) != 1 or len(modules) != 2:
        raise InvalidInput(f"{folder / 'modules.json'} must list a Transformer and one Dense module (ColBERT's "
                           f"projection), found {[module.get('type') for module in modules]}")
    path = folder / str(dense[0].get("path", _DENSE))
    settings = _json(path / "config.json") or {}
    activation = str(settings.get("activation_function", "torch.nn.modules.linear.Identity"))
    if settings.get("bias") or not activation.endswith("Identity"):
        raise InvalidInput(f"{path} has a bias or an activation ({activation}); only ColBERT's plain linear "
                           "projection is supported")
    weight = _tensor(path, "linear.weight")
    if weight is None:
        raise ModelNotFound(f"{path} holds no linear.weight (model.safetensors or pytorch_model.bin)")
    return weight.float()


def _json_list(file: Path) -> list[dict[str, Any]]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInput(f"cannot read {file} ({error}); a ColBERT folder in PyLate's layout needs it") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidInput(f"{file} must hold a JSON list of modules")
    return value


def _pylate_config(folder: Path, settings: dict[str, Any]) -> ColBERTConfig:
    dense = _json(folder / _DENSE / "config.json") or {}
    return ColBERTConfig(
        dim=int(dense["out_features"]) if "out_features" in dense else 128,
        query_length=int(settings.get("query_length") or 32),
        document_length=int(settings.get("document_length") or 180),
        query_marker=str(settings["query_prefix"]),
        document_marker=str(settings.get("document_prefix") or "[D] "),
        attend_to_expansion=bool(settings.get("attend_to_expansion_tokens", False)),
        skip_punctuation=bool(settings.get("skiplist_words", list(string.punctuation))),
    )


def _stanford(folder: Path, metadata: dict[str, Any]) -> ColBERTCheckpoint:
    weight = _tensor(folder, "linear.weight")
    if weight is None:
        raise ModelNotFound(f"{folder} has artifact.metadata but its weights hold no linear.weight (ColBERT's "
                            "projection); pass the checkpoint folder that ColBERT's trainer wrote")
    config = ColBERTConfig(
        dim=int(weight.shape[0]),
        query_length=int(metadata.get("query_maxlen", 32)),
        document_length=int(metadata.get("doc_maxlen", 180)),
        query_marker=str(metadata.get("query_token_id", "[unused0]")),
        document_marker=str(metadata.get("doc_token_id", "[unused1]")),
        attend_to_expansion=bool(metadata.get("attend_to_mask_tokens", False)),
        skip_punctuation=bool(metadata.get("mask_punctuation", True)),
    )
    return ColBERTCheckpoint(folder, config, weight.float(), "stanford")


def _tensor(folder: Path, name: str) -> torch.Tensor | None:
    """One tensor from a folder's model.safetensors (read lazily) or pytorch_model.bin, or None."""
    safetensors_file = folder / "model.safetensors"
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as handle:
            return handle.get_tensor(name) if name in handle.keys() else None
    bin_file = folder / "pytorch_model.bin"
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True).get(name)
    return None
