"""The training recipes behind `bicross train`: from a BEIR folder to a fine-tuned model, every step resumable.

Bi-encoder: train split -> a dev part held out (seeded) -> the base model's collection (built once, or
the user's `--index`) -> hard negatives mined from its hybrid first stage, guarded against false negatives
by the packaged cross-encoder -> InfoNCE over in-batch and mined negatives (GradCache when the batch is
split in chunks) -> dev nDCG@10 after each epoch by dense retrieval over a dev pool (the dev queries'
first-stage top `dev_depth` plus their positives, so an evaluation costs a pool, not the corpus) -> the
best epoch saved in the sentence-transformers format with a model card.
Cross-encoder: the same data and negatives -> listwise softmax cross-entropy over [positive, negatives]
-> dev nDCG@10 of reranking the dev queries' first-stage top `dev_depth` by the model's order alone.
The test split is never read here: test numbers come from `bicross eval` on the saved model.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample, JudgedQuery, load_beir_training, read_contrastive_jsonl, split_dev
from bicross.training.mining import MiningConfig, MiningReport, mine_once
from bicross.training.models import TrainableBiEncoder, TrainableCrossEncoder
from bicross.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["CachedTeacher", "Recipe", "RecipeResult", "cached_json", "default_recipe", "dev_pool", "dev_rerank",
           "dev_retrieval", "evaluate_in_eval_mode", "first_stage_collection", "live_bi_encoder", "live_cross_encoder",
           "train_model", "with_negatives"]

Kind = Literal["bi-encoder", "cross-encoder"]


@dataclass(frozen=True)
class Recipe:
    """Everything a run depends on besides the data: the defaults are the measured recipe."""

    train: TrainConfig = TrainConfig(epochs=5, batch_size=32, learning_rate=2e-5)  # 5: dev 0.753 vs 0.722 at 3
    mining: MiningConfig = MiningConfig(count=1, guard_pool=8)
    guard: bool = True  # drop mined candidates the teacher judges about as relevant as a positive
    teacher: str = "cross-encoder/ms-marco-MiniLM-L-12-v2"
    first_stage_model: str = "sentence-transformers/all-MiniLM-L6-v2"  # a cross-encoder's candidates come from it
    split: str = "train"
    dev_fraction: float = 0.1
    dev_depth: int = 20
    temperature: float = 0.05
    chunk_size: int = 0  # GradCache rows per forward pass; 0 = the whole batch at once
    max_length: int = 256
    negatives_per_example: int = 1
    pooling: str | None = None  # bi-encoders: None keeps the base model's pooling; "learned" learns a weighted mean


def default_recipe(kind: Kind) -> Recipe:
    """The measured defaults for `kind`.

    Cross-encoders differ from bi-encoders on purpose. Their negatives are 3 drawn at random from the first
    stage's top 30 (the candidates they will rerank), with no guard: the guard's teacher is the packaged
    cross-encoder, i.e. the model being fine-tuned, and it kept only negatives that model already ranked far
    down (dev nDCG@10 0.7234 -> 0.7240). With these defaults, 1 epoch in batches of 8 gave 0.7234 -> 0.7468 on
    SciFact dev.
    """
    if kind == "bi-encoder":
        return Recipe()
    return replace(Recipe(), train=TrainConfig(epochs=1, batch_size=8, learning_rate=2e-5), guard=False,
                   mining=MiningConfig(count=3, depth=30, sampling="random"), negatives_per_example=3)


@dataclass(frozen=True)
class RecipeResult:
    """Where the model went, what training and mining did, and the dev metric before and after."""

    model: Path
    train: TrainResult
    mining: MiningReport | None
    dev_before: dict[str, float]
    dev_after: float | None
    details: dict[str, Any] = field(default_factory=dict)


def train_model(kind: Kind, data: str | Path, base: str, out: str | Path, recipe: Recipe | None = None,
                index: str | Path | None = None, command: str = "", show_progress: bool = True) -> RecipeResult:
    """Run the recipe (None: `default_recipe(kind)`); a rerun with the same `out` resumes where the last one stopped."""
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder

    recipe = default_recipe(kind) if recipe is None else recipe
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    queries, documents = load_beir_training(data, recipe.split)
    train_queries, dev_queries = split_dev(queries, recipe.dev_fraction, recipe.train.seed)
    if index is not None:
        collection = Collection.open(index)
        first_encoder = BiEncoder.load(collection.manifest["model"]["name"])
    else:
        first_encoder = BiEncoder.load(base if kind == "bi-encoder" else recipe.first_stage_model)
        collection = first_stage_collection(out / "base-index", documents, first_encoder, show_progress)
    teacher = CachedTeacher(CrossEncoder.load(recipe.teacher, max_length=recipe.max_length),
                             out / "teacher-scores.json") if recipe.guard else None
    report = mine_once(collection, first_encoder, train_queries, out / "negatives.jsonl", recipe.mining, teacher,
                       show_progress)
    examples = with_negatives(read_contrastive_jsonl(out / "negatives.jsonl"), recipe.negatives_per_example)
    pool = dev_pool(collection, first_encoder, dev_queries, recipe.dev_depth)
    refresh = None
    if kind == "bi-encoder":
        model: Any = TrainableBiEncoder.from_pretrained(base, max_length=recipe.max_length, pooling=recipe.pooling)
        step, evaluate = _bi_encoder_step(model, recipe), lambda: dev_retrieval(model, dev_queries, pool, documents)
        refresh = _refresher(model, documents, train_queries, recipe, teacher, out / "run" / "refresh", show_progress)
    elif recipe.train.refresh_every:
        raise InvalidInput("refresh_every re-mines negatives with the bi-encoder being trained; a cross-encoder's "
                           "candidates come from a fixed first stage, so set it to 0 for cross-encoders")
    else:
        model = TrainableCrossEncoder.from_pretrained(base, max_length=recipe.max_length)
        step, evaluate = _cross_encoder_step(model), lambda: dev_rerank(model, dev_queries, pool, documents)
    card = _card(kind, base, data, recipe, command, len(examples), len(dev_queries))
    trainer = Trainer(model, recipe.train, out / "run", step, evaluate,
                      save_best=lambda folder: model.save(folder, card), show_progress=show_progress, refresh=refresh)
    dev_before = cached_json(out / "dev_before.json", lambda: evaluate_in_eval_mode(model, evaluate))
    result = trainer.fit(examples)
    final = out / "model"
    if (out / "run" / "best").is_dir():
        best_card = card + f"\n## Dev results\n\nbefore training: {dev_before}\nbest: {result.best_metric:.4f} " \
                           f"({recipe.train.metric}, step {result.best_step})\n"
        (out / "run" / "best" / "README.md").write_text(best_card, encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / "run" / "best", final)
    return RecipeResult(final, result, report, dev_before, result.best_metric,
                        {"train_queries": len(train_queries), "dev_queries": len(dev_queries),
                         "examples": len(examples), "dev_pool": len(pool)})


def live_bi_encoder(model: TrainableBiEncoder):
    """A `BiEncoder` that runs the model being trained (its current weights), for evaluation and mining."""
    from bicross.encoders.bi_encoder import BiEncoder, Tower
    from bicross.models.backends import TorchBackend
    from bicross.models.tokenization import Tokenizer

    def tower(module: torch.nn.Module) -> Tower:
        return Tower(TorchBackend(module), Tokenizer(model.tokenizer), model.base, "training", model.pooling_weight)

    documents = None if model.document_model is None else tower(model.document_model)
    return BiEncoder(tower(model.query_model), model.settings, documents, batch_size=32)


def live_cross_encoder(model: TrainableCrossEncoder):
    """A `CrossEncoder` that runs the model being trained, for evaluation."""
    from bicross.models.backends import TorchBackend
    from bicross.models.tokenization import Tokenizer
    from bicross.rerankers import CrossEncoder

    return CrossEncoder(TorchBackend(model.model), Tokenizer(model.tokenizer), name=model.base,
                        max_length=model.max_length, batch_size=16)


def _bi_encoder_step(model: TrainableBiEncoder, recipe: Recipe):
    from bicross.training.grad_cache import cached_contrastive_backward
    from bicross.training.losses import duplicate_candidate_mask, info_nce

    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = min(len(example.negatives) for example in examples)
        columns = [model.tokenize([e.query for e in examples], "query"),
                   model.tokenize([e.positive for e in examples], "document")]
        negative_ids = [list(e.negative_ids[:count]) for e in examples] if count else None
        if count:
            columns.append(model.tokenize([n for e in examples for n in e.negatives[:count]], "document"))
        mask = duplicate_candidate_mask([e.positive_id or e.positive for e in examples], negative_ids)

        def loss(embeddings: list[torch.Tensor]) -> torch.Tensor:
            negatives = embeddings[2].view(len(examples), count, -1) if count else None
            return info_nce(embeddings[0].float(), embeddings[1].float(),
                            None if negatives is None else negatives.float(), temperature=recipe.temperature,
                            false_negative_mask=mask)

        kinds = ["query", "document", "document"]
        if recipe.chunk_size and model.document_model is None:
            return cached_contrastive_backward(lambda batch: model(batch, "query"), columns, loss, recipe.chunk_size)
        value = loss([model(batch, kind) for batch, kind in zip(columns, kinds, strict=False)])
        value.backward()
        return float(value.detach())

    return step


def _cross_encoder_step(model: TrainableCrossEncoder):
    from bicross.training.losses import listwise_softmax

    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = min(len(example.negatives) for example in examples)
        if count == 0:
            raise InvalidInput("cross-encoder training needs at least one negative per example (mine them first)")
        queries = [e.query for e in examples for _ in range(1 + count)]
        texts = [t for e in examples for t in (e.positive, *e.negatives[:count])]
        scores = model(model.tokenize(queries, texts)).float().view(len(examples), 1 + count)  # (B, 1 + k)
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        value = listwise_softmax(scores, labels)
        value.backward()
        return float(value.detach())

    return step


class CachedTeacher:
    """The guard's cross-encoder behind a score cache kept in the run folder: a refresh (or a rerun) that meets a
    (query, candidate) pair again does not score it again."""

    def __init__(self, teacher: Any, path: Path) -> None:
        from bicross.rerankers.cache import ScoreCache

        self.teacher, self.path = teacher, path
        self.cache = ScoreCache.load(path, teacher.identity) if path.is_file() else ScoreCache()

    def score(self, pairs: Sequence[tuple[str, str]]) -> Any:
        return self.cache.score(pairs, self.teacher.score)

    def save(self) -> None:
        self.cache.save(self.path, self.teacher.identity)


def _refresher(model: TrainableBiEncoder, documents: dict, queries: Sequence[JudgedQuery], recipe: Recipe,
               teacher: CachedTeacher | None, folder: Path, show_progress: bool):
    """`refresh(step, examples)` for the Trainer: embed the corpus with the model being trained, mine again
    with the same window and guard, and swap each (query, positive)'s negatives for the new ones. What step R
    mined is kept in `folder/step-R` (the index is deleted once mined), so a resumed run reads it back."""

    def refresh(step: int, examples: Sequence[ContrastiveExample]) -> list[ContrastiveExample]:
        target = folder / f"step-{step:06d}"
        mined = target / "negatives.jsonl"
        if not (target / "negatives.done").is_file():
            index = target / "index"
            if index.exists() and not (index / "manifest.json").is_file():
                shutil.rmtree(index)  # killed while building: build again
            encoder = live_bi_encoder(model)
            collection = first_stage_collection(index, documents, encoder, show_progress)
            mine_once(collection, encoder, queries, mined, recipe.mining, teacher, show_progress)
            shutil.rmtree(index)
        return _swap_negatives(examples, read_contrastive_jsonl(mined), recipe.negatives_per_example)

    return refresh


def _swap_negatives(examples: Sequence[ContrastiveExample], mined: Sequence[ContrastiveExample],
                    count: int) -> list[ContrastiveExample]:
    """Each example with the newly mined negatives of its (query, positive), where at least `count` were
    found; otherwise the ones it had (the order and length stay the same: the Trainer's position depends on it).

    >>> old = [ContrastiveExample("q", "p", ("n1",), "q1", "d1", ("n1",))]
    >>> new = [ContrastiveExample("q", "p", ("n2",), "q1", "d1", ("n2",))]
    >>> [e.negative_ids for e in _swap_negatives(old, new, 1)], [e.negative_ids for e in _swap_negatives(old, [], 1)]
    ([('n2',)], [('n1',)])
    """
    fresh = {(e.query_id, e.positive_id): e for e in mined if len(e.negatives) >= count}
    swapped = []
    for example in examples:
        new = fresh.get((example.query_id, example.positive_id))
        swapped.append(example if new is None else
                       replace(example, negatives=new.negatives[:count], negative_ids=new.negative_ids[:count]))
    return swapped


def with_negatives(examples: list[ContrastiveExample], count: int) -> list[ContrastiveExample]:
    """The examples with at least `count` mined negatives, cut to their first `count`."""
    kept = [replace(e, negatives=e.negatives[:count], negative_ids=e.negative_ids[:count]) for e in examples
            if len(e.negatives) >= count]
    if not kept:
        raise InvalidInput(f"no mined example has {count} negatives: lower negatives_per_example or mine deeper")
    return kept


def first_stage_collection(folder: Path, documents: dict, encoder, show_progress: bool):
    """The collection at `folder` (built there once from `documents` with `encoder`: what mining reads)."""
    from bicross.index.collection import Collection

    if (folder / "manifest.json").is_file():
        return Collection.open(folder)
    corpus = [document for document in documents.values() if document.full_text.strip()]
    return Collection.build(folder, corpus, encoder, show_progress=show_progress)


def dev_pool(collection, encoder, dev_queries: Sequence[JudgedQuery], depth: int) -> dict[str, list[str]]:
    """Per dev query, its first-stage top `depth` ids (the candidates it is reranked over)."""
    from bicross.retrieval import FirstStageConfig, retrieve

    ranked, _ = retrieve(collection, encoder, [q.text for q in dev_queries], depth, FirstStageConfig())
    return {q.query_id: [collection.documents[row].id for row in ids.tolist()]
            for q, (ids, _) in zip(dev_queries, ranked, strict=True)}


def dev_retrieval(model: TrainableBiEncoder, dev_queries, pool: dict[str, list[str]], documents) -> dict[str, float]:
    """Dense retrieval over the dev pool (every dev query's candidates and positives, as one small corpus)."""
    from bicross.evaluation import evaluate
    from bicross.scoring.similarity import top_k_rows

    ids = list(dict.fromkeys([d for q in dev_queries for d in pool[q.query_id]] +
                             [d for q in dev_queries for d in q.positives]))
    encoder = live_bi_encoder(model)
    document_vectors = encoder.encode_documents([documents[d].full_text for d in ids])
    query_vectors = encoder.encode_queries([q.text for q in dev_queries])
    rows, scores = top_k_rows(query_vectors @ document_vectors.T, 100)
    run = {q.query_id: {ids[r]: float(s) for r, s in zip(row, score, strict=True)}
           for q, row, score in zip(dev_queries, rows.tolist(), scores.tolist(), strict=True)}
    return evaluate(run, {q.query_id: dict(q.judgments) for q in dev_queries}, ["ndcg@10", "mrr@10", "recall@100"]).mean


def dev_rerank(model: TrainableCrossEncoder | Any, dev_queries, pool: dict[str, list[str]],
               documents) -> dict[str, float]:
    """The dev queries' first-stage candidates reordered by the model's scores alone (`model`: a cross-encoder
    being trained, or any reranker with `score(pairs)`, e.g. `ColBERTReranker.from_model`)."""
    from bicross.evaluation import evaluate

    reranker = live_cross_encoder(model) if isinstance(model, TrainableCrossEncoder) else model
    pairs = [(q.text, documents[d].full_text) for q in dev_queries for d in pool[q.query_id]]
    scores = iter(reranker.score(pairs).tolist())
    run = {q.query_id: {d: next(scores) for d in pool[q.query_id]} for q in dev_queries}
    return evaluate(run, {q.query_id: dict(q.judgments) for q in dev_queries}, ["ndcg@10", "mrr@10"]).mean


def evaluate_in_eval_mode(model: torch.nn.Module, evaluate) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        return evaluate()


def cached_json(path: Path, compute) -> dict[str, float]:
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value) + "\n")
    return value


def _card(kind: str, base: str, data: Path, recipe: Recipe, command: str, examples: int, dev: int) -> str:
    settings = json.dumps(asdict(recipe), indent=2, default=str)
    return (f"# bicross {kind}\n\nFine-tuned from `{base}` with bicross.\n\n- training data: `{data}` split "
            f"`{recipe.split}` ({examples} examples; {dev} queries held out as dev; the test split was not used). "
            "Check the collection's licence before you publish this model (SciFact: CC BY-NC 2.0).\n"
            f"- loss: {'InfoNCE, in-batch + mined hard negatives' if kind == 'bi-encoder' else 'listwise softmax CE'}"
            f"\n- command: `{command or 'bicross train ...'}`\n\n## Settings\n\n```json\n{settings}\n```\n")

