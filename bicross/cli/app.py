"""`bicross index | add | delete | search | rerank | eval | token-store | train | mine | export | info`: thin wrappers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bicross.cli.pairs import pairs_command
from bicross.cli.plan import plan_command
from bicross.errors import BicrossError

if TYPE_CHECKING:
    from bicross.passages import PassageConfig
    from bicross.search import SearchConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Neural search: bi-encoder retrieval, cross-encoder reranking, evaluation.")
console = Console()
errors = Console(stderr=True)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L-12-v2"

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Collection folder.")]
TopK = Annotated[int, typer.Option("--top-k", help="Candidates from the first stage.")]
TopN = Annotated[int, typer.Option("--top-n", help="Results returned.")]
NoRerank = Annotated[bool, typer.Option("--no-rerank", help="Return the first-stage order.")]
Reranker = Annotated[str, typer.Option(
    "--reranker", help="Cross-encoder (hub id or folder), or colbert:DIR|poly:DIR for a ColBERT or Poly-encoder (DIR a "
    "folder or hub id; colbert:answerdotai/answerai-colbert-small-v1 is the packaged zero-shot backbone).")]
CrossEncoderOption = Annotated[str, typer.Option("--reranker", help="Cross-encoder: hub id or local folder.")]
TokenStoreOption = Annotated[Path | None, typer.Option(
    "--token-store", help="With --reranker colbert:DIR|poly:DIR: document vectors from `bicross token-store` (by "
    "text); candidates it lacks are encoded as they come. With --colbert-model: the store (and its token index) "
    "ColBERT retrieves from.")]
ColbertModelOption = Annotated[str | None, typer.Option(
    "--colbert-model", help="colbert:DIR (folder or hub id) for --first-stage colbert: full ColBERT retrieval from "
    "--token-store, whose token index `bicross token-store ... --index-tokens` builds.")]
DType = Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 (PyTorch backend).")]
# Query-time ANN knobs: override, for one run, what `bicross index` stored (a knob the searcher lacks is ignored).
EfSearch = Annotated[int | None, typer.Option(
    "--ef-search", min=1, help="HNSW beam width for this run (default: the one stored by `bicross index`); "
    "higher: better recall, slower.")]
Nprobe = Annotated[int | None, typer.Option(
    "--nprobe", min=1, help="IVF lists probed per query for this run (default: the one stored by `bicross index`); "
    "--first-stage colbert: centroids probed per query token (default 4).")]
RescoreFactor = Annotated[int | None, typer.Option(
    "--rescore-factor", min=1, help="Quantized collections: rescore top_k * N candidates in float32 for this run "
    "(default: 4).")]
CascadeReranker = Annotated[str | None, typer.Option(
    "--cascade-reranker", help="Cheap cross-encoder (e.g. a distilled small one) that scores the rerank depth first; "
    "the reranker then reads only its top --cascade-depth.")]
SearchScoreCache = Annotated[Path | None, typer.Option(
    "--score-cache", help="Cross-encoder scores: loaded from this file if it exists (only for the same model, weights "
    "and max length) and saved back, so a rerun over the same queries scores only new pairs.")]
RerankMaxLength = Annotated[int, typer.Option(
    "--rerank-max-length", help="Tokens of (query, document) the cross-encoder reads; the rest is cut (256 by default; "
    "512 reads most abstracts whole at about twice the cost).")]
CascadeDepth = Annotated[int | None, typer.Option(
    "--cascade-depth", help="With --cascade-reranker: how many of the cheap reranker's best candidates the reranker "
    "reads (e.g. 20 of a rerank depth of 100).")]
RayOption = Annotated[str | None, typer.Option(
    "--ray", help="Embed on Ray actors, one model copy each (the `ray` extra): local (start an instance here) or a "
    "cluster address (auto, HOST:6379, ray://HOST:10001) whose nodes resolve --model to the same files.")]
RayWorkers = Annotated[int | None, typer.Option(
    "--ray-workers", min=1, help="With --ray: how many actors (default: one per CPU of the cluster, or per GPU).")]


@app.command()
def index(
    corpus: Annotated[Path, typer.Argument(help="corpus.jsonl (BEIR), JSONL with id/text, CSV, or a folder of .txt/.md")],
    index_dir: IndexOption,
    model: Annotated[str, typer.Option("--model", "-m", help="Bi-encoder: hub id or local folder.")] = DEFAULT_MODEL,
    batch_size: Annotated[int | None, typer.Option(help="Texts per forward pass (default 32; 1 for int8 ONNX).")] = None,
    dtype: DType = "auto",
    skip_empty: Annotated[bool, typer.Option("--skip-empty", help="Skip documents with no text (named on stderr).")] = False,
    ann: Annotated[str, typer.Option(
        "--ann", help="Dense searcher: auto (exact below 200,000 documents, else hnsw) | exact | hnsw | ivf_flat | "
        "ivf_pq | ivf_sq8.")] = "auto",
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", help="HNSW links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(
        "--ef-search", help="HNSW search beam width stored as the collection's default (search --ef-search overrides "
        "it per run).")] = 128,
    nlist: Annotated[int | None, typer.Option("--nlist", help="IVF lists (default about 4 * sqrt(n)).")] = None,
    nprobe: Annotated[int, typer.Option(
        "--nprobe", help="IVF lists probed per query, stored as the collection's default (search --nprobe overrides "
        "it per run).")] = 16,
    quantization: Annotated[str, typer.Option(
        "--quantization", help="Codes exact search scans, shortlist rescored in float32: float32 | float16 | int8 | "
        "binary.")] = "float32",
    language: Annotated[str, typer.Option(
        "--language", help="BM25 stopwords + stemmer: auto (detected from stopwords among en, de, fr, es, it, pt, "
        "nl, da, no, sv, ru, tr; else none) | none | en | de | ...")] = "auto",
    passage_window: Annotated[int | None, typer.Option(
        "--passage-window", help="Long documents: split each into overlapping passages of N tokens (title and "
        "special tokens included; e.g. the model's max length, 256), searched and reranked passage by passage.")] = None,
    passage_stride: Annotated[int | None, typer.Option(
        "--passage-stride", help="With --passage-window: tokens between passage starts (default: half the window).")] = None,
    passage_aggregate: Annotated[str, typer.Option(
        "--passage-aggregate", help="With --passage-window: a document's score from its passages': max | first | "
        "sum-top-k (of the --passage-k best).")] = "max",
    passage_k: Annotated[int, typer.Option("--passage-k", help="Passages summed by --passage-aggregate sum-top-k.")] = 2,
    ray: RayOption = None,
    ray_workers: RayWorkers = None,
) -> None:
    """Embed a corpus and store it as a searchable collection folder."""
    from bicross.cli.output import load_corpus
    from bicross.index.ann import AnnConfig
    from bicross.index.bm25 import Bm25Config
    from bicross.index.collection import Collection

    config = AnnConfig(kind=ann, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)  # type: ignore[arg-type]
    passages = _passage_config(passage_window, passage_stride, passage_aggregate, passage_k)
    documents = load_corpus(corpus, errors, skip_empty)
    encoder = _bi_encoder(model, dtype, batch_size, ray, ray_workers)
    console.print(f"indexing {len(documents):,} documents from {corpus} with {model}")
    bm25 = None if language == "auto" else Bm25Config.for_language(None if language == "none" else language)
    collection = Collection.build(index_dir, documents, encoder, show_progress=True, ann=config,
                                  quantization=quantization, bm25_config=bm25, passages=passages)
    _print_manifest(collection.manifest, index_dir)


def _passage_config(window: int | None, stride: int | None, aggregate: str, k: int) -> PassageConfig | None:
    """The `--passage-*` options as a PassageConfig (None without --passage-window)."""
    from bicross.errors import InvalidInput
    from bicross.passages import PassageConfig

    if window is None:
        if stride is not None or aggregate != "max" or k != 2:
            raise InvalidInput("--passage-stride, --passage-aggregate and --passage-k apply to passages: add "
                               "--passage-window N (e.g. 256) to split long documents")
        return None
    return PassageConfig(window, max(1, window // 2) if stride is None else stride, aggregate, k)  # type: ignore[arg-type]


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder built by `bicross index`.")],
    query: Annotated[str | None, typer.Argument(help="The query (or use --queries).")] = None,
    queries: Annotated[Path | None, typer.Option(help="queries.jsonl (_id/id, text) for batch search.")] = None,
    trec_run: Annotated[Path | None, typer.Option(help="Write a TREC run file (with --queries).")] = None,
    top_k: TopK = 100,
    top_n: TopN = 10,
    no_rerank: NoRerank = False,
    reranker: Reranker = DEFAULT_RERANKER,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Query encoder (default: the index's).")] = None,
    first_stage: Annotated[str | None, typer.Option(help="dense | bm25 | hybrid (default) | colbert (with "
                                                    "--colbert-model and --token-store).")] = None,
    fusion: Annotated[str | None, typer.Option(help="Hybrid fusion: zscore (default) | minmax | rrf.")] = None,
    rerank_weight: Annotated[float | None, typer.Option(help="Final = z(rerank) + w * z(first stage) (default 2.5).")] = None,
    rerank_depth: Annotated[int, typer.Option(help="How many of the top-k candidates the cross-encoder reads.")] = 30,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="Metadata filter, repeatable: 'year>=2010', 'journal=Nature,Cell', 'lang!=en'.")] = None,
    ef_search: EfSearch = None,
    nprobe: Nprobe = None,
    rescore_factor: RescoreFactor = None,
    cascade_reranker: CascadeReranker = None,
    cascade_depth: CascadeDepth = None,
    token_store: TokenStoreOption = None,
    colbert_model: ColbertModelOption = None,
    rerank_max_length: RerankMaxLength = 256,
    score_cache: SearchScoreCache = None,
) -> None:
    """Search a collection for one query, or for every query in a file."""
    from dataclasses import replace

    from bicross.cli.evaluation import check_cascade_options
    from bicross.index.filters import parse_filter_expressions
    from bicross.search import Searcher

    texts, ids = _queries(query, queries)
    spec = parse_filter_expressions(filters or [])
    check_cascade_options(cascade_reranker, cascade_depth, not no_rerank)
    config = replace(_search_config(top_k, top_n, first_stage, fusion, rerank_weight, rerank_depth,
                                    {"ef_search": ef_search, "nprobe": nprobe, "rescore_factor": rescore_factor}),
                     cascade_depth=cascade_depth)
    searcher = Searcher.open(index_dir, model=model, reranker=None if no_rerank else reranker, config=config,
                             cascade_reranker=cascade_reranker, token_store=token_store, colbert_model=colbert_model,
                             rerank_max_length=rerank_max_length)
    if score_cache is not None and searcher.reranker is not None and score_cache.exists():
        from bicross.rerankers.cache import ScoreCache

        searcher.cache = ScoreCache.load(score_cache, searcher.reranker.identity)
    results = searcher.search_many(texts, show_progress=len(texts) > 1, filters=spec or None)
    if score_cache is not None and searcher.reranker is not None:
        searcher.cache.save(score_cache, searcher.reranker.identity)
    if trec_run is not None:
        from bicross.evaluation import write_trec_run

        write_trec_run({qid: {h.id: h.score for h in r.hits} for qid, r in zip(ids, results, strict=True)}, trec_run)
        errors.print(f"wrote {len(results)} queries to {trec_run}")
    if as_json:
        print(results_json_text(results))
    elif trec_run is None or len(results) <= 5:
        from bicross.cli.output import print_results

        for result in results:
            print_results(console, result)


def results_json_text(results: list) -> str:
    """JSON text for search results (kept here so `search` stays short)."""
    from bicross.cli.output import results_json

    return results_json(results)


@app.command()
def add(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder built by `bicross index`.")],
    corpus: Annotated[Path, typer.Argument(help="Documents to add: JSONL, CSV, or a folder of .txt/.md")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bi-encoder (default: the index's).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Texts per forward pass (default 32; 1 for int8 ONNX).")] = None,
    dtype: DType = "auto",
    ray: RayOption = None,
    ray_workers: RayWorkers = None,
) -> None:
    """Add documents to a collection; a document whose id is already there replaces it."""
    from bicross.corpus import load_documents
    from bicross.index.collection import Collection

    documents = load_documents(corpus)
    collection = Collection.open(index_dir)
    encoder = _bi_encoder(model or collection.manifest["model"]["name"], dtype, batch_size, ray, ray_workers)
    changes = collection.add(documents, encoder, show_progress=len(documents) > 100)
    console.print(f"{index_dir}: added {changes.added:,}, updated {changes.updated:,}; now {changes.count:,} "
                  f"documents (generation {changes.generation})")


def _bi_encoder(model: str, dtype: str, batch_size: int | None, ray: str | None, ray_workers: int | None):
    """The bi-encoder `index` and `add` embed with: loaded here, or (--ray) one whose documents are embedded on
    Ray actors, connecting (or starting a local instance) for the embedding only."""
    if ray is None:
        if ray_workers is not None:
            raise BicrossError("--ray-workers needs --ray local (or --ray ADDRESS)")
        from bicross.encoders import BiEncoder

        return BiEncoder.load(model, dtype=dtype, batch_size=batch_size)  # type: ignore[arg-type]
    from bicross.cluster import ClusterConfig, ShardedBiEncoder

    cluster = ClusterConfig(address=ray, workers=ray_workers)
    return ShardedBiEncoder.load(model, dtype=dtype, batch_size=batch_size, cluster=cluster)  # type: ignore[arg-type]


@app.command()
def delete(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder built by `bicross index`.")],
    ids: Annotated[list[str], typer.Argument(help="Ids of the documents to delete.")],
) -> None:
    """Delete documents from a collection by id (all or nothing: an unknown id deletes none)."""
    from bicross.index.collection import Collection

    changes = Collection.open(index_dir).delete(ids)
    console.print(f"{index_dir}: deleted {changes.deleted:,}; now {changes.count:,} documents "
                  f"(generation {changes.generation})")


@app.command()
def rerank(
    query: Annotated[str, typer.Argument(help="The query.")],
    candidates: Annotated[Path, typer.Argument(help="JSONL candidates with id and text (and optional title).")],
    reranker: Reranker = DEFAULT_RERANKER,
    top_n: TopN = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    token_store: TokenStoreOption = None,
    rerank_max_length: RerankMaxLength = 256,
) -> None:
    """Rerank a given candidate list with a cross-encoder (or a ColBERT / Poly-encoder)."""
    from rich.table import Table

    from bicross.cli.output import snippet
    from bicross.corpus import load_documents
    from bicross.rerankers.protocol import open_reranker

    documents = load_documents(candidates)
    model = open_reranker(reranker, max_length=rerank_max_length, token_store=token_store)
    ranked = model.rank(query, [d.full_text for d in documents], top_n)
    if as_json:
        print(json.dumps([{"rank": r, "id": documents[x.index].id, "score": x.score, "input_rank": x.index + 1}
                          for r, x in enumerate(ranked, start=1)], indent=2))
        return
    table = Table(title=query, title_justify="left")
    for column in ("#", "was", "score", "id", "text"):
        table.add_column(column)
    for rank, item in enumerate(ranked, start=1):
        document = documents[item.index]
        table.add_row(str(rank), str(item.index + 1), f"{item.score:.2f}", document.id, snippet(document.full_text))
    console.print(table)


@app.command(name="eval")
def evaluate_command(
    data: Annotated[Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")],
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Collection folder (built if absent).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write report.json, report.md and PNG plots here.")] = None,
    split: Annotated[str, typer.Option(help="qrels split to score.")] = "test",
    first_stage: Annotated[list[str], typer.Option("--first-stage", help="dense | bm25 | hybrid | colbert (with "
                                                   "--colbert-model; repeatable).")] = [  # noqa: B006
        "bm25", "dense", "hybrid"],
    rerank_depth: Annotated[list[int], typer.Option("--rerank-top-k", help="Rerank depths to score (repeatable).")] = [30],  # noqa: B006
    no_rerank: NoRerank = False,
    exhaustive_sample: Annotated[int, typer.Option(
        help="Also let the cross-encoder score every document for N sampled queries (O(corpus) each).")] = 0,
    per_query_latency: Annotated[bool, typer.Option(
        "--per-query-latency", help="Time queries one by one (gives p95; slower than the default batches).")] = False,
    cold: Annotated[bool, typer.Option("--cold", help="Empty the cross-encoder score cache before each pipeline.")] = False,
    reranker: Reranker = DEFAULT_RERANKER,
    model: Annotated[str, typer.Option("--model", "-m", help="Bi-encoder when the index is built here.")] = DEFAULT_MODEL,
    limit: Annotated[int | None, typer.Option(help="Score only the first N queries.")] = None,
    fusion: Annotated[str, typer.Option(help="Hybrid fusion: zscore | minmax | rrf.")] = "zscore",
    rerank_weight: Annotated[float, typer.Option(help="Final = z(rerank) + w * z(first stage); 0 = rerank order.")] = 2.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    score_cache: Annotated[Path | None, typer.Option(
        "--score-cache", help="Load cross-encoder scores from this file if it exists and save them there: a rerun "
        "scores only new pairs (their latency is the cost measured when first scored).")] = None,
    ef_search: EfSearch = None,
    nprobe: Nprobe = None,
    rescore_factor: RescoreFactor = None,
    cascade_reranker: CascadeReranker = None,
    cascade_depth: CascadeDepth = None,
    token_store: TokenStoreOption = None,
    colbert_model: ColbertModelOption = None,
    rerank_max_length: RerankMaxLength = 256,
) -> None:
    """Score pipelines on a BEIR collection: nDCG@10, MRR@10, Recall@100/@top_k, latency, significance.

    With --cascade-reranker M --cascade-depth N, each rerank depth D above N also gets a cascade row (M over the
    top D, the reranker over M's top N), compared against the reranker alone over the top D.
    """
    from bicross.cli.evaluation import EvalOptions, run_evaluation
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig

    first = FirstStageConfig(fusion=fusion, ef_search=ef_search, nprobe=nprobe, rescore_factor=rescore_factor)  # type: ignore[arg-type]
    base = SearchConfig(first_stage=first, rerank_weight=rerank_weight)
    options = EvalOptions(data=data, index_dir=index_dir, split=split, model=model, reranker=reranker,
                          first_stages=tuple(first_stage), rerank_depths=() if no_rerank else tuple(rerank_depth),
                          base=base, limit=limit, exhaustive_sample=exhaustive_sample,
                          per_query_latency=per_query_latency, cold_cache=cold,
                          score_cache=score_cache, out=out, cascade_reranker=cascade_reranker,
                          cascade_depth=cascade_depth or 0, token_store=token_store, colbert_model=colbert_model,
                          rerank_max_length=rerank_max_length)
    report = run_evaluation(options, errors if as_json else console, print_tables=not as_json)
    if as_json:
        print(json.dumps(report, indent=2))


@app.command()
def demo(
    data: Annotated[Path | None, typer.Argument(
        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv). Default: ../shared/data/scifact if it "
        "exists, else the Python standard library's docstrings (on every machine with Python).")] = None,
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Where to keep the index.")] = None,
    queries: Annotated[int, typer.Option(help="How many queries to show.")] = 4,
    top_k: TopK = 20,
    top_n: TopN = 5,
    modules: Annotated[str | None, typer.Option(
        "--modules", help="Standard-library corpus only: index just these top-level modules (comma-separated, "
        "e.g. csv,json,subprocess) for a faster first run.")] = None,
) -> None:
    """Index a collection (once) and show first-stage vs reranked results for a few questions."""
    from bicross.cli.demo import default_demo_data, run_demo
    from bicross.errors import InvalidInput

    if modules and data is not None:
        raise InvalidInput("--modules picks standard-library modules for the built-in corpus; leave it out with DATA")
    data = data if data is not None else (None if modules else default_demo_data())
    chosen = [name.strip() for name in modules.split(",") if name.strip()] if modules else None
    run_demo(data, index_dir, queries, top_k, top_n, console, modules=chosen)


@app.command()
def train(
    kind: Annotated[str, typer.Argument(help="bi-encoder | cross-encoder | colbert | poly")],
    data: Annotated[Path, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: mined negatives, checkpoints, log, model/.")],
    base: Annotated[str | None, typer.Option("--base", help="Model to fine-tune: hub id or folder (a cross-encoder "
                                             "may start from cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch); required "
                                             "but for colbert (default answerdotai/answerai-colbert-small-v1-pytorch) "
                                             "and poly (default sentence-transformers/all-MiniLM-L6-v2).")] = None,
    index_dir: Annotated[Path | None, typer.Option("--index", "-i", help="Collection to mine from (default: "
                                                   "built from DATA with the base bi-encoder, once).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with any of these settings.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training examples (default: bi-encoder 5, "
                                                 "cross-encoder 1, colbert 2, poly 5).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step (default: cross-encoder 8, others 32).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="AdamW peak learning rate (default 2e-5; colbert "
                                                        "1e-5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the dev split, order and initialisation.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16 (autocast).")] = None,
    chunk_size: Annotated[int | None, typer.Option(help="GradCache rows per forward pass (0: whole batch).")] = None,
    negatives_per_example: Annotated[int | None, typer.Option(help="Mined negatives per example (default 1; "
                                                              "cross-encoder 3).")] = None,
    guard: Annotated[bool | None, typer.Option("--guard/--no-guard", help="Drop likely false negatives.")] = None,
    refresh_every: Annotated[int | None, typer.Option(help="Bi-encoders: re-mine negatives with the model being "
                                                      "trained every N steps (0: never, the default).")] = None,
    dim: Annotated[int | None, typer.Option(help="ColBERT: project token vectors to N dimensions (a new, random "
                                            "projection; default none: the backbone's hidden states).")] = None,
    codes: Annotated[int | None, typer.Option(help="Poly-encoder: number of context codes m (default 16).")] = None,
    distill: Annotated[bool | None, typer.Option("--distill/--no-distill", help="ColBERT, Poly-encoder: learn the "
                                                 "teacher cross-encoder's scores of [positive, negatives] (listwise "
                                                 "KL) instead of the labels (default: no).")] = None,
) -> None:
    """Fine-tune a bi-encoder, cross-encoder, ColBERT or Poly-encoder on a BEIR collection's train split (dev held
    out, test untouched)."""
    from bicross.cli.training import load_recipe, run_train

    options = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
               "dtype": dtype, "chunk_size": chunk_size, "negatives_per_example": negatives_per_example, "guard": guard,
               "refresh_every": refresh_every, "dim": dim, "codes": codes, "distill": distill}
    run_train(kind, data, base, out, load_recipe(config, options, kind), index_dir, console)


@app.command()
def mine(
    data: Annotated[Path, typer.Argument(help="BEIR folder whose judged queries get negatives.")],
    index_dir: IndexOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write (appended; a rerun resumes).")],
    split: Annotated[str, typer.Option(help="qrels split.")] = "train",
    first_stage: Annotated[str, typer.Option("--first-stage", help="bm25 | dense | hybrid")] = "hybrid",
    skip: Annotated[int, typer.Option(help="Ranks to skip at the top.")] = 0,
    depth: Annotated[int, typer.Option(help="Take candidates from ranks [skip, depth).")] = 30,
    count: Annotated[int, typer.Option(help="Negatives per (query, positive).")] = 3,
    sampling: Annotated[str, typer.Option(help="top | random (seeded) within the window.")] = "top",
    teacher: Annotated[str | None, typer.Option(help="Cross-encoder for the false-negative guard.")] = None,
    guard_margin: Annotated[float, typer.Option(help="Drop a candidate if z(candidate) >= z(weakest positive) - "
                                                "margin (teacher scores, z over the query's list).")] = 0.5,
) -> None:
    """Mine hard negatives from a collection's first stage, optionally guarded by a teacher cross-encoder."""
    from bicross.cli.training import run_mine
    from bicross.training.mining import MiningConfig

    config = MiningConfig(first_stage=first_stage, skip=skip, depth=depth, count=count, sampling=sampling,  # type: ignore[arg-type]
                          guard_margin=guard_margin)
    run_mine(data, index_dir, out, config, teacher, split, console)


@app.command(name="token-store")
def token_store_command(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder built by `bicross index`.")],
    reranker: Annotated[str, typer.Option("--reranker", help="colbert:DIR|poly:DIR: the model whose document vectors "
                                          "to store (folder or hub id), as later passed to search / eval.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Token store folder (created, or extended with the "
                                      "documents it lacks).")],
    dtype: Annotated[str | None, typer.Option(help="float16 (default for a new store) | int8 (one scale per "
                                              "vector, about half the bytes).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Documents per forward pass (default 32; 1 for int8 "
                                                   "ONNX).")] = None,
    index_tokens: Annotated[bool, typer.Option(
        "--index-tokens", help="ColBERT: also build the token index (k-means centroids, per-centroid document "
        "lists) that --first-stage colbert searches, or extend it to the documents appended.")] = False,
    centroids: Annotated[int | None, typer.Option(
        "--centroids", min=1, help="With --index-tokens: k-means centroids (default: about 4 * sqrt(tokens), a power "
        "of two); the index is retrained with them.")] = None,
) -> None:
    """Encode a collection's documents once for a ColBERT or Poly-encoder reranker (`--token-store OUT` later)."""
    from bicross.cli.token_store import build_token_store

    build_token_store(index_dir, reranker, out, dtype, batch_size, console, index_tokens=index_tokens,
                      centroids=centroids)


@app.command()
def info(
    index_dir: Annotated[Path, typer.Argument(help="Collection folder, or a token store from `bicross token-store`.")],
    recall_sample: Annotated[int, typer.Option(
        "--recall-sample", help="Also measure recall@10 of the dense searcher against exact search, on N random "
        "stored document vectors perturbed slightly as queries.")] = 0,
) -> None:
    """Show what a collection (or a token store) holds, what built it, its dense searcher and memory per document."""
    from bicross.index.collection import Collection
    from bicross.index.searchers import perturbed_samples
    from bicross.late_interaction.token_store import is_token_store

    if is_token_store(index_dir):
        from bicross.cli.token_store import describe_token_store
        from bicross.late_interaction.token_store import TokenStore

        describe_token_store(TokenStore.open(index_dir), console)
        return
    collection = Collection.open(index_dir)
    _print_manifest(collection.manifest, index_dir)
    if recall_sample > 0:
        queries = perturbed_samples(collection.dense, recall_sample)
        console.print(f"recall@10 against exact search on {len(queries):,} perturbed document vectors: "
                      f"{collection.ann_recall(queries, k=10):.3f}")


def _search_config(top_k: int, top_n: int, first_stage: str | None, fusion: str | None,
                   rerank_weight: float | None, rerank_depth: int, ann_knobs: dict[str, int | None]) -> SearchConfig:
    """`ann_knobs`: ef_search / nprobe / rescore_factor for this run, None keeping the collection's."""
    from dataclasses import replace

    from bicross.search import SearchConfig

    base = SearchConfig(top_k=top_k, top_n=top_n, rerank_depth=rerank_depth)
    first = replace(base.first_stage, **{k: v for k, v in {"kind": first_stage, "fusion": fusion}.items() if v},
                    **ann_knobs)
    return replace(base, first_stage=first, rerank_weight=base.rerank_weight if rerank_weight is None else rerank_weight)


def _print_manifest(manifest: dict, folder: Path) -> None:
    from bicross.index.searchers import describe_searcher, memory_per_document

    model = manifest["model"]
    split = manifest.get("passages")
    console.print(
        f"[bold]{folder}[/]: {manifest['count']:,} documents, {manifest['dimension']}-d {manifest['similarity']}, "
        f"model {model['name']} ({model['fingerprint']}), generation {manifest['generation']}; "
        f"{manifest['truncated_documents']:,} {'documents' if split is None else 'passages'} longer than "
        f"{model['settings']['max_length']} tokens were truncated"
    )
    if split is not None:
        config = split["config"]
        console.print(f"passages: {split['rows']:,} ({split['rows'] / max(1, manifest['count']):.2f} per document), "
                      f"window {config['window']} tokens, stride {config['stride']}, document score: "
                      f"{config['aggregate']}" + (f" (k={config['k']})" if config["aggregate"] == "sum-top-k" else ""))
    memory = memory_per_document(manifest)
    console.print(f"dense search: {describe_searcher(manifest)}")
    bm25 = manifest.get("bm25", {})
    console.print(f"BM25: stopwords {bm25.get('stopwords') or 'none'}, stemmer {bm25.get('stemmer') or 'none'}, "
                  f"CJK {bm25.get('cjk', 'none (built before bicross analysed CJK: rebuild to get bigrams)')}")
    console.print("bytes per document: " + " + ".join(f"{size:,.0f} {part}" for part, size in memory.items())
                  + f" = {sum(memory.values()):,.0f}")


def _queries(query: str | None, queries: Path | None) -> tuple[list[str], list[str]]:
    from bicross.errors import InvalidInput

    if (query is None) == (queries is None):
        raise InvalidInput("give either a QUERY argument or --queries FILE (not both)")
    if query is not None:
        return [query], ["1"]
    from bicross.evaluation import read_beir_queries

    loaded = read_beir_queries(queries)  # type: ignore[arg-type]
    return list(loaded.values()), list(loaded.keys())


def main() -> None:
    """Entry point: run the app, turning bicross errors into one red line and exit status 2."""
    try:
        app(standalone_mode=False)
    except BicrossError as error:
        from rich.markup import escape

        errors.print(f"[red]error:[/] {escape(str(error))}")  # a message may hold [brackets] rich would eat
        sys.exit(2)
    except (typer.Exit, typer.Abort) as stop:
        sys.exit(getattr(stop, "exit_code", 1))
    except Exception as error:  # usage errors (a bad option value) arrive here in non-standalone mode
        if not _is_usage_error(error):
            raise
        error.show()  # type: ignore[attr-defined]
        sys.exit(error.exit_code)  # type: ignore[attr-defined]


def _is_usage_error(error: Exception) -> bool:
    """Click's ClickException, or the copy of it that newer typer releases parse with (a TyperException)."""
    try:
        import click

        if isinstance(error, click.ClickException):
            return True
    except ImportError:  # newer typer no longer needs click
        pass
    return isinstance(error, getattr(typer, "TyperException", ())) and callable(getattr(error, "show", None))


@app.command()
def serve(
    index_dirs: Annotated[list[Path], typer.Argument(help="Collection folder(s) to serve; each is named after its folder.")],
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_file: Annotated[Path | None, typer.Option(
        "--api-key-file", help="API keys, one per line: KEY (read and write) or KEY:read (search only). Also read "
        "from $BICROSS_API_KEYS (comma-separated). With no keys, reads are open and writes refused.")] = None,
    allow_anonymous_writes: Annotated[bool, typer.Option(
        "--allow-anonymous-writes", help="Let requests without a key add and delete documents (trusted networks).")] = False,
    reranker: CrossEncoderOption = DEFAULT_RERANKER,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Load no cross-encoder (first-stage order only).")] = False,
    timeout: Annotated[float, typer.Option(help="Default seconds per request; a request may set its own.")] = 30.0,
    max_queue: Annotated[int, typer.Option(help="Model requests admitted at once; beyond: 429 with Retry-After.")] = 64,
    max_batch_tokens: Annotated[int, typer.Option(help="Estimated tokens per micro-batch of embedding requests.")] = 8192,
    batch_wait_ms: Annotated[float, typer.Option(help="How long an embedding request waits for company.")] = 2.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 beyond).")] = 2_000_000,
    max_items: Annotated[int, typer.Option(help="Documents, queries or texts per request (413 beyond).")] = 256,
    max_query_chars: Annotated[int, typer.Option(help="Longest query in characters (422 beyond).")] = 2_000,
    cors_origins: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Origin allowed to call the API from a browser (repeatable), e.g. http://localhost:3000.")] = None,
    shadow_config: Annotated[Path | None, typer.Option(
        "--shadow-config", help="Shadow A/B: a second pipeline (TOML or JSON of /search knobs: first_stage, top_k, "
        "rerank_depth, rerank_weight, rerank, ...) run in the background for --shadow-share of /search queries.")] = None,
    shadow_share: Annotated[float, typer.Option(
        "--shadow-share", help="Share of /search queries (0..1, picked by a hash of the query) also run by the shadow "
        "pipeline.")] = 0.1,
    shadow_log: Annotated[Path | None, typer.Option(
        "--shadow-log", help="JSONL file the shadow pairs are appended to (both rankings, overlap@10, latency delta); "
        "export it as two TREC runs with `python -m bicross.service.shadow_log`.")] = None,
    shadow_max_queued: Annotated[int, typer.Option(
        "--shadow-max-queued", help="Shadow searches waiting at most; beyond, sampled queries are skipped (counted).")] = 8,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes on the one port, each with its own copy of the models; writes "
        "go through the folder's lock and every process picks up the others' commits.")] = 1,
) -> None:
    """Serve collections over HTTP: search, rerank, embeddings, document writes, metrics (OpenAPI at /docs)."""
    from bicross.errors import InvalidInput
    from bicross.service import ServiceSettings, create_app, require_serve_extra
    from bicross.service.shadow import read_shadow_pipeline

    require_serve_extra()
    import uvicorn

    names = [folder.resolve().name for folder in index_dirs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"collections are named after their folders and these repeat: {', '.join(names)}; "
                           "rename or link a folder so each name is unique")
    settings = ServiceSettings(
        host=host, port=port, reranker=None if no_rerank else reranker, api_key_file=api_key_file,
        allow_anonymous_writes=allow_anonymous_writes, cors_origins=tuple(cors_origins or ()), timeout_seconds=timeout,
        max_queue=max_queue, max_batch_tokens=max_batch_tokens, batch_wait_ms=batch_wait_ms,
        max_body_bytes=max_body_bytes, max_items=max_items, max_query_chars=max_query_chars,
        shadow_pipeline=read_shadow_pipeline(shadow_config) if shadow_config else None,
        shadow_share=shadow_share if shadow_config else 0.0, shadow_log=shadow_log, shadow_max_queued=shadow_max_queued)
    collections = dict(zip(names, index_dirs, strict=True))
    service_app = create_app(collections, settings)  # refuses a bad folder or key file here, once
    processes = f" in {workers} processes" if workers > 1 else ""
    errors.print(f"serving {', '.join(names)} on http://{host}:{port}{processes} (API docs at /docs; models load in "
                 "the background, GET /ready says when)")
    if workers > 1:
        import os

        from bicross.service.app import SERVE_ENVIRONMENT, serve_environment

        # each worker is a fresh (spawned) process that builds its own app, models included, from this variable;
        # uvicorn's supervisor turns SIGTERM into a graceful stop of every worker and then returns (status 0)
        os.environ[SERVE_ENVIRONMENT] = serve_environment(collections, settings)
        uvicorn.run("bicross.service.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                    log_level="info", timeout_graceful_shutdown=int(timeout) + 1)
        return
    import signal

    # uvicorn handles SIGTERM (stops accepting, finishes in-flight requests), then restores this handler and
    # raises the signal again: without it the process would die of the signal (status -15) after a clean shutdown
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(service_app, host=host, port=port, log_level="info", timeout_graceful_shutdown=int(timeout) + 1)


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="Bi-encoder or cross-encoder: hub id, packaged name or folder.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write (bicross, onnxruntime or OpenVINO load it).")],
    format: Annotated[str, typer.Option("--format", help="onnx | openvino.")] = "onnx",
    precision: Annotated[str, typer.Option("--precision", help="onnx: fp32 | int8 (static, calibrated); "
                                           "openvino: fp32 | bf16.")] = "fp32",
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="Your corpus (BEIR folder or corpus file): int8 scales are set on it and every "
        "export is checked against the source model on it.")] = None,
    calibration_size: Annotated[int, typer.Option(help="Texts (or query-document pairs) sampled for it.")] = 256,
    max_length: Annotated[int, typer.Option(help="Tokens per calibration text.")] = 256,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export at --to.")] = False,
) -> None:
    """Export a model to ONNX (fp32, static int8) or OpenVINO (fp32, bf16) for faster CPU inference."""
    from bicross.cli.export import run_export

    run_export(model, to, format, precision, calibration, calibration_size, max_length, overwrite, console)


@app.command()
def distill(
    data: Annotated[Path, typer.Argument(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv).")],
    index_dir: Annotated[Path, typer.Option("--index", "-i", help="Collection of DATA to mine candidates from (left "
                                            "unchanged; a bi-encoder student's index goes to OUT/index).")],
    student: Annotated[str, typer.Option("--student", help="Model to train: hub id or folder (bi-encoder, or a "
                                         "cross-encoder with --kind cross-encoder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: candidates, teacher scores, labels, "
                                      "checkpoints, log, model/, index/.")],
    teacher: Annotated[str | None, typer.Option(help="Teacher cross-encoder (default: the packaged "
                                                "ms-marco-MiniLM-L-12-v2; a fine-tuned one is better).")] = None,
    kind: Annotated[str, typer.Option("--kind", help="What the student is: bi-encoder | cross-encoder.")] = "bi-encoder",
    layers: Annotated[int | None, typer.Option("--layers", help="Cross-encoder students: keep this many of the "
                                               "student checkpoint's layers, evenly spaced (0: all).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with any of these settings "
                                                "(train, mining and loss tables, top-level keys).")] = None,
    loss: Annotated[str | None, typer.Option(help="margin_mse (default) | listwise_kl | mse.")] = None,
    temperature: Annotated[float | None, typer.Option(help="listwise_kl temperature (default 1).")] = None,
    label_weight: Annotated[float | None, typer.Option(help="Weight of a loss on the qrels labels added to the "
                                                       "distillation loss (default 0).")] = None,
    count: Annotated[int | None, typer.Option(help="Candidates mined per (query, positive) (default 4).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training examples (default 3).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step (default: bi-encoder 32, cross-encoder 8).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="AdamW peak learning rate (default 2e-5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the dev split, order and initialisation.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16 (autocast).")] = None,
) -> None:
    """Distil a cross-encoder into a bi-encoder or a smaller cross-encoder on DATA's train split (dev held out)."""
    from bicross.cli.distill import load_distill_config, run_distill

    options = {"teacher": teacher, "student_layers": layers, "kind": loss, "temperature": temperature,
               "label_weight": label_weight, "count": count, "epochs": epochs, "batch_size": batch_size,
               "learning_rate": learning_rate, "seed": seed, "dtype": dtype}
    run_distill(kind, data, student, out, index_dir, load_distill_config(config, options), console)


@app.command()
def adapt(
    index_dir: Annotated[Path, typer.Option("--index", "-i", help="Collection to adapt its bi-encoder to (left "
                                            "unchanged; the adapted index goes to OUT/index).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: pseudo-queries, candidates, teacher scores, "
                                      "labels, checkpoints, model/, index/.")],
    teacher: Annotated[str | None, typer.Option(help="Teacher cross-encoder (default: the packaged "
                                                "ms-marco-MiniLM-L-12-v2).")] = None,
    student: Annotated[str | None, typer.Option(help="Bi-encoder to train (default: the one that built the "
                                                "collection).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with any of these settings ([queries], "
                                                "[train], [mining], [loss] tables, top-level keys).")] = None,
    generators: Annotated[list[str] | None, typer.Option(
        "--generator", help="Pseudo-query generators in order of preference (repeatable): title | sentence | "
        "salient (default: all three).")] = None,
    per_document: Annotated[int | None, typer.Option(help="Pseudo-queries per document (default 1).")] = None,
    max_queries: Annotated[int | None, typer.Option(help="Pseudo-queries overall, a seeded sample (default 1000).")] = None,
    count: Annotated[int | None, typer.Option(help="First-stage candidates per pseudo-query (default 4).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the pseudo-queries (default 1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per step (default: bi-encoder 32, cross-encoder 8).")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="AdamW peak learning rate (default 2e-5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of training order and initialisation.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16 (autocast).")] = None,
    queries: Annotated[Path | None, typer.Option(help="queries.jsonl, with --qrels: read only after training, to "
                                                 "report the first stages before and after.")] = None,
    qrels: Annotated[Path | None, typer.Option(help="qrels (BEIR TSV or TREC), with --queries: for the report "
                                               "only, never for training or model selection.")] = None,
) -> None:
    """Adapt a collection's bi-encoder to it without labels: pseudo-queries from its documents, teacher margins."""
    from bicross.cli.adapt import load_adapt_config, run_adapt

    options = {"teacher": teacher, "student": student, "generators": tuple(generators) if generators else None,
               "per_document": per_document, "max_queries": max_queries, "count": count, "epochs": epochs,
               "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed, "dtype": dtype}
    run_adapt(index_dir, out, load_adapt_config(config, options), queries, qrels, console)


app.command(name="pairs")(pairs_command)
app.command(name="plan")(plan_command)
