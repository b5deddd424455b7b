"""Bi-encoder on a tiny random model: order, normalization, pooling, prefixes, towers, truncation, inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput

TEXTS = ["the quick brown fox jumps over the dog by the river", "paris", "vitamin d and cancer risk",
         "how many people live in berlin", "art", "the weather is nice today in the city of paris"]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def other_model_path(tiny_model_factory) -> Path:
    return tiny_model_factory("other-encoder", seed=1)


def test_batch_output_is_in_input_order_and_matches_single_texts(encoder: BiEncoder) -> None:
    together = encoder.encode_documents(TEXTS)  # three length-sorted batches of two
    assert together.shape == (6, 32) and together.dtype == np.float32
    one_by_one = np.vstack([encoder.encode_documents([text]) for text in TEXTS])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert len({tuple(np.round(row, 4)) for row in together}) == 6  # different texts, different vectors


def test_checkpoint_normalize_module_gives_unit_vectors(encoder: BiEncoder, tiny_encoder_path: Path) -> None:
    assert encoder.settings.normalize is True
    normalized = encoder.encode_queries(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-5)
    raw = BiEncoder.load(str(tiny_encoder_path), dtype="float32", normalize=False).encode_queries(TEXTS)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms, normalized, atol=1e-5)


def test_pooling_override_changes_the_vectors(encoder: BiEncoder, tiny_encoder_path: Path) -> None:
    cls = BiEncoder.load(str(tiny_encoder_path), dtype="float32", pooling="cls")
    assert (encoder.settings.pooling, cls.settings.pooling) == ("mean", "cls")
    mean_vectors, cls_vectors = encoder.encode_queries(TEXTS), cls.encode_queries(TEXTS)
    assert np.abs(mean_vectors - cls_vectors).max() > 1e-3


def test_bad_pooling_override_is_refused(tiny_encoder_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown pooling 'sum'"):
        BiEncoder.load(str(tiny_encoder_path), dtype="float32", pooling="sum")


def test_prefixes_are_prepended_per_kind(encoder: BiEncoder, tiny_encoder_path: Path) -> None:
    prefixed = BiEncoder.load(str(tiny_encoder_path), dtype="float32", query_prefix="query: ",
                              document_prefix="passage: ")
    texts = ["where is the museum", "berlin"]
    np.testing.assert_allclose(prefixed.encode_queries(texts),
                               encoder.encode_queries([f"query: {t}" for t in texts]), atol=1e-5)
    np.testing.assert_allclose(prefixed.encode_documents(texts),
                               encoder.encode_documents([f"passage: {t}" for t in texts]), atol=1e-5)
    assert np.abs(prefixed.encode_queries(texts) - prefixed.encode_documents(texts)).max() > 1e-3


def test_separate_document_tower_changes_documents_only(encoder: BiEncoder, tiny_encoder_path: Path,
                                                        other_model_path: Path) -> None:
    other = BiEncoder.load(str(other_model_path), dtype="float32")
    asymmetric = BiEncoder.load(str(tiny_encoder_path), document_model=str(other_model_path), dtype="float32")
    np.testing.assert_allclose(asymmetric.encode_queries(TEXTS), encoder.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(asymmetric.encode_documents(TEXTS), other.encode_documents(TEXTS), atol=1e-5)
    assert np.abs(asymmetric.encode_documents(TEXTS) - encoder.encode_documents(TEXTS)).max() > 1e-3
    assert asymmetric.name == f"{tiny_encoder_path}|{other_model_path}"
    assert asymmetric.fingerprint == f"{encoder.fingerprint}|{other.fingerprint}"
    assert other.fingerprint != encoder.fingerprint


def test_a_document_subfolder_is_loaded_as_the_document_tower(encoder: BiEncoder, tiny_encoder_path: Path,
                                                              other_model_path: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_encoder_path, tmp_path / "two-towers")
    shutil.copytree(other_model_path, folder / "document")  # where TrainableBiEncoder.save puts a second tower
    two_towers = BiEncoder.load(str(folder), dtype="float32")
    other = BiEncoder.load(str(other_model_path), dtype="float32")
    np.testing.assert_allclose(two_towers.encode_queries(TEXTS), encoder.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(two_towers.encode_documents(TEXTS), other.encode_documents(TEXTS), atol=1e-5)
    assert two_towers.fingerprint == f"{encoder.fingerprint}|{other.fingerprint}"
    explicit = BiEncoder.load(str(folder), document_model=str(tiny_encoder_path), dtype="float32")
    np.testing.assert_allclose(explicit.encode_documents(TEXTS), encoder.encode_documents(TEXTS), atol=1e-5)


def test_learned_pooling_without_its_weight_file_is_refused_naming_it(tiny_encoder_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"pooling 'learned' but .*1_Pooling/learned_pooling\.safetensors is missing"):
        BiEncoder.load(str(tiny_encoder_path), dtype="float32", pooling="learned")


def test_same_document_model_keeps_one_tower(tiny_encoder_path: Path) -> None:
    same = BiEncoder.load(str(tiny_encoder_path), document_model=str(tiny_encoder_path), dtype="float32")
    assert same.document_tower is same.query_tower and "|" not in same.fingerprint


def test_truncated_texts_are_counted(encoder: BiEncoder) -> None:
    assert encoder.settings.max_length == 64  # from sentence_bert_config.json
    encoded = encoder.encode(["berlin " * 100, "paris", "the river " * 40], "document")
    assert encoded.truncated == 2
    assert encoder.encode(["paris", "berlin"], "query").truncated == 0


def test_max_length_override_cuts_earlier(tiny_encoder_path: Path) -> None:
    short = BiEncoder.load(str(tiny_encoder_path), dtype="float32", max_length=7)
    # [CLS] + 6 words + [SEP] is 8 tokens: cut at 7, while the checkpoint's 64 keeps it whole
    assert short.encode(["how many people live in berlin"], "query").truncated == 1


def test_empty_list_gives_an_empty_matrix(encoder: BiEncoder) -> None:
    encoded = encoder.encode([], "query")
    assert encoded.embeddings.shape == (0, 0) and encoded.truncated == 0


@pytest.mark.parametrize("texts", [[""], ["ok", "   "], "a plain string"])
def test_unusable_texts_are_refused(encoder: BiEncoder, texts: object) -> None:
    with pytest.raises(InvalidInput):
        encoder.encode_queries(texts)  # type: ignore[arg-type]
