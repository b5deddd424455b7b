"""Teacher labelling and hard-negative mining on a local Ray equal their single-process runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cluster_texts import TEXTS as SHORT_TEXTS

from bicross.cluster import (
    ClusterConfig,
    CrossEncoderSpec,
    EncoderSpec,
    RayScorer,
    label_examples_on_ray,
    mine_hard_negatives_on_ray,
)
from bicross.encoders import BiEncoder
from bicross.index.collection import Collection
from bicross.rerankers import CrossEncoder
from bicross.training.data import ContrastiveExample, JudgedQuery, read_contrastive_jsonl
from bicross.training.labels import label_examples
from bicross.training.mining import MiningConfig, mine_hard_negatives
from bicross.training.recipes import CachedTeacher
from bicross.types import Document

pytestmark = pytest.mark.usefixtures("local_ray")

TEXTS = [
    *SHORT_TEXTS,
    "what is the capital of germany", "running with the dog", "the river in the city", "blood cell protein",
]
DOCUMENTS = [Document(f"d{i:02d}", text) for i, text in enumerate(TEXTS)]
QUERIES = [JudgedQuery("q1", "capital of france", {"d01": 1}), JudgedQuery("q2", "people in berlin", {"d02": 2, "d00": 1}),
           JudgedQuery("q3", "cancer risk", {"d04": 1}), JudgedQuery("q4", "a dog by the river", {"d10": 1}),
           JudgedQuery("q5", "cell protein study", {"d15": 1, "d05": 1}), JudgedQuery("q6", "nice weather", {"d07": 1})]
EXAMPLES = [ContrastiveExample(q.text, DOCUMENTS[int(q.positives[0][1:])].text,
                               tuple(d.text for d in DOCUMENTS[i:i + 3]), q.query_id) for i, q in enumerate(QUERIES)]


def test_labels_from_ray_workers_equal_a_single_process_labelling(tmp_path: Path, tiny_cross_encoder_path: Path) -> None:
    local = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    expected, expected_report = label_examples(EXAMPLES, CachedTeacher(local, tmp_path / "single.json"),
                                               tmp_path / "single.jsonl")
    spec = CrossEncoderSpec(str(tiny_cross_encoder_path), dtype="float32")
    with RayScorer(spec, ClusterConfig(workers=2, shard_size=5)) as scorer:
        assert scorer.identity == local.identity  # caches written on the cluster and here are interchangeable
        pairs = [(example.query, example.positive) for example in EXAMPLES]
        np.testing.assert_allclose(scorer.score(pairs), local.score(pairs), atol=1e-5)
        labelled, report = label_examples_on_ray(EXAMPLES, CachedTeacher(scorer, tmp_path / "ray.json"),
                                                 tmp_path / "ray.jsonl")
    assert report == expected_report
    assert [(e.query_id, e.negatives) for e in labelled] == [(e.query_id, e.negatives) for e in expected]
    np.testing.assert_allclose([e.scores for e in labelled], [e.scores for e in expected], atol=1e-5)
    assert len(read_contrastive_jsonl(tmp_path / "ray.jsonl")) == len(EXAMPLES)
    cached = CachedTeacher(local, tmp_path / "ray.json").cache  # the cluster's scores, saved where a rerun reads them
    assert len(cached) == len(CachedTeacher(local, tmp_path / "single.json").cache)



def test_a_small_score_cache_does_not_make_ray_labelling_score_a_pair_twice(tmp_path: Path,
                                                                            tiny_cross_encoder_path: Path) -> None:
    spec = CrossEncoderSpec(str(tiny_cross_encoder_path), dtype="float32")
    unique = {(e.query, text) for e in EXAMPLES for text in (e.positive, *e.negatives)}
    with RayScorer(spec, ClusterConfig(workers=2, shard_size=5)) as scorer:
        teacher = CachedTeacher(scorer, tmp_path / "small.json")
        teacher.cache.max_entries = 3  # far fewer than the pairs: pre-scored pairs must not be evicted
        _, report = label_examples_on_ray(EXAMPLES, teacher, tmp_path / "small.jsonl")
    assert report.scored_pairs == len(unique) and teacher.cache.misses == len(unique)

def test_mining_on_ray_writes_what_one_process_writes(tmp_path: Path, tiny_encoder_path: Path,
                                                      tiny_cross_encoder_path: Path) -> None:
    encoder = BiEncoder.load(str(tiny_encoder_path), dtype="float32")
    collection = Collection.build(tmp_path / "index", DOCUMENTS, encoder)
    config = MiningConfig(first_stage="hybrid", depth=8, count=2, batch_queries=2)
    teacher = CrossEncoder.load(str(tiny_cross_encoder_path), dtype="float32")
    single = mine_hard_negatives(collection, encoder, QUERIES, tmp_path / "single.jsonl", config, teacher)
    out = tmp_path / "ray.jsonl"
    out.write_text((tmp_path / "single.jsonl").read_text().splitlines(keepends=True)[0])  # q1 done before a "kill"
    report = mine_hard_negatives_on_ray(
        collection.path, EncoderSpec(str(tiny_encoder_path), dtype="float32", settings=encoder.settings), QUERIES, out,
        config, CrossEncoderSpec(str(tiny_cross_encoder_path), dtype="float32"), ClusterConfig(workers=2, shard_size=2))
    assert out.read_text() == (tmp_path / "single.jsonl").read_text()
    assert (report.queries, report.resumed_queries) == (len(QUERIES) - 1, 1)
    assert report.examples == single.examples - 1
