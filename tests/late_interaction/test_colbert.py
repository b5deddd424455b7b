"""The ColBERT model on a tiny random BERT: unit token vectors, save/load in bicross's, PyLate's and Stanford's layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.late_interaction import ColBERT, ColBERTConfig, PolyConfig, PolyEncoder
from bicross.late_interaction import checkpoints as checkpoints_module

CONFIG = ColBERTConfig(dim=16, query_length=12, document_length=24)
TEXTS = ["how many people live in berlin?", "the quick brown fox jumps.", "vitamin d and cancer risk"]


@pytest.fixture(scope="module")
def tiny_backbone(tiny_model_factory) -> Path:
    return tiny_model_factory("colbert-backbone", sentence_transformers=False)


def _encode(model: ColBERT, kind: str = "document"):
    model.eval()
    with torch.no_grad():
        return model.encode(TEXTS, kind)  # type: ignore[arg-type]


def test_from_backbone_adds_missing_markers_and_encodes_unit_vectors(tiny_backbone: Path) -> None:
    model = ColBERT.from_backbone(str(tiny_backbone), CONFIG)
    vocab = model.tokenizer.hf.get_vocab()
    assert {"[unused0]", "[unused1]"} <= set(vocab)  # the tiny vocabulary had neither: added, embeddings resized
    assert model.backbone.get_input_embeddings().num_embeddings == len(model.tokenizer.hf)
    queries, documents = _encode(model, "query"), _encode(model)
    assert queries.vectors.shape == (3, 12, 16) and queries.mask.all()
    assert documents.vectors.shape[2] == 16 and not documents.mask.all()  # padding and "?"/"." do not count
    norms = documents.vectors.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert [len(v) for v in documents.unpadded()] == documents.mask.sum(dim=1).tolist()


def test_save_and_load_round_trip_in_pylate_layout(tiny_backbone: Path, tmp_path: Path) -> None:
    model = ColBERT.from_backbone(str(tiny_backbone), CONFIG)
    folder = model.save(tmp_path / "colbert", card="# tiny")
    dense = json.loads((folder / "1_Dense" / "config.json").read_text())
    pylate = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert dense == {"in_features": 32, "out_features": 16, "bias": False,
                     "activation_function": "torch.nn.modules.linear.Identity"}
    assert pylate["query_prefix"] == "[unused0]" and pylate["document_length"] == 24 and pylate["query_length"] == 12
    assert [m["type"] for m in json.loads((folder / "modules.json").read_text())][1] == "pylate.models.Dense.Dense"
    loaded = ColBERT.load(str(folder))
    assert loaded.config == CONFIG
    assert torch.allclose(_encode(loaded).vectors, _encode(model).vectors, atol=1e-6)
    # a PyLate checkpoint is the same layout without bicross's settings file
    (folder / checkpoints_module.SETTINGS_FILE).unlink()
    assert torch.allclose(_encode(ColBERT.load(str(folder))).vectors, _encode(model).vectors, atol=1e-6)
    assert ColBERT.load(str(folder), document_length=8).tokenizer.document_length == 8


def test_a_failed_save_leaves_the_previous_model(tiny_backbone: Path, tmp_path: Path, monkeypatch) -> None:
    model = ColBERT.from_backbone(str(tiny_backbone), CONFIG)
    folder = model.save(tmp_path / "colbert")
    before = _encode(ColBERT.load(str(folder))).vectors

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("bicross.late_interaction.colbert.write_colbert", broken)
    with torch.no_grad():
        model.projection.weight.mul_(-1)  # type: ignore[union-attr]
    with pytest.raises(OSError, match="disk full"):
        model.save(folder)
    assert torch.allclose(_encode(ColBERT.load(str(folder))).vectors, before)
    assert not (tmp_path / ".colbert.partial").exists()


def test_loads_a_stanford_colbert_checkpoint(tiny_backbone: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = ColBERT.from_backbone(str(tiny_backbone), CONFIG)
    folder = tmp_path / "stanford"
    model.backbone.save_pretrained(str(folder))
    model.tokenizer.hf.save_pretrained(str(folder))
    # HF_ColBERT keeps the backbone under `bert.` and the projection as `linear.weight`
    weights = {f"bert.{name}": value.contiguous() for name, value in model.backbone.state_dict().items()}
    weights["linear.weight"] = model.projection.weight.detach().clone()  # type: ignore[union-attr]
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 12, "doc_maxlen": 24, "dim": 16,
                                                          "query_token_id": "[unused0]", "doc_token_id": "[unused1]",
                                                          "mask_punctuation": True, "attend_to_mask_tokens": False}))
    loaded = ColBERT.load(str(folder))
    assert loaded.config == CONFIG
    assert torch.allclose(_encode(loaded).vectors, _encode(model).vectors, atol=1e-5)


def test_no_projection_keeps_the_backbone_states_and_wrong_folders_are_refused(tiny_backbone: Path,
                                                                               tmp_path: Path) -> None:
    model = ColBERT.from_backbone(str(tiny_backbone), ColBERTConfig(dim=None, document_length=24))
    assert model.projection is None and _encode(model).vectors.shape[2] == 32
    folder = model.save(tmp_path / "plain")
    assert not (folder / "1_Dense").exists() and ColBERT.load(str(folder)).projection is None
    with pytest.raises(InvalidInput, match="no ColBERT checkpoint.*from_backbone"):
        ColBERT.load(str(tiny_backbone))
    poly = PolyEncoder.from_backbone(str(tiny_backbone), PolyConfig(codes=2)).save(tmp_path / "poly")
    with pytest.raises(InvalidInput, match="holds a poly model, not ColBERT"):
        ColBERT.load(str(poly))
    with pytest.raises(InvalidInput, match="dim must be a positive"):
        ColBERTConfig(dim=0)
