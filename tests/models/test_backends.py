"""Backends: dtype choice, runtime selection errors, and what the torch backend returns."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bicross.models.backends as backends
from bicross.errors import InvalidInput, ModelNotFound
from bicross.models.backends import TorchBackend, load_backend, resolve_dtype

BATCH = {
    "input_ids": np.array([[2, 10, 11, 3, 0], [2, 12, 13, 14, 3]], dtype=np.int64),
    "attention_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=np.int64),
    "token_type_ids": np.zeros((2, 5), dtype=np.int64),
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_explicit_dtype_passes_through(dtype: str) -> None:
    assert resolve_dtype(dtype) == dtype  # type: ignore[arg-type]


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_follows_cpu_bf16_support(monkeypatch: pytest.MonkeyPatch, native_bf16: bool,
                                             expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backends, "_cpu_has_native_bf16", lambda: native_bf16)
    assert resolve_dtype("auto") == expected


def test_onnx_backend_without_model_onnx_is_model_not_found(tiny_encoder_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no model.onnx in"):
        load_backend(tiny_encoder_path, "encoder", backend="onnx")


def test_unknown_backend_name_is_invalid_input(tiny_encoder_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown backend 'tensorflow'"):
        load_backend(tiny_encoder_path, "encoder", backend="tensorflow")  # type: ignore[arg-type]


def test_folder_without_any_weights_is_model_not_found(tmp_path: Path, tiny_encoder_path: Path) -> None:
    shutil.copy(tiny_encoder_path / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelNotFound, match="no model.onnx"):
        load_backend(tmp_path, "encoder")  # auto falls back to ONNX when there are no PyTorch weights
    with pytest.raises(ModelNotFound, match="no PyTorch weights"):
        load_backend(tmp_path, "encoder", backend="torch")


def test_torch_encoder_returns_float32_token_states(tiny_encoder_path: Path) -> None:
    backend = load_backend(tiny_encoder_path, "encoder", backend="torch", dtype="float32")
    assert (backend.name, backend.dtype) == ("torch", "float32")
    states = backend.forward(BATCH)
    assert states.shape == (2, 5, 32) and states.dtype == torch.float32
    # the padded first row gives the same states on its real tokens as the row run alone, unpadded
    alone = backend.forward({key: value[:1, :4] for key, value in BATCH.items()})
    torch.testing.assert_close(states[:1, :4], alone, atol=1e-5, rtol=1e-5)


def test_bfloat16_autocast_stays_close_to_float32(tiny_encoder_path: Path) -> None:
    full = load_backend(tiny_encoder_path, "encoder", backend="torch", dtype="float32").forward(BATCH)
    half = load_backend(tiny_encoder_path, "encoder", backend="torch", dtype="bfloat16").forward(BATCH)
    assert half.dtype == torch.float32  # outputs are always handed back as float32
    cosine = torch.nn.functional.cosine_similarity(full.flatten(1), half.flatten(1))
    assert cosine.min().item() > 0.99


def test_torch_classifier_returns_logits(tiny_cross_encoder_path: Path) -> None:
    logits = load_backend(tiny_cross_encoder_path, "classifier", backend="torch", dtype="float32").forward(BATCH)
    assert logits.shape == (2, 1) and logits.dtype == torch.float32


class _NoTokenTypes(torch.nn.Module):
    """A model whose forward does not take token_type_ids (like DistilBERT)."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=(input_ids * attention_mask).float().unsqueeze(-1))


def test_torch_backend_drops_token_type_ids_for_models_without_them() -> None:
    states = TorchBackend(_NoTokenTypes()).forward(BATCH)
    assert states[:, :, 0].tolist() == [[2, 10, 11, 3, 0], [2, 12, 13, 14, 3]]


@pytest.mark.parametrize(("invariant", "requested", "expected"), [(True, None, 32), (False, None, 1), (False, 8, 8)])
def test_batch_size_defaults_to_one_only_where_batching_changes_outputs(invariant: bool, requested: int | None,
                                                                         expected: int) -> None:
    backend = SimpleNamespace(batch_invariant=invariant)
    assert backends.batch_size_for(backend, requested) == expected  # type: ignore[arg-type]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="batch_size must be positive"):
        backends.batch_size_for(SimpleNamespace(batch_invariant=True), 0)  # type: ignore[arg-type]


def test_torch_backend_is_batch_invariant(tiny_encoder_path: Path) -> None:
    assert load_backend(tiny_encoder_path, "encoder", "torch", "float32").batch_invariant


def test_loading_draws_no_weights_bar_and_restores_the_setting(tiny_encoder_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as transformers_logging

    assert transformers_logging.is_progress_bar_enabled()
    load_backend(tiny_encoder_path, "encoder", "torch", "float32")
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()
