"""Measure this machine for a plan: the components of a search on a sample of the corpus, cached on disk.

`measure` returns a `CorpusProfile` and, per reranker, a `RerankerProfile` and the `CandidateTokens` of the
sample queries' candidates (profile.py), each loaded from the cache when its key matches (machine, model
fingerprints, corpus, sample, options): a second plan loads no model at all.

On a collection folder everything is measured on the real thing: its query encoder, its BM25 index and its
dense searcher at its size; the other dense index kinds (exact, int8 codes, HNSW) are built in memory from a
sample of its vectors (at most `max_scan_documents`, `max_hnsw_documents`), each at two sizes so its growth
with the corpus can be extrapolated; BM25 likewise at half size. Each first stage's real candidates give
the pairs the reranker would read. On a corpus not indexed yet (a file or a BEIR folder), the query
encoder and BM25 (built on up to `max_bm25_documents` documents) are real, the dense searchers scan synthetic
vectors near a few encoded documents, and the BM25 candidates stand for every first stage's (noted in the
profile). Sample queries are the user's (a queries file, a seeded sample), or else pseudo-queries: one
sentence of each of a seeded sample of documents.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bicross.errors import InvalidInput
from bicross.planning import components as timing
from bicross.planning.model import stage_seconds
from bicross.planning.profile import (
    CandidateTokens,
    CorpusProfile,
    MeasuredStage,
    RerankerProfile,
    cache_key,
    load_cached,
    machine_description,
    save_cached,
)
from bicross.types import Document

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.index.collection import Collection

__all__ = ["MeasureOptions", "Measured", "measure", "pseudo_queries", "sample_texts"]


@dataclass(frozen=True)
class MeasureOptions:
    """How much to measure: sample sizes, repeats, which dense index kinds; `refresh` ignores the cache."""

    sample_queries: int = 50
    repeats: int = 3
    seed: int = 0
    depth: int = 100  # candidates per retriever (the Searcher's top_k and hybrid depth)
    index_kinds: tuple[str, ...] = ("exact", "int8", "hnsw")
    max_scan_documents: int = 50_000
    max_hnsw_documents: int = 20_000
    max_bm25_documents: int = 20_000
    document_sample: int = 16  # documents encoded for the build-time estimate
    rerank_lengths: int = 8  # pair lengths the reranker is timed at
    refresh: bool = False


@dataclass
class Measured:
    """The profiles a plan is made from, and whether all of them came from the cache."""

    corpus: CorpusProfile
    rerankers: list[tuple[RerankerProfile, CandidateTokens]] = field(default_factory=list)
    cached: bool = False


def sample_texts(texts: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """A seeded sample of `count` texts (all of them, in order, when there are fewer).

    >>> sample_texts(["a", "b"], 5), len(sample_texts(list("abcdef"), 3))
    (['a', 'b'], 3)
    """
    if len(texts) <= count:
        return list(texts)
    return random.Random(seed).sample(list(texts), count)


def pseudo_queries(documents: Sequence[Document], count: int, seed: int = 0, max_words: int = 16) -> list[str]:
    """One sentence (else the title, else the first words) of each of a seeded sample of documents.

    >>> pseudo_queries([Document("d", "Cells divide fast in culture. Genes control the cycle of every cell.")], 1)
    ['Cells divide fast in culture']
    """
    from bicross.training.pseudo_queries import sentence_queries, title_queries

    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    queries: list[str] = []
    for position in order:
        document = documents[position]
        made = sentence_queries(document, seed=seed, max_words=max_words) or title_queries(document, max_words)
        text = made[0].text if made else " ".join(document.full_text.split()[:max_words])
        if text.strip():
            queries.append(text)
        if len(queries) == count:
            break
    return queries


def measure(source: Collection | Sequence[Document], *, rerankers: Sequence[str], bi_encoder: str | None = None,
            queries: Sequence[str] | None = None, colbert_model: str | None = None,
            token_store: str | Path | None = None, rerank_max_length: int = 256,
            options: MeasureOptions | None = None) -> Measured:
    """Profiles of `source` (a collection, or documents not indexed yet) for a plan; see the module notes.

    `bi_encoder` is required for documents (a collection uses its own); `queries` are the user's sample
    queries (None: pseudo-queries); `colbert_model` + `token_store` add the first stage colbert.
    """
    from bicross.index.collection import Collection

    options = options or MeasureOptions()
    collection = source if isinstance(source, Collection) else None
    documents = collection.documents if collection is not None else list(source)  # type: ignore[arg-type]
    if not documents:
        raise InvalidInput("the corpus to plan for has no documents")
    if collection is None and bi_encoder is None:
        raise InvalidInput("a corpus that is not indexed yet needs the bi-encoder to plan with (--model NAME)")
    if (colbert_model is None) != (token_store is None):
        raise InvalidInput("ColBERT retrieval needs both --colbert-model colbert:DIR and --token-store DIR")
    if colbert_model is not None and collection is None:
        raise InvalidInput("ColBERT retrieval reads a collection's token store: plan over the collection folder")
    encoder_name = collection.manifest["model"]["name"] if collection is not None else str(bi_encoder)
    chosen = list(queries) if queries else []
    chosen = sample_texts(chosen, options.sample_queries, options.seed) if chosen else \
        pseudo_queries(documents, options.sample_queries, options.seed)
    if not chosen:
        raise InvalidInput("no sample queries: pass --queries FILE (the corpus gave no sentence to make one from)")
    source_text = "the queries given" if queries else f"pseudo-queries from {len(chosen)} documents"
    machine = machine_description()
    corpus_key = cache_key("corpus", machine, _encoder_identity(collection, encoder_name), _corpus_identity(
        collection, documents), chosen, asdict(options) | {"refresh": None}, colbert_model, str(token_store))
    corpus = None if options.refresh else load_cached("corpus", corpus_key, CorpusProfile)
    cached = corpus is not None
    if corpus is None:
        from bicross.encoders.bi_encoder import BiEncoder

        encoder = BiEncoder.load(encoder_name)
        corpus = _measure_corpus(collection, documents, encoder, chosen, source_text, options,
                                 colbert_model, token_store, machine)
        save_cached("corpus", corpus_key, corpus)
    measured = Measured(corpus)
    for spec in rerankers:
        profile, tokens, from_cache = _reranker_profiles(spec, rerank_max_length, documents, corpus, corpus_key,
                                                         machine, options)
        measured.rerankers.append((profile, tokens))
        cached = cached and from_cache
    measured.cached = cached
    return measured


def _measure_corpus(collection: Collection | None, documents: Sequence[Document], encoder: BiEncoder,
                    queries: list[str], source_text: str, options: MeasureOptions, colbert_model: str | None,
                    token_store: str | Path | None, machine: dict[str, Any]) -> CorpusProfile:
    from bicross.index.bm25 import Bm25Index

    size, depth, repeats = len(documents), options.depth, options.repeats
    notes: list[str] = []
    encode, query_vectors = timing.time_encode(encoder, queries, repeats)
    sample = sample_texts([d.full_text for d in documents], options.document_sample, options.seed)
    encoder.encode_documents(sample[:1])  # warm-up
    started = time.perf_counter()
    document_vectors = encoder.encode_documents(sample)
    documents_per_second = len(sample) / max(time.perf_counter() - started, 1e-9)
    similarity = encoder.similarity
    if similarity == "cosine":
        document_vectors /= np.linalg.norm(document_vectors, axis=1, keepdims=True)
    bm25_sizes: dict[int, tuple[float, ...]] = {}
    half = max(1, min(size, options.max_bm25_documents) // 2)
    if collection is not None:
        built = _built_index(collection.manifest)
        bm25_sizes[size], bm25_lists = timing.time_bm25(collection.bm25, queries, depth, repeats)
        full_bm25 = collection.bm25
    else:
        built = None
        bm25_sample = documents[:options.max_bm25_documents]
        full_bm25 = Bm25Index.build([d.full_text for d in bm25_sample])
        bm25_sizes[len(bm25_sample)], bm25_lists = timing.time_bm25(full_bm25, queries, depth, repeats)
        if len(bm25_sample) < size:
            notes.append(f"BM25 measured on {len(bm25_sample):,} of the {size:,} documents and extrapolated")
    if half < max(bm25_sizes) and half >= 2:
        small = Bm25Index.build([d.full_text for d in documents[:half]], full_bm25.config)
        bm25_sizes[half], _ = timing.time_bm25(small, queries, depth, repeats)
    bm25_stage = _at_size(timing.measured_stage(bm25_sizes, "linear", max(bm25_sizes)), size)
    dense_stages, bytes_per_document, dense_lists = _measure_dense(
        collection, document_vectors, query_vectors, similarity, built, options, notes, size)
    fuse, fused = timing.time_fusion(bm25_lists, dense_lists, depth, repeats)
    bm25_ids = tuple(tuple(int(i) for i in ids) for ids, _ in bm25_lists)
    if collection is not None:
        candidates = {"bm25": bm25_ids, "dense": tuple(tuple(int(i) for i in ids) for ids, _ in dense_lists),
                      "hybrid": tuple(tuple(int(i) for i in ids) for ids in fused)}
    else:
        candidates = {"bm25": bm25_ids, "dense": bm25_ids, "hybrid": bm25_ids}
        notes.append("not indexed yet: dense searchers timed on synthetic vectors, and BM25's candidates stand for "
                     "the dense and hybrid ones in the rerank term")
    bytes_per_document["bm25"] = _bm25_bytes(full_bm25)
    model_bytes = {"bi-encoder": _weight_bytes(encoder.query_tower.name)}
    colbert_stage = None
    if colbert_model is not None:
        colbert_stage, candidates["colbert"], bytes_per_document["colbert"], model_bytes["colbert"] = _measure_colbert(
            collection, colbert_model, token_store, queries, options)  # type: ignore[arg-type]
    return CorpusProfile(size, int(query_vectors.shape[1]), built, tuple(queries), source_text, encode, bm25_stage,
                         dense_stages, fuse, candidates, bytes_per_document, model_bytes, documents_per_second,
                         colbert_stage, tuple(notes), machine)


def _measure_dense(collection: Collection | None, document_vectors: np.ndarray, query_vectors: np.ndarray,
                   similarity: str, built: str | None, options: MeasureOptions, notes: list[str],
                   size: int) -> tuple[dict, dict[str, float], list]:
    """Each dense index kind's per-query search time (two sizes each), bytes per vector, and the built one's lists."""
    depth, repeats = options.depth, options.repeats
    stages, bytes_per_document = {}, {}
    lists: list = []
    kinds = list(dict.fromkeys([*options.index_kinds, *([built] if built else [])]))
    for kind in kinds:
        cap = options.max_hnsw_documents if kind == "hnsw" else options.max_scan_documents
        per_size: dict[int, tuple[float, ...]] = {}
        if collection is not None and kind == built:
            per_size[size], lists = timing.time_dense(collection.search_dense, query_vectors, depth, repeats)
            bytes_per_document[kind] = _built_bytes(collection.manifest, kind)
            if kind not in timing.GROWTH:
                stages[kind] = timing.measured_stage(per_size, "constant", size)
                notes.append(f"the built {kind} index is measured at its size only (not extrapolated)")
                continue
        largest = min(size, cap)
        for count in sorted({max(2, largest // 2), largest} - set(per_size)):
            vectors = _sample_vectors(collection, document_vectors, count, options.seed)
            searcher, per_vector = timing.dense_searcher(kind, vectors, similarity)
            bytes_per_document.setdefault(kind, per_vector)
            per_size[count], found = timing.time_dense(
                lambda queries, k, searcher=searcher: _search(searcher, queries, k), query_vectors, depth, repeats)
            if not lists and count == largest:  # not indexed yet: lists of the same length, for the fusion's time
                lists = found
        bytes_per_document.setdefault(kind, float(query_vectors.shape[1] * 4))
        if max(per_size) != size:
            notes.append(f"{kind}: measured on up to {max(per_size):,} vectors, extrapolated to {size:,}")
        stages[kind] = _at_size(timing.measured_stage(per_size, timing.GROWTH.get(kind, "linear"), max(per_size)), size)
    return stages, bytes_per_document, lists


def _search(searcher: Any, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    from bicross.index.searchers import search_dense

    return search_dense(searcher, queries, top_k)


def _sample_vectors(collection: Collection | None, document_vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` document vectors: the collection's (a seeded sample), else synthetic ones near the encoded sample."""
    if collection is None:
        return timing.synthetic_vectors(document_vectors, count, seed)
    total = len(collection)
    positions = np.arange(total) if count >= total else np.sort(
        np.random.default_rng(seed).choice(total, size=count, replace=False))
    return np.ascontiguousarray(collection.dense.vectors(positions))


def _at_size(stage: MeasuredStage, size: int) -> MeasuredStage:
    """The stage's per-query times at `size` documents (extrapolated along its curve if measured at another)."""
    if stage.documents == size:
        return stage
    return replace(stage, seconds=tuple(float(v) for v in stage_seconds(stage, size)), documents=size)


def _measure_colbert(collection: Collection, spec: str, store: str | Path, queries: list[str],
                     options: MeasureOptions) -> tuple[MeasuredStage, tuple, float, int]:
    """ColBERT retrieval per query (its own query encoding included), its candidates, store bytes, model bytes."""
    from bicross.late_interaction.retrieval import ColBERTRetriever

    retriever = ColBERTRetriever.open(spec, store)
    seconds, found = timing.time_per_item(
        lambda text: retriever.search_collection(collection, [text], options.depth)[0][0], queries, options.repeats)
    candidates = tuple(tuple(int(i) for i in ids) for ids, _ in found)
    # measured at the collection's size only: taken to grow in proportion to it (its candidates are capped, so
    # this overestimates a larger corpus)
    stage = MeasuredStage(seconds, len(collection), "linear", (0.0, float(np.median(seconds)) / len(collection)))
    return stage, candidates, float(retriever.store.stats().bytes_per_document), _weight_bytes(spec.partition(":")[2])


def _reranker_profiles(spec: str, max_length: int, documents: Sequence[Document], corpus: CorpusProfile,
                       corpus_key: str, machine: dict[str, Any],
                       options: MeasureOptions) -> tuple[RerankerProfile, CandidateTokens, bool]:
    """The reranker's pair cost (machine + weights) and the corpus's candidate tokens, from the cache or measured."""
    from bicross.rerankers.protocol import is_late_interaction_spec

    if is_late_interaction_spec(spec):
        raise InvalidInput(f"bicross plan models cross-encoder rerankers (pairs of tokens), and {spec!r} is a "
                           "ColBERT or Poly-encoder: plan its first stage with --colbert-model, or pass a cross-encoder")
    identity = (spec, _fingerprint(spec), max_length)
    profile_key = cache_key("reranker", machine, identity, options.rerank_lengths, options.repeats)
    tokens_key = cache_key("tokens", corpus_key, identity)
    profile = None if options.refresh else load_cached("reranker", profile_key, RerankerProfile)
    tokens = None if options.refresh else load_cached("tokens", tokens_key, CandidateTokens)
    if profile is not None and tokens is not None:
        return profile, tokens, True
    from bicross.rerankers.cross_encoder import CrossEncoder

    reranker = CrossEncoder.load(spec, max_length=max_length)
    if tokens is None:
        tokens = _candidate_tokens(reranker, spec, documents, corpus, options.seed)
        save_cached("tokens", tokens_key, tokens)
    if profile is None:
        from bicross.planning.model import fit_pair_cost

        texts = sample_texts([d.full_text for d in documents], 64, options.seed)
        texts.sort(key=len, reverse=True)
        low = min(max_length, 32)
        targets = sorted({int(t) for t in np.linspace(low, max_length, options.rerank_lengths)})
        per_point = 3 if reranker.batch_size == 1 else min(reranker.batch_size, 16)
        points = timing.time_rerank_pairs(reranker, list(corpus.queries), texts, targets, per_point, options.repeats)
        coefficients = fit_pair_cost([length for length, _ in points], [seconds for _, seconds in points])
        profile = RerankerProfile(spec, coefficients, reranker.batch_size, reranker.max_length,
                                  reranker.tokenizer.hf.num_special_tokens_to_add(pair=True), tuple(points),
                                  _weight_bytes(spec), machine)
        save_cached("reranker", profile_key, profile)
    return profile, tokens, False


def _candidate_tokens(reranker: Any, spec: str, documents: Sequence[Document], corpus: CorpusProfile,
                      seed: int) -> CandidateTokens:
    """Reranker tokens (untruncated, no special tokens) of the sample queries and of every candidate document."""
    hf = reranker.tokenizer.hf

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in hf(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]]

    positions = sorted({p for lists in corpus.candidates.values() for row in lists for p in row})
    lengths = dict(zip(positions, count([documents[p].full_text for p in positions]) if positions else [], strict=True))
    mean_sample = sample_texts([d.full_text for d in documents], 500, seed)
    return CandidateTokens(spec, tuple(count(list(corpus.queries))),
                           {kind: tuple(tuple(lengths[p] for p in row) for row in lists)
                            for kind, lists in corpus.candidates.items()},
                           float(np.mean(count(mean_sample))))


def _built_index(manifest: dict[str, Any]) -> str:
    """The collection's dense searcher as a plan names it: exact, float16 / int8 / binary codes, hnsw, ivf_*."""
    ann = (manifest.get("ann") or {}).get("kind", "exact")
    quantization = (manifest.get("quantization") or {}).get("kind", "float32")
    return ann if ann != "exact" else ("exact" if quantization == "float32" else quantization)


def _built_bytes(manifest: dict[str, Any], kind: str) -> float:
    """Bytes per document the built dense searcher scans, from the file sizes its manifest records."""
    from bicross.index.searchers import memory_per_document

    parts = memory_per_document(manifest)
    return float(parts.get(f"{kind} index") or parts.get(f"{kind} codes") or parts["float32 vectors"])


def _bm25_bytes(bm25: Any) -> float:
    """Resident bytes per document of a BM25 index: its postings arrays, plus ~50 bytes per vocabulary term."""
    total = 0.0
    for segment in bm25.segments:
        total += sum(np.asarray(getattr(segment, name)).nbytes for name in ("indptr", "rows", "frequencies", "lengths"))
        total += 50.0 * len(segment.vocabulary)
    return total / max(1, bm25.num_documents)


def _weight_bytes(name: str) -> int:
    """Bytes of a model's weight files (0 when it cannot be resolved)."""
    from bicross.models.resolve import _WEIGHT_FILES, resolve_model

    try:
        folder = resolve_model(name).path
    except Exception:  # noqa: BLE001 - a model that does not resolve weighs nothing we can count
        return 0
    return sum((folder / file).stat().st_size for file in _WEIGHT_FILES if (folder / file).is_file())


def _fingerprint(name: str) -> str:
    from bicross.models.resolve import model_fingerprint, resolve_model

    try:
        return model_fingerprint(resolve_model(name).path)
    except Exception:  # noqa: BLE001 - the load that follows raises the real error
        return "unresolved"


def _encoder_identity(collection: Collection | None, name: str) -> tuple[str, str]:
    if collection is not None:
        return name, str(collection.manifest["model"]["fingerprint"])
    return name, _fingerprint(name)


def _corpus_identity(collection: Collection | None, documents: Sequence[Document]) -> str:
    """What names this corpus's measurements: the collection's path and file checksums, else the documents."""
    if collection is not None:
        files = {role: entry.get("sha256") for role, entry in collection.manifest.get("files", {}).items()}
        return cache_key(str(collection.path.resolve()), files, collection.manifest.get("generation"))
    return cache_key([(d.id, len(d.full_text)) for d in documents])
