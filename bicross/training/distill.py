"""`bicross distill`: a cross-encoder teaches a bi-encoder or a smaller cross-encoder, every step resumable.

train split -> a dev part held out (seeded, as `bicross train` does; the test split is never read) ->
candidates for the train queries mined from the user's collection (`count` per (query, positive), the
recipe's first stage and window; the false-negative guard is off by default: the teacher's score of a
false negative is high, so Margin-MSE asks for a small margin there instead of pushing it away) -> the
teacher scores every (query, positive/candidate) pair through a score cache on disk (`labels.py`) -> the
student is trained on the teacher's scores (`distill_steps.py`: Margin-MSE, listwise KL or MSE, plus
optionally a loss on the labels) by the recipe's Trainer, with the recipe's dev evaluation after each epoch,
the best epoch kept -> `OUT/model` with a card -> for a bi-encoder student, the collection re-indexed with
it into `OUT/index` (a new folder: the old index is not touched and stays usable).

Resuming: mining skips the queries already written (`candidates.done` marks the end), labelling reads the
cache (`labels.jsonl` is written whole at the end), training resumes from `OUT/run/checkpoint.pt`, the dev
numbers before training and of the teacher are kept in `OUT/dev_*.json`, and the index is built again only
if `OUT/index` was built with other weights. A cross-encoder student may be cut from its checkpoint first
(`student_layers`, see `students.py`); the cut is deterministic, so a resumed run rebuilds the same start.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bicross.errors import InvalidInput
from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER
from bicross.training.data import ContrastiveExample, load_beir_training, read_contrastive_jsonl, split_dev
from bicross.training.distill_steps import DistillLoss, bi_encoder_distill_step, cross_encoder_distill_step
from bicross.training.labels import LabelReport, label_examples
from bicross.training.mining import MiningConfig, MiningReport, mine_once
from bicross.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["DistillConfig", "DistillResult", "distill"]

Kind = Literal["bi-encoder", "cross-encoder"]


@dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on besides the data, the collection and the student."""

    train: TrainConfig = TrainConfig(epochs=3, batch_size=32, learning_rate=2e-5)
    mining: MiningConfig = MiningConfig(count=4, depth=30)
    loss: DistillLoss = DistillLoss()
    teacher: str = DEFAULT_CROSS_ENCODER
    teacher_max_length: int = 256
    guard: bool = False  # drop candidates the teacher ranks about as high as a positive (see the module notes)
    split: str = "train"
    dev_fraction: float = 0.1
    dev_depth: int = 20
    dev_teacher: bool = True  # also report the teacher's dev score (reranking the same first-stage top dev_depth)
    max_length: int = 256  # the student's
    negatives_per_example: int | None = None  # None: mining.count; examples with fewer candidates are left out
    student_layers: int = 0  # cross-encoder students: keep this many of the checkpoint's layers; 0: all
    save_every: int = 16  # queries between saves of the teacher's score cache

    def __post_init__(self) -> None:
        if self.negatives_per_example is not None and not 1 <= self.negatives_per_example <= self.mining.count:
            raise InvalidInput(f"negatives_per_example must be between 1 and the mined count ({self.mining.count}), "
                               f"got {self.negatives_per_example}: distillation compares a positive with candidates")
        if self.student_layers < 0:
            raise InvalidInput(f"student_layers must be 0 (keep all) or a number of layers, got {self.student_layers}")

    @property
    def candidates(self) -> int:
        """Mined candidates (negatives) per training example."""
        return self.mining.count if self.negatives_per_example is None else self.negatives_per_example


@dataclass(frozen=True)
class DistillResult:
    """Where the student (and its index) went, what each step did, and the dev metrics."""

    model: Path
    index: Path | None
    train: TrainResult
    mining: MiningReport | None
    labels: LabelReport | None
    dev_before: dict[str, float]
    dev_after: float | None
    dev_teacher: dict[str, float] | None
    details: dict[str, Any] = field(default_factory=dict)


def distill(kind: Kind, data: str | Path, student: str, out: str | Path, index: str | Path,
            config: DistillConfig = DistillConfig(), teacher=None, command: str = "",
            show_progress: bool = True) -> DistillResult:
    """Run the distillation; a rerun with the same `out` resumes. `teacher` (a CrossEncoder) overrides `config.teacher`."""
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder
    from bicross.training.recipes import CachedTeacher, cached_json, dev_pool, evaluate_in_eval_mode

    if kind not in ("bi-encoder", "cross-encoder"):
        raise InvalidInput(f"distil into what? 'bi-encoder' or 'cross-encoder', got {kind!r}")
    if kind == "bi-encoder" and config.student_layers:
        raise InvalidInput("student_layers cuts a cross-encoder student; for a bi-encoder pick a smaller checkpoint")
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    queries, documents = load_beir_training(data, config.split)
    train_queries, dev_queries = split_dev(queries, config.dev_fraction, config.train.seed)
    collection = Collection.open(index)
    first_encoder = BiEncoder.load(collection.manifest["model"]["name"])
    teacher = teacher if teacher is not None else CrossEncoder.load(config.teacher, max_length=config.teacher_max_length)
    if len(teacher.labels) > 1:
        raise InvalidInput(f"the teacher {teacher.name} has {len(teacher.labels)} labels {teacher.labels}: distillation "
                           "needs a one-logit relevance cross-encoder")
    cached = CachedTeacher(teacher, out / "teacher-scores.json")

    mining = mine_once(collection, first_encoder, train_queries, out / "candidates.jsonl", config.mining,
                       cached if config.guard else None, show_progress)
    cached.save()
    labels = None
    if not (out / "labels.jsonl").is_file():
        _, labels = label_examples(read_contrastive_jsonl(out / "candidates.jsonl"), cached, out / "labels.jsonl",
                                   config.save_every, show_progress)
    examples = _trimmed(read_contrastive_jsonl(out / "labels.jsonl"), config.candidates)

    pool = dev_pool(collection, first_encoder, dev_queries, config.dev_depth)
    model, step, evaluate = _student(kind, student, config, dev_queries, pool, documents)
    dev_teacher = None
    if config.dev_teacher:
        dev_teacher = cached_json(out / "dev_teacher.json", lambda: _rerank_dev(cached, dev_queries, pool, documents))
        cached.save()
    card = _card(kind, student, teacher.identity, data, config, command, len(examples), len(dev_queries))
    trainer = Trainer(model, config.train, out / "run", step, evaluate,
                      save_best=lambda folder: model.save(folder, card), show_progress=show_progress)
    dev_before = cached_json(out / "dev_before.json", lambda: evaluate_in_eval_mode(model, evaluate))
    result = trainer.fit(examples)
    final = out / "model"
    if (out / "run" / "best").is_dir():
        best_card = card + (f"\n## Dev results\n\nbefore distillation: {dev_before}\nteacher: {dev_teacher}\nbest: "
                            f"{result.best_metric:.4f} ({config.train.metric}, step {result.best_step})\n")
        (out / "run" / "best" / "README.md").write_text(best_card, encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / "run" / "best", final)
    new_index = None
    if kind == "bi-encoder" and final.is_dir():
        new_index = _reindex(collection, final, out / "index", show_progress)
    return DistillResult(final, new_index, result, mining, labels, dev_before, result.best_metric, dev_teacher,
                         {"train_queries": len(train_queries), "dev_queries": len(dev_queries),
                          "examples": len(examples)})


def _student(kind: Kind, student: str, config: DistillConfig, dev_queries, pool: dict[str, list[str]], documents):
    """The trainable student, its distillation step and its dev evaluation over `pool` (the recipe's)."""
    from bicross.training.models import TrainableBiEncoder, TrainableCrossEncoder
    from bicross.training.recipes import dev_rerank, dev_retrieval

    if kind == "bi-encoder":
        model: Any = TrainableBiEncoder.from_pretrained(student, max_length=config.max_length)
        return (model, bi_encoder_distill_step(model, config.loss),
                lambda: dev_retrieval(model, dev_queries, pool, documents))
    model = TrainableCrossEncoder.from_pretrained(student, max_length=config.max_length)
    if config.student_layers:
        from bicross.training.students import shrink_cross_encoder

        model = shrink_cross_encoder(model, config.student_layers)
    return (model, cross_encoder_distill_step(model, config.loss),
            lambda: dev_rerank(model, dev_queries, pool, documents))


def _trimmed(examples: list[ContrastiveExample], count: int) -> list[ContrastiveExample]:
    """Examples with at least `count` candidates, cut to `count` (their scores too).

    >>> row = ContrastiveExample("q", "p", ("a", "b"), scores=(3.0, 1.0, 2.0))
    >>> _trimmed([row, ContrastiveExample("q", "p", ("a",), scores=(1.0, 0.0))], 2) == [row], _trimmed([row], 1)[0].scores
    (True, (3.0, 1.0))
    """
    kept = [replace(e, negatives=e.negatives[:count], negative_ids=e.negative_ids[:count],
                    scores=None if e.scores is None else e.scores[:1 + count]) for e in examples
            if len(e.negatives) >= count]
    if not kept:
        raise InvalidInput(f"no mined example has {count} candidates: lower negatives_per_example or mine deeper")
    return kept


def _rerank_dev(scorer, dev_queries, pool: dict[str, list[str]], documents) -> dict[str, float]:
    """The dev queries' first-stage candidates ordered by `scorer`'s scores alone (as the recipe's `dev_rerank`)."""
    from bicross.evaluation import evaluate

    pairs = [(q.text, documents[d].full_text) for q in dev_queries for d in pool[q.query_id]]
    scores = iter(scorer.score(pairs).tolist())
    run = {q.query_id: {d: next(scores) for d in pool[q.query_id]} for q in dev_queries}
    return evaluate(run, {q.query_id: dict(q.judgments) for q in dev_queries}, ["ndcg@10", "mrr@10"]).mean


def _reindex(old, model: Path, target: Path, show_progress: bool):
    """`old`'s documents embedded with `model` into `target`, with `old`'s BM25, dense-search and quantization
    settings; kept as it is if it was already built with these weights."""
    from bicross.encoders import BiEncoder
    from bicross.index.ann import AnnConfig
    from bicross.index.bm25 import Bm25Config
    from bicross.index.collection import Collection

    encoder = BiEncoder.load(str(model.resolve()))
    if (target / "manifest.json").is_file():
        existing = Collection.open(target)
        if existing.manifest["model"]["fingerprint"] == encoder.fingerprint:
            return target
    manifest = old.manifest
    Collection.build(target, old.documents, encoder, show_progress=show_progress,
                     bm25_config=Bm25Config.from_dict(manifest["bm25"]), ann=AnnConfig.from_dict(manifest["ann"]["config"]),
                     quantization=manifest["quantization"]["kind"], passages=old.passage_config)
    return target


def _card(kind: str, student: str, teacher: str, data: Path, config: DistillConfig, command: str, examples: int,
          dev: int) -> str:
    settings = json.dumps(asdict(config), indent=2, default=str)
    loss = config.loss.kind + (f" + {config.loss.label_weight} x loss on labels" if config.loss.label_weight else "")
    return (f"# bicross {kind} (distilled)\n\nDistilled from the cross-encoder `{teacher}` into `{student}` with "
            f"bicross.\n\n- training data: `{data}` split `{config.split}` ({examples} examples, each a positive and "
            f"{config.candidates} mined candidates scored by the teacher; {dev} queries held out as dev; "
            "the test split was not used). Check the collection's and the teacher's licences before you publish "
            f"this model (SciFact: CC BY-NC 2.0).\n- loss: {loss}\n- command: `{command or 'bicross distill ...'}`"
            f"\n\n## Settings\n\n```json\n{settings}\n```\n")
