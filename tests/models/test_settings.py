"""Encoder settings read from sentence-transformers folders, catalog overrides and bicross.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.models.settings import (
    EncoderSettings,
    learned_pooling_config,
    read_encoder_settings,
    read_pooling_weight,
    write_encoder_settings,
    write_pooling_weight,
)


def _st_folder(folder: Path, *, pooling_key: str = "pooling_mode_cls_token", normalize: bool = True,
               max_seq_length: int | None = 256, st_config: dict | None = None) -> Path:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": False, pooling_key: True}))
    if max_seq_length is not None:
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    if st_config is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return folder


def test_bare_checkpoint_gets_defaults(tmp_path: Path) -> None:
    assert read_encoder_settings(tmp_path) == EncoderSettings(
        pooling="mean", normalize=False, max_length=512, query_prefix="", document_prefix="", similarity="cosine")


def test_sentence_transformers_folder_is_read(tmp_path: Path) -> None:
    _st_folder(tmp_path, st_config={"prompts": {"query": "query: ", "passage": "passage: "},
                                    "similarity_fn_name": "dot"})
    assert read_encoder_settings(tmp_path) == EncoderSettings(
        pooling="cls", normalize=True, max_length=256, query_prefix="query: ", document_prefix="passage: ",
        similarity="dot")


@pytest.mark.parametrize(("key", "pooling"), [("pooling_mode_mean_tokens", "mean"), ("pooling_mode_max_tokens", "max"),
                                              ("pooling_mode_weightedmean_tokens", "weighted_mean")])
def test_each_pooling_mode_is_recognised(tmp_path: Path, key: str, pooling: str) -> None:
    assert read_encoder_settings(_st_folder(tmp_path, pooling_key=key)).pooling == pooling


def test_no_normalize_module_means_no_normalization(tmp_path: Path) -> None:
    settings = read_encoder_settings(_st_folder(tmp_path, normalize=False, max_seq_length=None))
    assert settings.normalize is False and settings.max_length == 512


def test_document_prompt_wins_over_passage_and_a_missing_query_prompt_stays_empty(tmp_path: Path) -> None:
    _st_folder(tmp_path, st_config={"prompts": {"document": "doc: ", "passage": "passage: "}})
    settings = read_encoder_settings(tmp_path)
    assert (settings.query_prefix, settings.document_prefix) == ("", "doc: ")


def test_catalog_overrides_beat_the_folder_and_bicross_json_beats_both(tmp_path: Path) -> None:
    _st_folder(tmp_path)  # cls, normalize, 256
    overrides = {"pooling": "mean", "query_prefix": "Represent: ", "max_length": None}
    settings = read_encoder_settings(tmp_path, overrides)
    assert (settings.pooling, settings.query_prefix, settings.max_length) == ("mean", "Represent: ", 256)
    (tmp_path / "bicross.json").write_text(json.dumps({"pooling": "max", "similarity": "euclidean",
                                                       "unrelated_key": 1}))
    settings = read_encoder_settings(tmp_path, overrides)
    assert (settings.pooling, settings.similarity, settings.query_prefix) == ("max", "euclidean", "Represent: ")


def test_written_settings_read_back_unchanged(tmp_path: Path) -> None:
    _st_folder(tmp_path)
    wanted = EncoderSettings(pooling="weighted_mean", normalize=False, max_length=77, query_prefix="q: ",
                             document_prefix="d: ", similarity="dot")
    write_encoder_settings(tmp_path, wanted)
    assert read_encoder_settings(tmp_path) == wanted


@pytest.mark.parametrize(("field", "value", "message"), [
    ("pooling", "avg", "unknown pooling 'avg'"),
    ("similarity", "manhattan", "unknown similarity 'manhattan'"),
    ("max_length", 1, "max_length must be at least 2"),
])
def test_impossible_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        EncoderSettings(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        EncoderSettings().updated(**{field: value})


def test_bad_pooling_in_bicross_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bicross.json").write_text(json.dumps({"pooling": "first"}))
    with pytest.raises(InvalidInput, match="unknown pooling 'first'"):
        read_encoder_settings(tmp_path)


def test_unreadable_settings_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[{broken")
    with pytest.raises(InvalidInput, match=r"cannot read model settings .*modules\.json"):
        read_encoder_settings(tmp_path)


def _learned_folder(folder: Path, hidden: int = 32, pooling_path: str = "1_Pooling") -> Path:
    """A folder as bicross saves a learned-pooling model (config, modules.json, pooling config; no weight yet)."""
    (folder / "config.json").write_text(json.dumps({"hidden_size": hidden}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": pooling_path, "type": "bicross.training.st_pooling.LearnedPooling"}]))
    (folder / pooling_path).mkdir()
    (folder / pooling_path / "config.json").write_text(json.dumps(learned_pooling_config(hidden)))
    return folder


def test_learned_pooling_config_is_read_as_learned(tmp_path: Path) -> None:
    assert read_encoder_settings(_learned_folder(tmp_path)).pooling == "learned"


@pytest.mark.parametrize("pooling_path", ["1_Pooling", "1_LearnedPooling"])  # bicross's name, then ST's own save
def test_pooling_weight_reads_back_from_the_pooling_folder_named_in_modules_json(tmp_path: Path,
                                                                                 pooling_path: str) -> None:
    folder = _learned_folder(tmp_path, pooling_path=pooling_path)
    weight = torch.linspace(-1, 1, 32)
    write_pooling_weight(folder / pooling_path, weight.requires_grad_())
    assert torch.equal(read_pooling_weight(folder), weight.detach())


def test_missing_pooling_weight_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"pooling 'learned' but .*1_Pooling/learned_pooling\.safetensors is missing"):
        read_pooling_weight(_learned_folder(tmp_path))


def test_pooling_weight_of_the_wrong_size_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = _learned_folder(tmp_path, hidden=32)
    write_pooling_weight(folder / "1_Pooling", torch.zeros(16))
    with pytest.raises(InvalidInput, match=r"learned_pooling\.safetensors holds a weight of shape \(16,\), .*\(32,\)"):
        read_pooling_weight(folder)


def test_unreadable_pooling_weight_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = _learned_folder(tmp_path)
    (folder / "1_Pooling" / "learned_pooling.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidInput, match=r"cannot read the learned pooling weight .*learned_pooling\.safetensors"):
        read_pooling_weight(folder)
