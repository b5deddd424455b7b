"""The ColBERT and Poly-encoder recipe on a toy BEIR folder: tiny models learn planted pairs, resume is exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.errors import InvalidInput
from bicross.late_interaction import ColBERT, ColBERTConfig, ColBERTReranker, PolyConfig, PolyEncoder, PolyReranker
from bicross.training.late_interaction_recipe import (
    LateInteractionRecipe,
    build_model,
    late_interaction_recipe,
    live_reranker,
    train_late_interaction,
)
from bicross.training.mining import MiningConfig
from bicross.training.trainer import TrainConfig

# Planted relevance: no query shares a word with its document, so only training can connect them.
DOCUMENTS = ["vitamin d cancer risk", "berlin city germany", "heart blood patients", "gene protein cell study",
             "quick brown running", "million live where"]
QUERIES = [("paris france", "france capital"), ("dog fox", "fox jumps"), ("museum art", "art today"),
           ("river population", "population people"), ("weather nice", "nice runs"), ("how many", "many ran")]
MODELS = {"colbert": ColBERTConfig(dim=16, query_length=8, document_length=12),
          "poly": PolyConfig(codes=4, query_length=8, document_length=12)}


@pytest.fixture()
def beir(tmp_path: Path) -> Path:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": text}) + "\n"
                                                 for i, text in enumerate(DOCUMENTS)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}-{j}", "text": text}) + "\n"
                                                  for i, pair in enumerate(QUERIES) for j, text in enumerate(pair)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}-{j}\td{i}\t1\n" for i in range(len(QUERIES)) for j in range(2)))
    return folder


@pytest.fixture(scope="module")
def backbone(tiny_model_factory) -> Path:
    return tiny_model_factory("late-recipe", sentence_transformers=False, seed=1)


def _recipe(kind: str, encoder: Path, **changes) -> LateInteractionRecipe:
    """Every other document is a mined negative (the first stage's whole window), 15 epochs of 3 steps."""
    train = TrainConfig(epochs=15, batch_size=3, learning_rate=3e-3, pooling_learning_rate=3e-3, warmup_ratio=0.0,
                        dtype="float32", checkpoint_every=1000)
    recipe = replace(late_interaction_recipe(kind), model=MODELS[kind], train=train, guard=False,  # type: ignore[arg-type]
                     first_stage_model=str(encoder), dev_fraction=0.25, dev_depth=6,
                     mining=MiningConfig(depth=6, count=5), negatives_per_example=5)
    return replace(recipe, **changes)


def _first_place(reranker, queries: list[str]) -> int:
    """How many of `queries` get their planted document ranked first among all six."""
    pairs = [(query, document) for query in queries for document in DOCUMENTS]
    scores = np.asarray(reranker.score(pairs)).reshape(len(queries), len(DOCUMENTS))
    planted = [next(i for i, pair in enumerate(QUERIES) if query in pair) for query in queries]
    return int((scores.argmax(axis=1) == np.array(planted)).sum())


def _train_queries(out: Path) -> list[str]:
    return list(dict.fromkeys(json.loads(line)["query"] for line in (out / "negatives.jsonl").read_text().splitlines()))


class PlantedTeacher:
    """A teacher cross-encoder that knows the planted pairs (5 for a query's own document, -5 for any other)."""

    identity = "planted-teacher"

    def score(self, pairs):
        own = {query: DOCUMENTS[i] for i, pair in enumerate(QUERIES) for query in pair}
        return np.array([5.0 if own[query] == document else -5.0 for query, document in pairs], dtype=np.float32)


@pytest.mark.parametrize(("kind", "distill"), [("colbert", False), ("poly", False), ("colbert", True), ("poly", True)])
def test_the_recipe_teaches_a_tiny_model_planted_pairs_and_saves_a_reranker(kind: str, distill: bool, beir: Path,
                                                                          backbone: Path, tiny_encoder_path: Path,
                                                                          tmp_path: Path) -> None:
    recipe, out = _recipe(kind, tiny_encoder_path, distill=distill), tmp_path / "run"
    result = train_late_interaction(kind, beir, str(backbone), out, recipe, teacher=PlantedTeacher(),  # type: ignore[arg-type]
                                    show_progress=False)
    queries = _train_queries(out)
    before = _first_place(live_reranker(build_model(kind, str(backbone), recipe.model, recipe.train.seed)), queries)  # type: ignore[arg-type]
    loader = ColBERTReranker if kind == "colbert" else PolyReranker
    after = _first_place(loader.load(str(result.model), dtype="float32"), queries)
    assert len(queries) == 9 and result.train.steps == 45
    assert before <= 4 and after >= len(queries) - 1, (before, after)
    card = (result.model / "README.md").read_text()
    assert "## Dev results" in card and "test split was not used" in card
    loss = next(line for line in card.splitlines() if line.startswith("- loss:"))
    assert ("listwise_kl from" in loss) == distill and ("InfoNCE" in loss) != distill
    if distill:  # the teacher's scores were written beside the negatives, [positive, *negatives]
        labelled = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
        assert len(labelled) == 9 and all(row["scores"] == [5.0] + [-5.0] * 5 for row in labelled)


@pytest.mark.parametrize("kind", ["colbert", "poly"])
def test_an_interrupted_and_resumed_recipe_ends_with_the_same_weights(kind: str, beir: Path, backbone: Path,
                                                                      tiny_encoder_path: Path, tmp_path: Path) -> None:
    # one evaluation, at the last step: the saved best model is the final weights
    recipe = _recipe(kind, tiny_encoder_path)
    recipe = replace(recipe, train=replace(recipe.train, epochs=3, eval_every=1000), dev_depth=3)

    def weights(out: Path) -> list[torch.Tensor]:
        model = ColBERT.load(str(out / "model")) if kind == "colbert" else PolyEncoder.load(str(out / "model"))
        return list(model.state_dict().values())

    straight = train_late_interaction(kind, beir, str(backbone), tmp_path / "straight", recipe,  # type: ignore[arg-type]
                                      show_progress=False)
    interrupted = train_late_interaction(kind, beir, str(backbone), tmp_path / "resumed", recipe,  # type: ignore[arg-type]
                                         show_progress=False, stop_after=4)  # killed mid epoch 2
    assert interrupted.train.steps == 4 and not (tmp_path / "resumed" / "model").exists()
    resumed = train_late_interaction(kind, beir, str(backbone), tmp_path / "resumed", recipe,  # type: ignore[arg-type]
                                     show_progress=False)
    assert resumed.mining is None and resumed.train.steps == straight.train.steps == 9  # negatives read back
    difference = max(float((a.float() - b.float()).abs().max())
                     for a, b in zip(weights(tmp_path / "straight"), weights(tmp_path / "resumed"), strict=True))
    assert difference <= 1e-6


def test_the_defaults_start_from_the_zero_shot_colbert_and_a_poly_on_minilm() -> None:
    colbert, poly = late_interaction_recipe("colbert"), late_interaction_recipe("poly")
    assert isinstance(colbert.model, ColBERTConfig) and colbert.model.dim is None  # the backbone's 384-d states
    assert isinstance(poly.model, PolyConfig) and poly.model.codes == 16
    assert (colbert.negatives_per_example, colbert.mining.count, colbert.guard, colbert.distill) == (1, 1, True, False)


def test_settings_the_recipe_cannot_run_are_refused(beir: Path, backbone: Path, tiny_encoder_path: Path,
                                                    tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="between 0 and the mined count"):
        LateInteractionRecipe(negatives_per_example=3)
    with pytest.raises(InvalidInput, match="distill = true compares"):
        LateInteractionRecipe(negatives_per_example=0, distill=True)
    with pytest.raises(InvalidInput, match="needs PolyConfig model settings"):
        train_late_interaction("poly", beir, str(backbone), tmp_path, late_interaction_recipe("colbert"))
    refreshing = _recipe("colbert", tiny_encoder_path)
    refreshing = replace(refreshing, train=replace(refreshing.train, refresh_every=2))
    with pytest.raises(InvalidInput, match="set it to 0"):
        train_late_interaction("colbert", beir, str(backbone), tmp_path, refreshing)
