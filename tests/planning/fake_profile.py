"""A hand-made profile: every component's cost is a round number, so predictions can be computed by hand.

Two sample queries; per query: encode 10 ms, exact dense 2 ms (HNSW 1 ms), BM25 1 ms, fusion 0.5 ms; the
reranker costs 40 ms a pair at any length (one pair per pass), and every candidate has 300 tokens.
"""

from __future__ import annotations

from bicross.planning.profile import CandidateTokens, CorpusProfile, MeasuredStage, RerankerProfile

RERANKER = "tiny-ce"
BI_ENCODER = "tiny-encoder"


def fake_corpus(documents: int = 1000) -> CorpusProfile:
    ranked = (tuple(range(100)), tuple(range(100, 200)))
    return CorpusProfile(
        documents=documents, dimension=4, built_index="exact", queries=("q one", "q two"), query_source="test",
        encode=(0.010, 0.010), bm25=MeasuredStage((0.001, 0.001), documents, "linear", (0.0, 1e-6)),
        dense={"exact": MeasuredStage((0.002, 0.002), documents, "linear", (0.0, 2e-6)),
               "hnsw": MeasuredStage((0.001, 0.001), documents, "log", (0.0, 0.001 / 6.907755))},
        fuse=(0.0005, 0.0005), candidates={"bm25": ranked, "dense": ranked, "hybrid": ranked},
        bytes_per_document={"exact": 16.0, "hnsw": 200.0, "bm25": 100.0}, model_bytes={"bi-encoder": 1_000_000},
        documents_per_second=100.0)


def fake_reranker(seconds_per_pair: float = 0.040) -> tuple[RerankerProfile, CandidateTokens]:
    profile = RerankerProfile(RERANKER, (seconds_per_pair, 0.0, 0.0), batch_size=1, max_length=256,
                              special_tokens=3, points=((256, seconds_per_pair),), weight_bytes=2_000_000)
    tokens = CandidateTokens(RERANKER, (10, 10), {kind: ((300,) * 100, (300,) * 100) for kind in
                                                  ("bm25", "dense", "hybrid")}, 300.0)
    return profile, tokens
