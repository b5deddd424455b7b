"""Trained models are saved in formats others read: sentence-transformers and Hugging Face, atomically."""

from __future__ import annotations

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
