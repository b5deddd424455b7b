"""`export_model`: ONNX fp32 / static int8 and OpenVINO exports of tiny models load in bicross and agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.encoders import BiEncoder
from bicross.errors import InvalidInput
from bicross.models.export import EXPORT_MANIFEST, export_model
from bicross.rerankers import CrossEncoder

WORDS = "the a search index query document model rank score token vector batch test cat dog".split()


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(count)]


def _pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    return list(zip(_texts(count, seed), _texts(count, seed + 1), strict=True))


def test_onnx_fp32_cross_encoder_gives_the_source_scores(tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    report = export_model(tiny_cross_encoder_path, tmp_path / "ce", calibration=_pairs(16))
    assert report.task == "classifier" and report.max_abs_difference < 1e-4
    exported = CrossEncoder.load(str(tmp_path / "ce"))
    source = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    pairs = _pairs(10, seed=5)
    assert exported.backend.name == "onnx"
    np.testing.assert_allclose(exported.score(pairs), source.score(pairs), atol=1e-4)
    assert (tmp_path / "ce" / EXPORT_MANIFEST).is_file() and not (tmp_path / "ce" / "model.safetensors").exists()


def test_static_int8_scores_do_not_depend_on_the_batch(tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    report = export_model(tiny_cross_encoder_path, tmp_path / "int8", precision="int8", calibration=_pairs(32))
    # a random tiny model's scores lie within ~1e-3 of each other, so rank agreement says little here
    assert report.calibration_texts == 32 and report.max_abs_difference < 1e-2
    model = CrossEncoder.load(str(tmp_path / "int8"))
    assert model.backend.batch_invariant and model.batch_size == 32  # fixed scales: batching is allowed
    pairs = _pairs(12, seed=7)
    together = model.score(pairs)
    alone = np.array([model.score([pair])[0] for pair in pairs])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_onnx_bi_encoder_keeps_pooling_and_embeddings(tiny_encoder_path: Path, tmp_path: Path) -> None:
    report = export_model(tiny_encoder_path, tmp_path / "bi", calibration=_texts(16))
    assert report.task == "encoder" and report.agreement > 0.9999
    source, exported = BiEncoder.load(str(tiny_encoder_path), dtype="float32"), BiEncoder.load(str(tmp_path / "bi"))
    texts = _texts(9, seed=3)
    np.testing.assert_allclose(exported.encode_documents(texts), source.encode_documents(texts), atol=1e-5)


def test_openvino_export_loads_with_the_openvino_backend(tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    export_model(tiny_cross_encoder_path, tmp_path / "ov", format="openvino", precision="bf16",
                 calibration=_pairs(8))
    model = CrossEncoder.load(str(tmp_path / "ov"))
    source = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    assert model.backend.name == "openvino"
    pairs = _pairs(6, seed=2)
    # fp32 where the CPU has no native bf16; bf16 rounding elsewhere
    atol = 5e-2 if model.backend.dtype == "bfloat16" else 1e-4
    np.testing.assert_allclose(model.score(pairs), source.score(pairs), atol=atol)


def test_bad_requests_are_refused_and_leave_nothing(tiny_cross_encoder_path: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs calibration texts"):
        export_model(tiny_cross_encoder_path, tmp_path / "x", precision="int8")
    with pytest.raises(InvalidInput, match="onnx exports take precision fp32 or int8"):
        export_model(tiny_cross_encoder_path, tmp_path / "x", precision="bf16")
    with pytest.raises(InvalidInput, match="format must be"):
        export_model(tiny_cross_encoder_path, tmp_path / "x", format="tflite")  # type: ignore[arg-type]
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidInput, match="exists"):
        export_model(tiny_cross_encoder_path, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no partial folders left behind
