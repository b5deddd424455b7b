"""`bicross adapt`: label-free domain adaptation of a collection's bi-encoder, every step resumable.

No query and no judgment is read for training. The collection's own documents make pseudo-queries
(`pseudo_queries.py`: titles, sentences, salient terms; each query's source document is its positive) ->
a seeded part of them, by document, is held out as a pseudo-dev set (model selection without labels: does
the model find a held-out pseudo-query's source document?) -> candidates for the rest from the
collection's hybrid first stage (`mining.py`: the source document is the query's one judged document, so
it is never a negative) -> the teacher cross-encoder scores (pseudo-query, source text / candidate) through
the same cached labelling as `bicross distill` (`labels.py`, cache tagged with the teacher's identity) ->
the bi-encoder trains on the teacher's margins (`distill_steps.py` + the recipe's Trainer), the best
pseudo-dev epoch kept -> the collection re-indexed with it into `OUT/index` (a new folder; the old index is
not touched).

A user's queries and qrels files (`report`) are opened only after all of that, to report the dense and
hybrid first stages before and after (`OUT/report.json`); nothing about training or selection depends on
them (tests: the files are first read once the new index exists, and training with and without them gives
the same weights).

Resuming: `OUT/settings.json` records the settings (a rerun with other settings is refused rather than
mixing two runs), `OUT/pseudo-queries.jsonl` is written once, mining skips finished queries
(`candidates.done` marks the end), labelling reads the teacher's cache, training resumes from its
checkpoint, and the index is built again only if `OUT/index` holds other weights.

Choosing the generators (`AdaptConfig.queries.generators`, `--generator`, repeatable): run adapt once per
mix on SciFact with `--queries queries.jsonl --qrels qrels/train.tsv` (train judgments, report only), read
the dense first stage's before/after nDCG@10 in each `OUT/report.json`, and make the best mix the default;
the test split is read once, afterwards, with `bicross eval`. Copying an earlier run's
`teacher-scores.json` into a new OUT first makes the pairs the runs share free (the cache is tagged with
the teacher's identity, so another teacher's scores are refused, never mixed).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bicross.errors import InvalidInput
from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER
from bicross.training.data import ContrastiveExample, JudgedQuery, read_contrastive_jsonl
from bicross.training.distill_steps import DistillLoss, bi_encoder_distill_step
from bicross.training.labels import LabelReport, label_examples
from bicross.training.mining import MiningConfig, MiningReport, mine_once
from bicross.training.pseudo_queries import PseudoQuery, PseudoQueryConfig, generate_pseudo_queries
from bicross.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = ["AdaptConfig", "AdaptResult", "adapt", "before_after_report", "read_pseudo_queries", "read_report_files",
           "split_by_document", "write_pseudo_queries"]


@dataclass(frozen=True)
class AdaptConfig:
    """Everything an adaptation run depends on besides the collection (and the teacher and student models)."""

    queries: PseudoQueryConfig = PseudoQueryConfig()
    train: TrainConfig = TrainConfig(epochs=1, batch_size=32, learning_rate=2e-5)
    mining: MiningConfig = MiningConfig(count=4, depth=30)
    loss: DistillLoss = DistillLoss()
    teacher: str = DEFAULT_CROSS_ENCODER
    teacher_max_length: int = 256
    student: str | None = None  # None: the bi-encoder that built the collection
    max_length: int = 256  # the student's
    guard: bool = False  # drop candidates the teacher ranks about as high as the source document
    dev_fraction: float = 0.1  # share of the pseudo-queries held out (by document) for model selection
    dev_max: int = 200
    dev_depth: int = 20
    save_every: int = 16  # queries between saves of the teacher's score cache

    def __post_init__(self) -> None:
        if not 0 < self.dev_fraction < 0.5:
            raise InvalidInput(f"dev_fraction must be in (0, 0.5): model selection needs held-out pseudo-queries "
                               f"(no labels are read), got {self.dev_fraction!r}")
        if self.dev_max < 1 or self.dev_depth < 1:
            raise InvalidInput(f"dev_max and dev_depth must be positive, got {self.dev_max}, {self.dev_depth}")


@dataclass(frozen=True)
class AdaptResult:
    """Where the adapted model and index went, what each step did, pseudo-dev numbers and the optional report."""

    model: Path
    index: Path
    train: TrainResult
    pseudo_queries: int
    mining: MiningReport | None
    labels: LabelReport | None
    dev_before: dict[str, float]
    dev_after: float | None
    report: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def adapt(index: str | Path, out: str | Path, config: AdaptConfig = AdaptConfig(), teacher=None,
          report: tuple[Path, Path] | None = None, command: str = "", show_progress: bool = True) -> AdaptResult:
    """Adapt the collection's bi-encoder to it without labels; a rerun with the same `out` resumes.

    `teacher` (a CrossEncoder) overrides `config.teacher`; `report` = (queries.jsonl, qrels file) is read only
    for the before/after report, once the adapted index exists.
    """
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection
    from bicross.rerankers import CrossEncoder
    from bicross.training.distill import _reindex
    from bicross.training.models import TrainableBiEncoder
    from bicross.training.recipes import CachedTeacher, cached_json, dev_pool, dev_retrieval, evaluate_in_eval_mode

    index, out = Path(index), Path(out)
    for file in report or ():
        if not Path(file).is_file():  # checked now (not read): a typo should not cost the whole run
            raise InvalidInput(f"{file} is not a file: the before/after report needs an existing queries and qrels file")
    if out.resolve() == index.resolve() or index.resolve() in (out / "index").resolve().parents or \
            (out / "index").resolve() == index.resolve():
        raise InvalidInput(f"--out {out} would write into the collection {index}: choose another folder")
    collection = Collection.open(index)
    base_name = collection.manifest["model"]["name"]
    student = config.student or base_name
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out / "settings.json", {"config": asdict(config), "index": str(index.resolve()),
                                            "student": student})
    first_encoder = BiEncoder.load(base_name)
    teacher = teacher if teacher is not None else CrossEncoder.load(config.teacher, max_length=config.teacher_max_length)
    if len(teacher.labels) > 1:
        raise InvalidInput(f"the teacher {teacher.name} has {len(teacher.labels)} labels {teacher.labels}: adaptation "
                           "needs a one-logit relevance cross-encoder")
    cached = CachedTeacher(teacher, out / "teacher-scores.json")
    documents = {document.id: document for document in collection.documents}

    pseudo = _pseudo_queries(out / "pseudo-queries.jsonl", collection, config.queries)
    train_pseudo, dev_pseudo = split_by_document(pseudo, config.dev_fraction, config.dev_max, config.queries.seed)
    train_queries, dev_queries = _judged(train_pseudo), _judged(dev_pseudo)
    mining = mine_once(collection, first_encoder, train_queries, out / "candidates.jsonl", config.mining,
                       cached if config.guard else None, show_progress)
    cached.save()
    labels = None
    if not (out / "labels.jsonl").is_file():
        examples = _with_pseudo_positives(read_contrastive_jsonl(out / "candidates.jsonl"), train_pseudo,
                                          config.mining.count)
        _, labels = label_examples(examples, cached, out / "labels.jsonl", config.save_every, show_progress)
    examples = read_contrastive_jsonl(out / "labels.jsonl")

    pool = dev_pool(collection, first_encoder, dev_queries, config.dev_depth)
    model = TrainableBiEncoder.from_pretrained(student, max_length=config.max_length)

    def evaluate() -> dict[str, float]:
        return dev_retrieval(model, dev_queries, pool, documents)

    card = _card(student, teacher.identity, index, config, command, len(examples), len(dev_queries))
    trainer = Trainer(model, config.train, out / "run", bi_encoder_distill_step(model, config.loss), evaluate,
                      save_best=lambda folder: model.save(folder, card), show_progress=show_progress)
    dev_before = cached_json(out / "dev_before.json", lambda: evaluate_in_eval_mode(model, evaluate))
    result = trainer.fit(examples)
    final = out / "model"
    if not (out / "run" / "best").is_dir():
        raise InvalidInput(f"training in {out / 'run'} kept no model (no pseudo-dev evaluation ran): delete the "
                           "run folder and adapt again")
    best_card = card + (f"\n## Pseudo-dev results (no labels)\n\nbefore: {dev_before}\nbest: {result.best_metric:.4f} "
                        f"({config.train.metric}, step {result.best_step})\n")
    (out / "run" / "best" / "README.md").write_text(best_card, encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(out / "run" / "best", final)
    new_index = _reindex(collection, final, out / "index", show_progress)
    summary = None
    if report is not None:
        queries, qrels = read_report_files(*report)
        summary = before_after_report(index, new_index, queries, qrels, out / "report.json")
    return AdaptResult(final, new_index, result, len(pseudo), mining, labels, dev_before, result.best_metric, summary,
                       {"train_queries": len(train_queries), "dev_queries": len(dev_queries),
                        "examples": len(examples)})


def before_after_report(before: Path, after: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                        path: Path | None = None) -> dict[str, Any]:
    """nDCG@10, MRR@10 and Recall@100 of the dense and hybrid first stages on both collections (no reranking)."""
    from bicross.evaluation.pipeline import evaluate_variants, standard_variants
    from bicross.search import SearchConfig, Searcher

    judged = {qid: text for qid, text in queries.items() if qid in qrels}
    if not judged:
        raise InvalidInput("none of the report's queries has a judgment in its qrels: check the two files match")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for label, folder in (("before", before), ("after", after)):
        searcher = Searcher.open(folder, reranker=None)
        variants = standard_variants(SearchConfig(), ("dense", "hybrid"), rerank=False)
        for score in evaluate_variants(searcher, judged, {qid: qrels[qid] for qid in judged}, variants):
            rows.setdefault(score.name, {})[label] = score.metrics
    report = {"queries": len(judged), "index_before": str(before), "index_after": str(after), "first_stages": rows,
              "note": "read after training, for this report only: no judgment was used to train or select the model"}
    if path is not None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(partial, path)
    return report


def read_report_files(queries: Path, qrels: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """queries.jsonl (BEIR) and a qrels file (BEIR TSV, or TREC's four columns when the first line has no tab)."""
    from bicross.evaluation import read_beir_qrels, read_beir_queries, read_trec_qrels

    texts = read_beir_queries(queries)
    first = Path(qrels).read_text(encoding="utf-8-sig").split("\n", 1)[0]
    return texts, read_beir_qrels(qrels) if "\t" in first else read_trec_qrels(qrels)


def split_by_document(queries: list[PseudoQuery], fraction: float, limit: int,
                      seed: int) -> tuple[list[PseudoQuery], list[PseudoQuery]]:
    """(train, dev): a seeded sample of documents gives dev all their queries (about `fraction`, at most `limit`),
    so no document is a positive on both sides.

    >>> qs = [PseudoQuery(f"d{i}|title|0", "t", f"d{i}", "p", "title") for i in range(10)]
    >>> train, dev = split_by_document(qs, 0.2, 100, 0)
    >>> len(train), len(dev), {q.document_id for q in train} & {q.document_id for q in dev}
    (8, 2, set())
    """
    import random

    by_document: dict[str, list[PseudoQuery]] = {}
    for query in queries:
        by_document.setdefault(query.document_id, []).append(query)
    order = sorted(by_document)
    random.Random(seed).shuffle(order)
    wanted = min(limit, max(1, round(fraction * len(queries))))
    dev_documents: set[str] = set()
    taken = 0
    for document_id in order:
        if taken >= wanted:
            break
        dev_documents.add(document_id)
        taken += len(by_document[document_id])
    train = [query for query in queries if query.document_id not in dev_documents]
    dev = [query for query in queries if query.document_id in dev_documents]
    if not train or not dev:
        raise InvalidInput(f"{len(queries)} pseudo-queries cannot be split into training and pseudo-dev queries: "
                           "the collection needs more documents with a title, sentences or words to make them")
    return train, dev


def write_pseudo_queries(queries: list[PseudoQuery], path: Path) -> Path:
    """JSONL, one pseudo-query a line, written whole by an atomic rename (present means complete)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(asdict(query), ensure_ascii=False) + "\n")
    os.replace(partial, path)
    return path


def read_pseudo_queries(path: Path) -> list[PseudoQuery]:
    """What `write_pseudo_queries` wrote."""
    return [PseudoQuery(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _pseudo_queries(path: Path, collection, config: PseudoQueryConfig) -> list[PseudoQuery]:
    if path.is_file():
        return read_pseudo_queries(path)
    from bicross.index.analysis import stopword_set

    stopwords = collection.manifest.get("bm25", {}).get("stopwords")
    made = generate_pseudo_queries(collection.documents, config, stopword_set(stopwords) if stopwords else frozenset())
    if not made:
        raise InvalidInput("no pseudo-query could be made from this collection: its documents have no title, no "
                           "second sentence and no word of three or more letters")
    return read_pseudo_queries(write_pseudo_queries(made, path))


def _judged(queries: list[PseudoQuery]) -> list[JudgedQuery]:
    """Pseudo-queries as judged queries whose one relevant document is their source (what mining and dev read)."""
    return [JudgedQuery(query.query_id, query.text, {query.document_id: 1}) for query in queries]


def _with_pseudo_positives(examples: list[ContrastiveExample], queries: list[PseudoQuery],
                           count: int) -> list[ContrastiveExample]:
    """Mined rows with the pseudo-query's own positive text (its document without the query's words), kept
    where all `count` candidates were found, so every training batch has the same shape."""
    positive = {query.query_id: query.positive for query in queries}
    kept = [replace(example, positive=positive[example.query_id]) for example in examples
            if len(example.negatives) >= count and example.query_id in positive]
    if not kept:
        raise InvalidInput(f"no pseudo-query got {count} candidates from the first stage: lower mining.count "
                           "or use a larger collection")
    return kept


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    """Record the run's settings, or refuse a rerun into the same folder with other ones."""
    text = json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise InvalidInput(f"{path.parent} holds an adaptation run with other settings ({path}): use a new --out, "
                           "or delete that folder to start afresh")
    path.write_text(text, encoding="utf-8")


def _card(student: str, teacher: str, index: Path, config: AdaptConfig, command: str, examples: int, dev: int) -> str:
    settings = json.dumps(asdict(config), indent=2, default=str)
    return (f"# bicross bi-encoder (adapted without labels)\n\n`{student}` adapted to the collection `{index}` by "
            f"bicross: the cross-encoder `{teacher}` scored pseudo-queries made from the collection's own documents "
            f"({', '.join(config.queries.generators)}), and the bi-encoder learned its margins ({config.loss.kind}).\n\n"
            f"- training data: {examples} pseudo-queries, each with its source document and {config.mining.count} "
            f"candidates from the hybrid first stage; {dev} held out (by document) for model selection. No queries "
            "or relevance judgments were used. Check the collection's licence before you publish this model.\n"
            f"- command: `{command or 'bicross adapt ...'}`\n\n## Settings\n\n```json\n{settings}\n```\n")
