"""Model resolution: local folders, clear errors listing every source tried, content fingerprints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bicross.errors import ModelNotFound
from bicross.models.resolve import model_fingerprint, resolve_model


def test_local_folder_resolves_as_local(tiny_encoder_path: Path) -> None:
    resolved = resolve_model(str(tiny_encoder_path))
    assert resolved.source == "local"
    assert resolved.path == tiny_encoder_path.resolve()
    assert resolved.name == str(tiny_encoder_path)
    assert resolved.settings == {}


def test_a_file_path_is_refused(tiny_encoder_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="is a file; pass the folder"):
        resolve_model(tiny_encoder_path / "config.json")


def test_unknown_hub_id_offline_lists_every_source_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound) as error:
        resolve_model("nobody-here/no-such-model-xyz")
    message = str(error.value)
    assert "cannot find model 'nobody-here/no-such-model-xyz'" in message
    for source in ("local path", "Hugging Face cache", "packaged offline copies", "skipped: HF_HUB_OFFLINE"):
        assert source in message


def test_without_packaged_copies_they_are_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound) as error:
        resolve_model("nobody-here/no-such-model-xyz", use_packaged=False)
    assert "packaged offline copies" not in str(error.value)
    assert "Hugging Face cache" in str(error.value)


def test_missing_relative_path_is_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(tmp_path / "models" / "mine")


def test_fingerprint_depends_on_weight_content_not_location(tmp_path: Path, tiny_encoder_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_encoder_path, tmp_path / "copy"))
    original = model_fingerprint(tiny_encoder_path)
    assert model_fingerprint(copy) == original
    assert len(original) == 16
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy) != original


def test_fingerprint_changes_with_the_config(tmp_path: Path, tiny_encoder_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_encoder_path, tmp_path / "copy"))
    config = copy / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_dropout_prob": 0.5}))
    assert model_fingerprint(copy) != model_fingerprint(tiny_encoder_path)
