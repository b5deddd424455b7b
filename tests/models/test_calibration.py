"""`backend="auto"` by calibration: every path a folder offers is timed once per machine, the fastest that
agrees with the reference is kept, cached on disk, and read back without measuring again.

Which path wins depends on the machine, so no test asserts a winner: they assert that the pick is one that
agrees, that it is cached and reused, and that a path whose outputs disagree is never picked however fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.models import calibration
from bicross.models.backends import load_backend
from bicross.models.calibration import Candidate, calibrated_choice, candidates
from bicross.models.export import export_model


class Perturbed:
    """A real backend whose outputs are shifted: a fast path that computes the wrong thing."""

    def __init__(self, backend) -> None:
        self.inner, self.name, self.dtype, self.batch_invariant = backend, "broken", "float32", True

    def forward(self, batch):
        output = self.inner.forward(batch)
        return output + torch.randn_like(output) * 10


def opener(path: Path, task: str, opened: list[Candidate], broken: Candidate | None = None):
    def open_backend(candidate: Candidate):
        opened.append(candidate)
        backend = load_backend(path, task, candidate.backend, candidate.dtype)  # type: ignore[arg-type]
        return Perturbed(backend) if candidate == broken else backend
    return open_backend


@pytest.mark.parametrize("fixture", ["tiny_encoder_path", "tiny_cross_encoder_path"])
def test_the_choice_agrees_is_cached_and_is_read_back_without_measuring(fixture, request, tmp_path: Path) -> None:
    path: Path = request.getfixturevalue(fixture)
    task = "encoder" if fixture == "tiny_encoder_path" else "classifier"
    offered = candidates(True, False, False)
    opened: list[Candidate] = []
    lines: list[str] = []
    choice = calibrated_choice(path, task, "fp1", None, offered, opener(path, task, opened), tmp_path, lines.append)
    assert choice in offered and opened == offered and "calibrating" in lines[0]
    (record_file,) = (tmp_path / "calibration").glob("*/fp1-*.json")
    record = json.loads(record_file.read_text())
    assert record["choice"] == {"backend": choice.backend, "dtype": choice.dtype}
    assert {m["dtype"] for m in record["measured"]} == {"float32", "bfloat16"}
    assert all(m["texts_per_second"] > 0 for m in record["measured"]) and record["measured"][0]["agrees"]
    chosen = next(m for m in record["measured"] if m["dtype"] == choice.dtype)
    assert chosen["agrees"] and chosen["texts_per_second"] == max(
        m["texts_per_second"] for m in record["measured"] if m["agrees"])
    again: list[Candidate] = []
    assert calibrated_choice(path, task, "fp1", None, offered, opener(path, task, again), tmp_path) == choice
    assert again == []  # read from the cache, nothing timed


def test_a_path_that_disagrees_with_the_reference_is_never_picked(tiny_encoder_path: Path, tmp_path: Path) -> None:
    offered = candidates(True, False, False)
    broken = Candidate("torch", "bfloat16")
    opened: list[Candidate] = []
    choice = calibrated_choice(tiny_encoder_path, "encoder", "fp2", None, offered,
                               opener(tiny_encoder_path, "encoder", opened, broken), tmp_path)
    assert choice == Candidate("torch", "float32")
    (record_file,) = (tmp_path / "calibration").glob("*/fp2-*.json")
    measured = {m["dtype"]: m for m in json.loads(record_file.read_text())["measured"]}
    assert not measured["bfloat16"]["agrees"] and "min cosine" in measured["bfloat16"]["detail"]


def test_a_corrupt_or_stale_cache_is_measured_again(tiny_encoder_path: Path, tmp_path: Path) -> None:
    offered = candidates(True, False, False)
    folder = tmp_path / "calibration" / calibration.machine_key()
    folder.mkdir(parents=True)
    for content in ("{half a file", json.dumps({"choice": {"backend": "openvino", "dtype": "float32"}})):
        (folder / "fp3-encoder-threads0.json").write_text(content)  # unreadable; then a path no longer offered
        opened: list[Candidate] = []
        calibrated_choice(tiny_encoder_path, "encoder", "fp3", None, offered,
                          opener(tiny_encoder_path, "encoder", opened), tmp_path)
        assert opened == offered


def test_auto_loads_calibrate_between_pytorch_and_onnx_in_one_folder(tiny_cross_encoder_path: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bicross.rerankers import CrossEncoder

    folder = tmp_path / "both"
    shutil.copytree(tiny_cross_encoder_path, folder)
    export_model(tiny_cross_encoder_path, tmp_path / "onnx")
    shutil.copy(tmp_path / "onnx" / "model.onnx", folder / "model.onnx")  # a hub checkpoint with an ONNX file
    monkeypatch.setenv("BICROSS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BICROSS_CALIBRATE", "1")
    loaded = CrossEncoder.load(str(folder))
    (record_file,) = (tmp_path / "cache" / "calibration").glob("*/*-classifier-threads0.json")
    record = json.loads(record_file.read_text())
    assert [m["backend"] for m in record["measured"]] == ["torch", "torch", "onnx"]
    assert (loaded.backend.name, loaded.backend.dtype) == (record["choice"]["backend"], record["choice"]["dtype"]) \
        or (record["choice"]["backend"] == "onnx" and loaded.backend.name == "onnx")
    reference = CrossEncoder.load(str(folder), backend="torch", dtype="float32")
    pairs = [("capital of germany", "berlin is the capital"), ("fox", "the quick brown fox jumps")]
    np.testing.assert_allclose(loaded.score(pairs), reference.score(pairs), atol=0.25)
    monkeypatch.setenv("BICROSS_CALIBRATE", "0")  # off: the rule, PyTorch when the folder has its weights
    assert CrossEncoder.load(str(folder)).backend.name == "torch"
