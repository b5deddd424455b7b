"""ColBERT and Poly-encoder steps through the Trainer: tiny random models learn planted relevance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.late_interaction import ColBERT, ColBERTConfig, PolyConfig, PolyEncoder
from bicross.scoring.late_interaction import maxsim_matrix
from bicross.training.data import ContrastiveExample
from bicross.training.distill_steps import DistillLoss
from bicross.training.late_interaction_steps import (
    LateInteractionLoss,
    colbert_distill_step,
    colbert_list_scores,
    colbert_step,
    poly_distill_step,
    poly_list_scores,
    poly_step,
)
from bicross.training.trainer import TrainConfig, Trainer

# Planted relevance: each query's words never occur in its document, so only training can connect them.
PLANTED = [("paris france capital", "vitamin d cancer risk"), ("dog fox jumps", "berlin city germany"),
           ("museum art", "heart blood patients"), ("river population", "gene protein cell study"),
           ("weather nice today", "quick brown running"), ("how many people", "million live where")]
EXAMPLES = [ContrastiveExample(query, positive, (PLANTED[(i + 1) % len(PLANTED)][1],), f"q{i}", f"d{i}",
                               (f"d{(i + 1) % len(PLANTED)}",), scores=(3.0, -2.0))
            for i, (query, positive) in enumerate(PLANTED)]
CONFIG = TrainConfig(epochs=15, batch_size=3, learning_rate=3e-3, warmup_ratio=0.0, dtype="float32",
                     checkpoint_every=1000)


@pytest.fixture(scope="module")
def backbone(tiny_model_factory) -> Path:
    return tiny_model_factory("late-steps", sentence_transformers=False, seed=1)


def _colbert(backbone: Path) -> ColBERT:
    torch.manual_seed(0)
    return ColBERT.from_backbone(str(backbone), ColBERTConfig(dim=16, query_length=8, document_length=12))


def _poly(backbone: Path) -> PolyEncoder:
    torch.manual_seed(0)
    return PolyEncoder.from_backbone(str(backbone), PolyConfig(codes=4, query_length=8, document_length=12))


def _scores(model) -> torch.Tensor:
    """(queries, documents) scores of every planted query against every planted document."""
    queries, documents = [q for q, _ in PLANTED], [d for _, d in PLANTED]
    model.eval()
    with torch.no_grad():
        if isinstance(model, ColBERT):
            q, d = model.encode(queries, "query"), model.encode(documents, "document")
            return maxsim_matrix(q.vectors, d.vectors, q.mask, d.mask)
        return model(queries, documents)


def _mean_rank(model) -> float:
    """Mean rank (1 = first) of each query's own document among the six."""
    scores = _scores(model)
    own = scores.diagonal()[:, None]
    return float((scores > own).sum(dim=1).float().mean()) + 1.0


def _first_place(model) -> int:
    return int((_scores(model).argmax(dim=1) == torch.arange(len(PLANTED))).sum())


@pytest.mark.parametrize("kind", ["colbert", "poly"])
def test_a_tiny_model_learns_to_rank_its_planted_document_first(kind: str, backbone: Path, tmp_path: Path) -> None:
    model = _colbert(backbone) if kind == "colbert" else _poly(backbone)
    before_rank, before_first = _mean_rank(model), _first_place(model)
    step = colbert_step(model) if kind == "colbert" else poly_step(model)  # type: ignore[arg-type]
    result = Trainer(model, CONFIG, tmp_path, step, show_progress=False).fit(EXAMPLES)
    losses = [__import__("json").loads(line)["loss"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    after_rank, after_first = _mean_rank(model), _first_place(model)
    assert result.steps == 2 * CONFIG.epochs
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4]), losses
    assert before_first <= 3 and after_first >= len(PLANTED) - 1, (before_first, after_first)
    assert after_rank < before_rank, (before_rank, after_rank)


@pytest.mark.parametrize("kind", ["colbert", "poly"])
def test_distillation_moves_the_student_towards_the_teacher_margin(kind: str, backbone: Path) -> None:
    model = _colbert(backbone) if kind == "colbert" else _poly(backbone)
    make = colbert_distill_step if kind == "colbert" else poly_distill_step
    list_scores = colbert_list_scores if kind == "colbert" else poly_list_scores
    step = make(model, DistillLoss("listwise_kl", label_weight=0.5))  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        model.train()
        losses.append(step(EXAMPLES))
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        scores = list_scores(model, EXAMPLES, 1)  # type: ignore[arg-type]
    assert losses[-1] < 0.5 * losses[0], losses
    assert bool((scores[:, 0] > scores[:, 1]).all())  # the teacher's order: positive above the negative


def test_steps_refuse_batches_they_cannot_train_on(backbone: Path) -> None:
    model = _poly(backbone)
    bare = [ContrastiveExample(q, p) for q, p in PLANTED[:2]]
    with pytest.raises(InvalidInput, match="needs at least one negative"):
        poly_step(model, LateInteractionLoss(in_batch=False))(bare)
    with pytest.raises(InvalidInput, match="distillation needs at least one negative"):
        poly_distill_step(model)(bare)
    assert poly_step(model)(bare) > 0  # in-batch negatives alone are enough for the contrastive loss
    with pytest.raises(InvalidInput, match="temperature must be"):
        LateInteractionLoss(temperature=0)
