"""The training loop on tiny models: it learns planted relevance, every loss lowers its dev loss, resume is exact."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bicross.training import losses
from bicross.training.data import ContrastiveExample
from bicross.training.models import TrainableBiEncoder, TrainableCrossEncoder
from bicross.training.recipes import Recipe, _bi_encoder_step, _cross_encoder_step
from bicross.training.trainer import LOG, PLOT, TrainConfig, Trainer

# Planted relevance: each query's words never occur in its document, so only training can connect them.
PLANTED = [("paris france capital", "vitamin d cancer risk"), ("dog fox jumps", "berlin city germany"),
           ("museum art", "heart blood patients"), ("river population", "gene protein cell study"),
           ("weather nice today", "quick brown running"), ("how many people", "million live where")]
EXAMPLES = [ContrastiveExample(query, positive, (PLANTED[(i + 1) % len(PLANTED)][1],), f"q{i}", f"d{i}",
                               (f"d{(i + 1) % len(PLANTED)}",), scores=(2.0, -1.0)) for i, (query, positive) in
            enumerate(PLANTED)]
# every other planted document as a negative: what a reranker must learn to put below the positive
ALL_NEGATIVES = [ContrastiveExample(e.query, e.positive, tuple(p for _, p in PLANTED if p != e.positive), e.query_id,
                                    e.positive_id) for e in EXAMPLES]
DEV = [ContrastiveExample(" ".join(reversed(e.query.split())), e.positive, e.negatives, e.query_id, e.positive_id,
                          e.negative_ids, e.scores) for e in EXAMPLES]  # the same associations, worded otherwise
CONFIG = TrainConfig(epochs=12, batch_size=3, learning_rate=2e-3, warmup_ratio=0.0, dtype="float32", checkpoint_every=4)


def _bi_encoder(path: Path) -> TrainableBiEncoder:
    return TrainableBiEncoder.from_pretrained(str(path), max_length=32)


def _cross_encoder(path: Path) -> TrainableCrossEncoder:
    return TrainableCrossEncoder.from_pretrained(str(path), max_length=32)


def _first_place_count(model, kind: str) -> int:
    """How many planted queries rank their own document first among all planted documents."""
    documents = [positive for _, positive in PLANTED]
    model.eval()
    with torch.no_grad():
        if kind == "bi":
            scores = model(model.tokenize([q for q, _ in PLANTED], "query")) @ \
                model(model.tokenize(documents, "document"), "document").T  # (queries, documents)
        else:
            scores = torch.stack([model(model.tokenize([q] * len(documents), documents)) for q, _ in PLANTED])
    return int((scores.argmax(dim=1) == torch.arange(len(PLANTED))).sum())


@pytest.mark.parametrize("kind", ["bi", "cross"])
def test_a_tiny_model_learns_to_rank_planted_relevant_documents_first(kind: str, tiny_encoder_path: Path,
                                                                      tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _bi_encoder(tiny_encoder_path) if kind == "bi" else _cross_encoder(tiny_encoder_path)
    before = _first_place_count(model, kind)
    step = _bi_encoder_step(model, Recipe()) if kind == "bi" else _cross_encoder_step(model)
    # a 2-layer, 32-wide cross-encoder needs many more steps than the bi-encoder to learn six associations
    config = CONFIG if kind == "bi" else replace(CONFIG, epochs=100, learning_rate=5e-3, checkpoint_every=1000)
    result = Trainer(model, config, tmp_path, step, show_progress=False).fit(EXAMPLES if kind == "bi" else ALL_NEGATIVES)
    after = _first_place_count(model, kind)
    assert before <= 2 and after >= len(PLANTED) - (kind == "cross"), (before, after)
    assert result.steps == 2 * config.epochs and (tmp_path / LOG).is_file() and (tmp_path / PLOT).is_file()


def _loss_cases() -> dict[str, tuple[str, Callable]]:
    def info(model, batch):
        q = model(model.tokenize([e.query for e in batch], "query"))
        p = model(model.tokenize([e.positive for e in batch], "document"))
        n = model(model.tokenize([e.negatives[0] for e in batch], "document"))
        return {"info_nce": lambda: losses.info_nce(q, p, n.unsqueeze(1)),
                "triplet": lambda: losses.triplet_loss(q, p, n, margin=1.0, distance="cosine")}

    def cross(model, batch):
        pos = model(model.tokenize([e.query for e in batch], [e.positive for e in batch]))
        neg = model(model.tokenize([e.query for e in batch], [e.negatives[0] for e in batch]))
        both = torch.stack([pos, neg], dim=1)  # (batch, 2)
        ones, teacher = torch.ones_like(pos), torch.tensor([e.scores for e in batch])
        return {"bce": lambda: losses.binary_cross_entropy(torch.cat([pos, neg]), torch.cat([ones, 0 * ones]), pos_weight=2.0),
                "mse_on_sigmoid": lambda: losses.mse_on_sigmoid(torch.cat([pos, neg]), torch.cat([0.9 * ones, 0.1 * ones])),
                "pairwise_margin": lambda: losses.pairwise_margin(pos, neg),
                "listwise_softmax": lambda: losses.listwise_softmax(both, torch.tensor([[1.0, 0.0]] * len(batch))),
                "margin_mse": lambda: losses.margin_mse(pos, neg.unsqueeze(1), teacher[:, 0], teacher[:, 1:]),
                "listwise_kl": lambda: losses.listwise_kl(both, teacher, temperature=2.0)}

    return {name: ("bi", info) for name in ("info_nce", "triplet")} | {
        name: ("cross", cross) for name in ("bce", "mse_on_sigmoid", "pairwise_margin", "listwise_softmax", "margin_mse",
                                            "listwise_kl")}


@pytest.mark.parametrize("name", list(_loss_cases()))
def test_every_loss_trains_a_tiny_model_to_a_lower_dev_loss(name: str, tiny_encoder_path: Path, tmp_path: Path) -> None:
    kind, losses_of = _loss_cases()[name]
    torch.manual_seed(0)
    model = _bi_encoder(tiny_encoder_path) if kind == "bi" else _cross_encoder(tiny_encoder_path)

    def dev_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(losses_of(model, DEV)[name]())

    def step(batch) -> float:
        value = losses_of(model, batch)[name]()
        value.backward()
        return float(value.detach())

    before = dev_loss()
    Trainer(model, replace(CONFIG, epochs=24, learning_rate=5e-3), tmp_path, step, show_progress=False).fit(EXAMPLES)
    assert dev_loss() < before, name


def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_encoder_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=2, learning_rate=1e-3, dtype="float32", checkpoint_every=100)

    def run(out: Path, stop_after: int | None = None) -> TrainableBiEncoder:
        torch.manual_seed(0)
        model = _bi_encoder(tiny_encoder_path)  # dropout is on: the RNG must be restored too
        evaluations = iter(range(100))  # a dev metric that rises, so "best" moves and is checkpointed
        Trainer(model, config, out, _bi_encoder_step(model, Recipe()),
                evaluate=lambda: {"ndcg@10": float(next(evaluations))}, show_progress=False).fit(EXAMPLES, stop_after)
        return model

    straight = run(tmp_path / "straight")
    run(tmp_path / "resumed", stop_after=4)  # killed after step 4 (mid epoch 2)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    resumed = run(tmp_path / "resumed")
    difference = max(float((a - b).abs().max()) for a, b in zip(straight.state_dict().values(),
                                                                resumed.state_dict().values(), strict=True))
    assert difference <= 1e-6
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # finished: nothing left to resume
    steps = [line for line in (tmp_path / "resumed" / LOG).read_text().splitlines()]
    assert len(steps) == 9  # each step logged once, across the interruption


def test_a_checkpoint_from_other_settings_is_refused(tiny_encoder_path: Path, tmp_path: Path) -> None:
    from bicross.errors import InvalidInput

    model = _bi_encoder(tiny_encoder_path)
    Trainer(model, CONFIG, tmp_path, _bi_encoder_step(model, Recipe()), show_progress=False).fit(EXAMPLES, stop_after=1)
    other = TrainConfig(epochs=2, batch_size=3, dtype="float32")
    with pytest.raises(InvalidInput, match="written with other settings"):
        Trainer(model, other, tmp_path, _bi_encoder_step(model, Recipe()), show_progress=False).fit(EXAMPLES)


def _hardest_negative_refresh(model: TrainableBiEncoder, folder: Path, calls: list[int]):
    """A refresh as the recipe's works: the current model picks each query's hardest non-positive document,
    and what step R picked is stored, so a resumed run reads it back instead of recomputing it."""
    documents = [positive for _, positive in PLANTED]

    def refresh(step: int, examples):
        stored = folder / f"refresh-{step}.json"
        if not stored.is_file():
            calls.append(step)
            with torch.no_grad():
                scores = model(model.tokenize([e.query for e in examples], "query")) @ \
                    model(model.tokenize(documents, "document"), "document").T
            picks = []
            for row, example in enumerate(examples):
                order = [int(i) for i in scores[row].argsort(descending=True) if documents[int(i)] != example.positive]
                picks.append(order[0])
            stored.write_text(json.dumps(picks))
        picks = json.loads(stored.read_text())
        return [replace(e, negatives=(documents[p],), negative_ids=(f"d{p}",)) for e, p in zip(examples, picks, strict=True)]

    return refresh


def test_negatives_refreshed_by_the_model_being_trained_resume_exactly(tiny_encoder_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=4, batch_size=2, learning_rate=1e-3, dtype="float32", checkpoint_every=100,
                         refresh_every=3)

    def run(out: Path, stop_after: int | None = None) -> tuple[TrainableBiEncoder, list[int]]:
        torch.manual_seed(0)
        model, calls = _bi_encoder(tiny_encoder_path), []
        out.mkdir(exist_ok=True)
        Trainer(model, config, out, _bi_encoder_step(model, Recipe()), show_progress=False,
                refresh=_hardest_negative_refresh(model, out, calls)).fit(EXAMPLES, stop_after)
        return model, calls

    straight, calls = run(tmp_path / "straight")
    assert calls == [3, 6, 9]  # 12 steps: refreshed after steps 3, 6 and 9, never after the last
    run(tmp_path / "resumed", stop_after=3)  # killed at a refresh step, before refreshing
    _, calls_first = run(tmp_path / "resumed", stop_after=7)  # refresh 3 computed now, from the same weights; killed past 6
    resumed, calls_last = run(tmp_path / "resumed")  # refresh 6 is read back, 9 computed
    assert calls_first == [3, 6] and calls_last == [9]
    difference = max(float((a - b).abs().max()) for a, b in zip(straight.state_dict().values(),
                                                                resumed.state_dict().values(), strict=True))
    assert difference <= 1e-6
    for step in (3, 6, 9):
        assert (tmp_path / "straight" / f"refresh-{step}.json").read_text() == \
            (tmp_path / "resumed" / f"refresh-{step}.json").read_text()
    first_picks = json.loads((tmp_path / "straight" / "refresh-3.json").read_text())
    assert any(f"d{pick}" != e.negative_ids[0] for pick, e in zip(first_picks, EXAMPLES, strict=True))  # they changed
