"""Trained models are saved in formats others read: sentence-transformers and Hugging Face, atomically.

Also: learned pooling (its vector is trained, saved and read back by bicross and ST) and two-tower saves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.training.models import TrainableBiEncoder, TrainableCrossEncoder, atomic_folder

TEXTS = ["berlin is a city in germany", "vitamin d and cancer risk", "the quick brown fox jumps"]


def _perturb(module: torch.nn.Module) -> None:
    """Move every weight a little, as training would, so a save that kept the base weights would be caught."""
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))


def test_a_trained_bi_encoder_loads_in_sentence_transformers_and_bicross_with_the_same_embeddings(
        tiny_encoder_path: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from bicross.encoders import BiEncoder

    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), query_prefix="query: ")
    _perturb(model)
    model.eval()
    with torch.no_grad():
        ours = model(model.tokenize(TEXTS, "document"), "document").numpy()
        queries = model(model.tokenize(TEXTS, "query"), "query").numpy()
    folder = model.save(tmp_path / "trained", card="# card")
    st = SentenceTransformer(str(folder), device="cpu")
    theirs = st.encode(TEXTS, convert_to_numpy=True)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.9999
    st_queries = st.encode(TEXTS, prompt_name="query", convert_to_numpy=True)  # the prefix travels as a prompt
    assert np.allclose(st_queries, queries, atol=1e-5)
    loaded = BiEncoder.load(str(folder), dtype="float32")
    assert np.allclose(loaded.encode_documents(TEXTS), ours, atol=1e-5)
    assert np.allclose(loaded.encode_queries(TEXTS), queries, atol=1e-5)
    assert (folder / "README.md").read_text() == "# card"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _embed(model: TrainableBiEncoder, kind: str) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(model.tokenize(TEXTS, kind), kind).numpy()  # type: ignore[arg-type]


def _train_a_few_steps(model: TrainableBiEncoder, steps: int = 3) -> None:
    """In-batch contrastive steps; the pooling vector gets a large learning rate so it visibly moves off mean."""
    from bicross.training.losses import info_nce

    pooling = [p for name, p in model.named_parameters() if name == "pooling_weight"]
    towers = [p for name, p in model.named_parameters() if name != "pooling_weight"]
    optimizer = torch.optim.AdamW([{"params": pooling, "lr": 0.5}, {"params": towers, "lr": 1e-3}])
    model.train()
    for _ in range(steps):
        loss = info_nce(model(model.tokenize(TEXTS, "query")), model(model.tokenize(TEXTS[::-1], "document"), "document"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_a_mean_pooled_save_writes_only_sentence_transformers_own_pooling(tiny_encoder_path: Path,
                                                                         tmp_path: Path) -> None:
    folder = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path)).save(tmp_path / "mean")
    modules = json.loads((folder / "modules.json").read_text())
    assert modules[1]["type"] == "sentence_transformers.models.Pooling"
    assert json.loads((folder / "1_Pooling" / "config.json").read_text()) == {
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_weightedmean_tokens": False}
    assert sorted(p.name for p in (folder / "1_Pooling").iterdir()) == ["config.json"]


def test_switching_to_learned_pooling_starts_as_the_mean_pooled_model(tiny_encoder_path: Path) -> None:
    mean = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path))
    learned = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), pooling="learned")
    assert mean.pooling_weight is None
    assert learned.pooling_weight is not None and learned.pooling_weight.shape == (32,)
    assert not learned.pooling_weight.any() and learned.pooling_weight.requires_grad
    assert any(p is learned.pooling_weight for p in learned.parameters())  # the optimizer will train it
    np.testing.assert_allclose(_embed(learned, "query"), _embed(mean, "query"), atol=1e-6)


def test_a_learned_pooling_model_round_trips_through_bicross_and_sentence_transformers(
        tiny_encoder_path: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from bicross.encoders import BiEncoder

    torch.manual_seed(0)
    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), pooling="learned")
    _train_a_few_steps(model)
    assert model.pooling_weight is not None and model.pooling_weight.abs().max() > 1e-3  # moved off zero
    ours = _embed(model, "document")
    folder = model.save(tmp_path / "learned")
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "learned"
    loaded = BiEncoder.load(str(folder), dtype="float32")
    assert loaded.settings.pooling == "learned"
    assert _cosines(loaded.encode_documents(TEXTS), ours).min() >= 0.9999
    as_mean = BiEncoder.load(str(folder), dtype="float32", pooling="mean").encode_documents(TEXTS)
    assert _cosines(as_mean, ours).min() < 0.99  # the learned weight is really used
    st = SentenceTransformer(str(folder), device="cpu", trust_remote_code=True)
    assert _cosines(st.encode(TEXTS, convert_to_numpy=True), ours).min() >= 0.9999
    resumed = TrainableBiEncoder.from_pretrained(str(folder))
    assert resumed.pooling_weight is not None and torch.equal(resumed.pooling_weight, model.pooling_weight)
    assert _cosines(_embed(resumed, "document"), ours).min() >= 0.9999


def test_sentence_transformers_save_of_a_learned_model_loads_in_bicross(tiny_encoder_path: Path,
                                                                        tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from bicross.encoders import BiEncoder

    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), pooling="learned")
    with torch.no_grad():
        model.pooling_weight.copy_(torch.linspace(-0.5, 0.5, 32))  # type: ignore[union-attr]
    st = SentenceTransformer(str(model.save(tmp_path / "bicross")), device="cpu", trust_remote_code=True)
    st.save(str(tmp_path / "st"))  # ST names the pooling folder itself (1_LearnedPooling)
    resaved = BiEncoder.load(str(tmp_path / "st"), dtype="float32")  # no bicross.json: read from ST's files
    assert _cosines(resaved.encode_documents(TEXTS), _embed(model, "document")).min() >= 0.9999


def test_learned_pooling_from_the_packaged_minilm_starts_as_its_mean_pooling() -> None:
    name = "sentence-transformers/all-MiniLM-L6-v2"
    mean = TrainableBiEncoder.from_pretrained(name)
    learned = TrainableBiEncoder.from_pretrained(name, pooling="learned")
    assert mean.settings.pooling == "mean"
    assert learned.pooling_weight is not None and learned.pooling_weight.shape == (384,)
    np.testing.assert_allclose(_embed(learned, "query"), _embed(mean, "query"), atol=1e-6)


def test_a_two_tower_save_loads_both_towers_in_bicross_and_for_more_training(
        tiny_encoder_path: Path, tiny_model_factory, tmp_path: Path) -> None:
    from bicross.encoders import BiEncoder

    other = tiny_model_factory("document-tower", seed=5)
    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), document_model=str(other))
    _perturb(model)
    queries, documents = _embed(model, "query"), _embed(model, "document")
    assert np.abs(queries - documents).max() > 1e-3  # two different towers
    folder = model.save(tmp_path / "two-towers")
    loaded = BiEncoder.load(str(folder), dtype="float32")
    assert loaded.document_tower is not loaded.query_tower
    assert _cosines(loaded.encode_queries(TEXTS), queries).min() >= 0.9999
    assert _cosines(loaded.encode_documents(TEXTS), documents).min() >= 0.9999
    resumed = TrainableBiEncoder.from_pretrained(str(folder))
    assert resumed.document_model is not None
    np.testing.assert_allclose(_embed(resumed, "query"), queries, atol=1e-5)
    np.testing.assert_allclose(_embed(resumed, "document"), documents, atol=1e-5)


def test_a_trained_cross_encoder_scores_the_same_in_sentence_transformers(tiny_encoder_path: Path,
                                                                            tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder as StCrossEncoder

    from bicross.rerankers import CrossEncoder

    model = TrainableCrossEncoder.from_pretrained(str(tiny_encoder_path), max_length=64)  # a BERT with a new head
    _perturb(model)
    model.eval()
    pairs = [("berlin city", text) for text in TEXTS]
    with torch.no_grad():
        ours = model(model.tokenize([q for q, _ in pairs], [d for _, d in pairs])).numpy()
    folder = model.save(tmp_path / "reranker")
    theirs = StCrossEncoder(str(folder), device="cpu", max_length=64).predict(pairs, activation_fn=torch.nn.Identity())
    assert np.allclose(theirs, ours, atol=1e-5)
    assert np.allclose(CrossEncoder.load(str(folder), dtype="float32").score(pairs), ours, atol=1e-5)


def test_an_interrupted_save_leaves_the_previous_model(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_folder(target) as staging:
        (staging / "weights").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("killed")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
