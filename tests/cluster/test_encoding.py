"""Collections embedded on a local Ray (2 CPU workers) equal single-process ones, and a failed run writes nothing."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run
from cluster_texts import TEXTS as SHORT_TEXTS
from ray_faults import die_always, die_once

from bicross.cluster import ClusterConfig, EncoderSpec, ShardedBiEncoder
from bicross.encoders import BiEncoder
from bicross.errors import BicrossError
from bicross.index.collection import Collection
from bicross.types import Document

pytestmark = pytest.mark.usefixtures("local_ray")

TEXTS = [
    *SHORT_TEXTS,
    "what is the capital of germany and of france and where do the people of the city live",
]
DOCUMENTS = [Document(f"d{i:02d}", text, title="Title" if i % 4 == 0 else "") for i, text in enumerate(TEXTS)]
MORE = [Document("d03", "the river in the city"), Document("n1", "blood cell protein and cancer patients study")]


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


def _sharded(encoder_path: Path, **cluster: object) -> ShardedBiEncoder:
    local = BiEncoder.load(str(encoder_path), dtype="float32")
    spec = EncoderSpec(str(encoder_path), dtype="float32", settings=local.settings)
    return ShardedBiEncoder(local, spec, ClusterConfig(shard_size=4, **cluster))  # type: ignore[arg-type]


def _assert_same(collection: Collection, reference: Collection) -> None:
    opened = Collection.open(collection.path)  # what was committed, read back
    assert [d.id for d in opened.documents] == [d.id for d in reference.documents]
    assert opened.documents == reference.documents
    np.testing.assert_allclose(np.asarray(opened.dense.embeddings), np.asarray(reference.dense.embeddings), atol=1e-5)
    assert opened.manifest["model"] == reference.manifest["model"]
    assert opened.manifest["truncated_documents"] == reference.manifest["truncated_documents"]


def test_build_on_two_workers_with_one_killed_equals_a_single_process_build(
        tmp_path: Path, tiny_encoder_path: Path, encoder: BiEncoder) -> None:
    reference = Collection.build(tmp_path / "single", DOCUMENTS, encoder)
    marker = tmp_path / "died"
    sharded = _sharded(tiny_encoder_path, workers=2, before_shard=functools.partial(die_once, marker))
    built = Collection.build(tmp_path / "ray", DOCUMENTS, sharded)
    assert marker.is_file()  # a worker died on its first shard, and that shard was encoded again
    _assert_same(built, reference)
    queries = encoder.encode_queries(["capital of france"])
    assert built.search_dense(queries, 3)[0].tolist() == reference.search_dense(queries, 3)[0].tolist()


def test_add_on_ray_equals_a_single_process_add(tmp_path: Path, tiny_encoder_path: Path, encoder: BiEncoder) -> None:
    reference = Collection.build(tmp_path / "single", DOCUMENTS, encoder)
    reference.add(MORE, encoder)
    collection = Collection.build(tmp_path / "ray", DOCUMENTS, encoder)
    changes = collection.add(MORE, _sharded(tiny_encoder_path, workers=1))
    assert (changes.added, changes.updated, changes.count) == (1, 1, len(DOCUMENTS) + 1)
    _assert_same(collection, reference)


def test_a_run_whose_workers_keep_dying_leaves_the_committed_state(tmp_path: Path, tiny_encoder_path: Path,
                                                                   encoder: BiEncoder) -> None:
    collection = Collection.build(tmp_path / "index", DOCUMENTS, encoder)
    before = json.loads((collection.path / "manifest.json").read_text())
    doomed = _sharded(tiny_encoder_path, workers=1, max_retries=1, before_shard=die_always)
    with pytest.raises(BicrossError, match="failed 2 times"):
        collection.add(MORE, doomed)
    assert json.loads((collection.path / "manifest.json").read_text()) == before
    assert Collection.open(collection.path).documents == DOCUMENTS


def test_index_command_with_ray(tmp_path: Path, tiny_encoder_path: Path, encoder: BiEncoder,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in DOCUMENTS))
    model = str(tiny_encoder_path)
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "ray", "--model", model,
                         "--dtype", "float32", "--ray", "local", "--ray-workers", "2")
    assert status == 0, err
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in MORE))
    status, out, err = run(monkeypatch, capsys, "add", tmp_path / "ray", more, "--dtype", "float32", "--ray", "local")
    assert status == 0, err
    assert "added 1, updated 1" in " ".join(out.split())
    reference = Collection.build(tmp_path / "single", DOCUMENTS, encoder)
    reference.add(MORE, encoder)
    _assert_same(Collection.open(tmp_path / "ray"), reference)


def test_ray_workers_without_ray_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "berlin"}) + "\n")
    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "x", "--ray-workers", "2")
    assert status == 2 and "--ray-workers needs --ray" in err
