"""Trainable PyTorch models behind the bi-encoder and cross-encoder, and saving them in formats others read.

`TrainableBiEncoder` holds one shared tower (or two: `document_model=`) plus pooling and normalization
read from the checkpoint exactly as `BiEncoder` reads them, so the trained model embeds the same way when
loaded for search. It saves in the sentence-transformers folder layout (modules.json, 1_Pooling,
2_Normalize, sentence_bert_config.json, config_sentence_transformers.json with prompts and similarity):
`SentenceTransformer(path)` and `BiEncoder.load(path)` both read it; a separate document tower goes to
`document/`, which `from_pretrained(path)` and `BiEncoder.load(path)` pick up. With `pooling="learned"` the
model owns one trainable pooling vector for both towers (zeros at first: mean pooling), saved as
`1_Pooling/learned_pooling.safetensors`; sentence-transformers reads that through bicross's own module
(bicross.training.st_pooling, `SentenceTransformer(path, trust_remote_code=True)`). `TrainableCrossEncoder` is a
sequence-classification model saved in the Hugging Face layout that ST's `CrossEncoder(path)` reads.
Saving writes into a sibling temporary folder and renames it into place: an interrupted save leaves the
previous model, never half a folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from bicross.errors import InvalidInput, ModelNotFound
from bicross.models.pooling import pool
from bicross.models.resolve import resolve_model
from bicross.models.saving import atomic_folder
from bicross.models.settings import (
    EncoderSettings,
    learned_pooling_config,
    read_encoder_settings,
    read_pooling_weight,
    write_encoder_settings,
    write_pooling_weight,
)

__all__ = ["TrainableBiEncoder", "TrainableCrossEncoder", "atomic_folder"]

_POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens",
                 "weighted_mean": "pooling_mode_weightedmean_tokens"}
_LEARNED_POOLING_MODULE = "bicross.training.st_pooling.LearnedPooling"  # imported by sentence-transformers only


def _transformers_folder(name_or_path: str) -> Path:
    resolved = resolve_model(name_or_path)
    if not any((resolved.path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise ModelNotFound(f"{name_or_path} ({resolved.path}) has no PyTorch weights to train; pass a transformers "
                            "checkpoint (for the packaged int8 reranker use cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch)")
    return resolved.path


def _quiet_load(loader: Any, folder: Path, **options: Any) -> Any:
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(str(folder), **options)
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


class TrainableBiEncoder(torch.nn.Module):
    """Query and document towers (one shared by default) with the checkpoint's pooling, normalization, prefixes."""

    def __init__(self, query_model: torch.nn.Module, tokenizer: Any, settings: EncoderSettings, base: str,
                 document_model: torch.nn.Module | None = None, pooling_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.query_model = query_model
        self.document_model = document_model  # None: the query tower encodes documents too
        self.tokenizer = tokenizer
        self.settings = settings
        self.base = base
        # (hidden,) for pooling="learned", shared by both towers; None (no parameter) for other poolings
        self.register_parameter("pooling_weight", _pooling_parameter(settings, query_model, document_model,
                                                                     pooling_weight))

    @classmethod
    def from_pretrained(cls, name_or_path: str, document_model: str | None = None,
                        **overrides: Any) -> TrainableBiEncoder:
        """Load a transformers/sentence-transformers checkpoint; `overrides` are EncoderSettings fields.

        A bicross save's `document/` tower is loaded unless `document_model` names another. A folder saved
        with learned pooling resumes from its vector; switching a model to "learned" starts at zero (mean).
        """
        from transformers import AutoModel, AutoTokenizer

        folder = _transformers_folder(name_or_path)
        stored = read_encoder_settings(folder, dict(resolve_model(name_or_path).settings))
        settings = stored.updated(**overrides)
        weight = read_pooling_weight(folder) if settings.pooling == stored.pooling == "learned" else None
        documents_folder = _document_folder(folder, document_model)
        documents = None if documents_folder is None else _quiet_load(AutoModel, documents_folder)
        return cls(_quiet_load(AutoModel, folder), AutoTokenizer.from_pretrained(str(folder)), settings, name_or_path,
                   documents, weight)

    def tokenize(self, texts: Sequence[str], kind: Literal["query", "document"]) -> dict[str, torch.Tensor]:
        """Padded token tensors for `texts`, with the kind's prefix, cut to max_length."""
        prefix = self.settings.query_prefix if kind == "query" else self.settings.document_prefix
        return dict(self.tokenizer([prefix + text for text in texts], padding=True, truncation=True,
                                   max_length=self.settings.max_length, return_tensors="pt"))

    def forward(self, batch: dict[str, torch.Tensor], kind: Literal["query", "document"] = "query") -> torch.Tensor:
        """Embeddings `(batch, dim)` of a tokenized batch, pooled and (if the model normalizes) unit length."""
        tower = self.document_model if kind == "document" and self.document_model is not None else self.query_model
        states = tower(**batch).last_hidden_state  # (batch, seq, hidden)
        vectors = pool(states, batch["attention_mask"], self.settings.pooling, self.pooling_weight)
        return torch.nn.functional.normalize(vectors, dim=-1) if self.settings.normalize else vectors

    def save(self, folder: str | Path, card: str = "") -> Path:
        """Write a sentence-transformers folder (a `document/` subfolder holds a separate document tower)."""
        with atomic_folder(folder) as staging:
            self._save_tower(self.query_model, staging)
            if self.document_model is not None:
                self._save_tower(self.document_model, staging / "document")
            if card:
                (staging / "README.md").write_text(card, encoding="utf-8")
        return Path(folder)

    def _save_tower(self, model: torch.nn.Module, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        settings, dim = self.settings, int(model.config.hidden_size)
        pooling_type = "sentence_transformers.models.Pooling" if self.pooling_weight is None else _LEARNED_POOLING_MODULE
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": pooling_type}]
        if settings.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (folder / "2_Normalize").mkdir(exist_ok=True)
        (folder / "modules.json").write_text(json.dumps(modules, indent=2))
        self._save_pooling(folder / "1_Pooling", dim)
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": settings.max_length,
                                                                      "do_lower_case": False}))
        prompts = {key: value for key, value in (("query", settings.query_prefix), ("document", settings.document_prefix))
                   if value}
        (folder / "config_sentence_transformers.json").write_text(json.dumps(
            {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": settings.similarity}, indent=2))
        write_encoder_settings(folder, settings)  # bicross.json: the settings exactly, whatever ST can express

    def _save_pooling(self, folder: Path, dim: int) -> None:
        folder.mkdir(exist_ok=True)
        if self.pooling_weight is None:
            config = {"word_embedding_dimension": dim,
                      **{key: name == self.settings.pooling for name, key in _POOLING_KEYS.items()}}
        else:
            config = learned_pooling_config(dim)
            write_pooling_weight(folder, self.pooling_weight)
        (folder / "config.json").write_text(json.dumps(config, indent=2))


def _pooling_parameter(settings: EncoderSettings, query_model: torch.nn.Module,
                       document_model: torch.nn.Module | None, start: torch.Tensor | None) -> torch.nn.Parameter | None:
    """The learned-pooling vector as a Parameter (zeros unless `start` is given); None for other poolings."""
    if settings.pooling != "learned":
        return None
    hidden = int(query_model.config.hidden_size)
    if document_model is not None and int(document_model.config.hidden_size) != hidden:
        raise InvalidInput(f"learned pooling shares one vector between the towers, but the query tower has hidden "
                           f"size {hidden} and the document tower {document_model.config.hidden_size}: use towers "
                           "of one size or another pooling")
    weight = torch.zeros(hidden) if start is None else start.detach().float().clone()
    if tuple(weight.shape) != (hidden,):
        raise InvalidInput(f"learned pooling weight has shape {tuple(weight.shape)}, the towers need ({hidden},)")
    return torch.nn.Parameter(weight)


def _document_folder(folder: Path, document_model: str | None) -> Path | None:
    """The separate document tower: `document_model` if given, else a bicross save's `document/`, else none."""
    if document_model is not None:
        return _transformers_folder(document_model)
    if (folder / "document" / "config.json").is_file():
        return _transformers_folder(str(folder / "document"))
    return None


class TrainableCrossEncoder(torch.nn.Module):
    """A sequence-classification model scoring (query, document) pairs: one logit, or `num_labels` classes."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_length: int, base: str) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.base = base

    @classmethod
    def from_pretrained(cls, name_or_path: str, num_labels: int = 1, max_length: int = 256) -> TrainableCrossEncoder:
        """A checkpoint with its classification head, or a BERT-like encoder with a new head (`num_labels`)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        folder = _transformers_folder(name_or_path)
        config = AutoConfig.from_pretrained(str(folder))
        has_head = any(arch.endswith("ForSequenceClassification") for arch in (config.architectures or []))
        if has_head and config.num_labels != num_labels:
            raise InvalidInput(f"{name_or_path} has a {config.num_labels}-label head, not {num_labels}; "
                               "pass num_labels to match or start from a checkpoint without a head")
        model = _quiet_load(AutoModelForSequenceClassification, folder, num_labels=num_labels)
        return cls(model, AutoTokenizer.from_pretrained(str(folder)), max_length, name_or_path)

    def tokenize(self, queries: Sequence[str], documents: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded pair tensors; the document is cut first so the query survives."""
        return dict(self.tokenizer(list(queries), list(documents), padding=True, truncation="only_second",
                                   max_length=self.max_length, return_tensors="pt"))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits `(batch,)` for one-label models, `(batch, labels)` otherwise."""
        logits = self.model(**batch).logits
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def save(self, folder: str | Path, card: str = "") -> Path:
        """Write a Hugging Face sequence-classification folder (what ST's CrossEncoder(path) loads)."""
        with atomic_folder(folder) as staging:
            self.model.save_pretrained(str(staging))
            self.tokenizer.save_pretrained(str(staging))
            (staging / "bicross.json").write_text(json.dumps({"max_length": self.max_length}) + "\n")
            if card:
                (staging / "README.md").write_text(card, encoding="utf-8")
        return Path(folder)
