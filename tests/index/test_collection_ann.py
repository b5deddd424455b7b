"""Collections searched by an ANN index (HNSW, IVF) or by quantized codes, checked against exact search."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run as run_cli

from bicross.encoders import BiEncoder
from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.ann import AnnConfig, AnnIndex
from bicross.index.collection import Collection
from bicross.index.searchers import QuantizedDenseIndex, perturbed_samples
from bicross.retrieval import FirstStageConfig
from bicross.search import SearchConfig, Searcher
from bicross.types import Document

WORDS = ("the a of and to in is was for on with by berlin paris city people population million live river "
         "vitamin d cancer risk cell gene protein study patients blood heart weather nice today museum art "
         "how many what where who capital france germany running runs ran run quick brown fox dog jumps").split()


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def random_texts(count: int, seed: int) -> list[str]:
    generator = random.Random(seed)
    return [" ".join(generator.choice(WORDS) for _ in range(generator.randint(4, 10))) for _ in range(count)]


DOCUMENTS = [Document(f"d{i:03d}", text, metadata={"even": i % 2 == 0}) for i, text in enumerate(random_texts(300, 0))]
NEW = [Document("n1", "zebra crossing near the quokka island"), Document("n2", "walrus walrus walrus on ice")]
QUERIES = random_texts(40, 1)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, encoder: BiEncoder):
    """Build each kind once; tests that change a collection work on a copy (`fresh`)."""
    folders: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in folders:
            folder = tmp_path_factory.mktemp(kind) / "index"
            options = {"ann": AnnConfig(kind=kind)} if kind in ("hnsw", "ivf_flat") else {"quantization": kind}
            Collection.build(folder, DOCUMENTS, encoder, **options)  # type: ignore[arg-type]
            folders[kind] = folder
        return folders[kind]

    return get


@pytest.fixture()
def fresh(built, tmp_path: Path):
    def copy(kind: str) -> Collection:
        shutil.copytree(built(kind), tmp_path / kind)
        return Collection.open(tmp_path / kind)

    return copy


def queries(collection: Collection, encoder: BiEncoder) -> np.ndarray:
    """Encoded text queries plus stored document vectors moved slightly."""
    return np.concatenate([encoder.encode_queries(QUERIES), perturbed_samples(collection.dense, 60)])


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat"])
def test_ann_collection_reopens_with_its_index_and_agrees_with_exact(built, encoder: BiEncoder, kind: str) -> None:
    collection = Collection.open(built(kind))
    assert isinstance(collection.searcher, AnnIndex) and collection.searcher.kind == kind
    assert collection.searcher.mapped  # opened memory-mapped
    assert collection.manifest["ann"]["kind"] == kind and collection.manifest["ann"]["rows"] == len(DOCUMENTS)
    vectors = queries(collection, encoder)
    assert collection.ann_recall(vectors, k=10) >= 0.9
    found, scores = collection.search_dense(vectors, 10)
    exact, exact_scores = collection.dense.search(vectors, 10)
    assert np.mean(found[:, 0] == exact[:, 0]) >= 0.9
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], atol=1e-5)  # exact scale


def test_search_pipeline_uses_the_ann_searcher_with_query_time_knobs(built, encoder: BiEncoder,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    collection = Collection.open(built("hnsw"))
    seen = []
    original = AnnIndex.search

    def spy(self, queries, top_k, allowed=None, ef_search=None, nprobe=None):
        seen.append(ef_search)
        return original(self, queries, top_k, allowed, ef_search=ef_search, nprobe=nprobe)

    monkeypatch.setattr(AnnIndex, "search", spy)
    config = SearchConfig(top_k=5, top_n=5, first_stage=FirstStageConfig(kind="dense", ef_search=40))
    result = Searcher(collection, encoder, config=config).search(QUERIES[0])
    ids, _ = collection.dense.search(encoder.encode_queries(QUERIES[:1]), 5)
    assert seen == [40] and result.hits[0].id == collection.documents[ids[0, 0]].id
    with pytest.raises(InvalidInput, match="ef_search"):
        FirstStageConfig(ef_search=0)


@pytest.mark.parametrize(("kind", "least_recall"), [("float16", 0.99), ("int8", 0.95), ("binary", 0.8)])
def test_quantized_collection_scans_codes_and_rescores(built, encoder: BiEncoder, kind: str, least_recall: float) -> None:
    collection = Collection.open(built(kind))
    searcher = collection.searcher
    assert isinstance(searcher, QuantizedDenseIndex) and searcher.kind == kind
    assert isinstance(searcher.codes[0].codes, np.memmap)
    vectors = queries(collection, encoder)
    assert collection.ann_recall(vectors, k=10) >= least_recall
    found, scores = collection.search_dense(vectors, 10)
    exact, exact_scores = collection.dense.search(vectors, 10)
    same = found[:, 0] == exact[:, 0]
    assert same.mean() >= 0.9
    np.testing.assert_allclose(scores[same, 0], exact_scores[same, 0], atol=1e-5)  # rescored: exact scores
    wider, _ = collection.search_dense(vectors, 10, rescore_factor=30)  # shortlist of all 300: exact
    assert np.array_equal(wider, exact)


def test_default_build_keeps_exact_search(tmp_path: Path, encoder: BiEncoder) -> None:
    collection = Collection.build(tmp_path / "exact", DOCUMENTS[:20], encoder)
    assert collection.searcher is collection.dense and collection.manifest["ann"]["kind"] == "exact"
    assert Collection.open(tmp_path / "exact").ann_recall(encoder.encode_queries(QUERIES)) == 1.0


@pytest.mark.parametrize("kind", ["hnsw", "int8"])
def test_add_delete_compact_keep_the_searcher_consistent(fresh, encoder: BiEncoder, kind: str) -> None:
    collection = fresh(kind)
    before = dict(collection.manifest["files"])
    collection.add(NEW + [Document("d007", "gene protein study of the cell")], encoder)  # one replaced
    files = collection.manifest["files"]
    if kind == "hnsw":
        assert files["ann"]["name"] != before["ann"]["name"] and collection.manifest["ann"]["rows"] == 303
    else:
        assert files["codes-0.npy"] == before["codes-0.npy"] and "codes-1.npy" in files  # only the new segment
    for reopened in (collection, Collection.open(collection.path)):
        assert isinstance(reopened.searcher, AnnIndex if kind == "hnsw" else QuantizedDenseIndex)
        found, _ = reopened.search_dense(encoder.encode_queries([d.text for d in NEW]), 1)
        assert [reopened.documents[i].id for i in found[:, 0]] == ["n1", "n2"]
        everything, _ = reopened.search_dense(encoder.encode_queries(QUERIES[:5]), len(reopened))
        assert sorted(everything[0].tolist()) == list(range(len(reopened)))  # the replaced row is never returned

    gone = ["n1", "d000", "d001", "d150"]
    carried = dict(collection.manifest["files"])
    collection.delete(gone)
    if kind == "hnsw":
        assert collection.manifest["files"]["ann"] == carried["ann"]  # not rewritten
    reopened = Collection.open(collection.path)
    assert len(reopened) == len(DOCUMENTS) + 2 - len(gone)
    vectors = queries(reopened, encoder)
    found, _ = reopened.search_dense(vectors, 30)
    assert not {reopened.documents[i].id for i in found.ravel()} & set(gone)
    assert reopened.ann_recall(vectors, k=10) >= 0.9

    assert reopened.compact()
    assert reopened.manifest["ann"]["rows"] == len(reopened) and reopened.manifest["deleted"] == 0
    compacted = Collection.open(reopened.path)
    assert compacted.manifest["ann"]["kind"] == ("hnsw" if kind == "hnsw" else "exact")
    assert [s.get("codes") for s in compacted.manifest["segments"]] == [None if kind == "hnsw" else "codes-0.npy"]
    assert compacted.ann_recall(vectors, k=10) >= 0.9


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat", "binary"])
def test_filters_still_return_top_k_allowed_documents(built, encoder: BiEncoder, kind: str) -> None:
    collection = Collection.open(built(kind))
    vectors = encoder.encode_queries(QUERIES)
    for allowed in (collection.filter_mask({"even": True}), np.arange(len(collection)) % 50 == 3):
        found, _ = collection.search_dense(vectors, 10, allowed)
        assert found.shape == (len(QUERIES), min(10, int(allowed.sum())))
        assert allowed[found].all() and all(len(set(row)) == found.shape[1] for row in found)
        exact, _ = collection.dense.search(vectors, 10, allowed)
        assert np.mean(found[:, 0] == exact[:, 0]) >= 0.9


def test_bad_settings_and_a_stale_ann_index_are_refused(built, tmp_path: Path, encoder: BiEncoder) -> None:
    with pytest.raises(InvalidInput, match="unknown quantization"):
        Collection.build(tmp_path / "a", DOCUMENTS[:5], encoder, quantization="int4")
    with pytest.raises(InvalidInput, match="ivf_sq8"):
        Collection.build(tmp_path / "b", DOCUMENTS[:5], encoder, ann=AnnConfig(kind="hnsw"), quantization="int8")
    folder = shutil.copytree(built("hnsw"), tmp_path / "stale")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["ann"]["rows"] = 299
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="rebuild"):
        Collection.open(folder)


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`bicross ARGS` in-process, with whitespace squashed so wrapped rich output matches one line."""
    status, out, err = run_cli(monkeypatch, capsys, *args)
    return status, " ".join(out.split()), " ".join(err.split())


def test_cli_index_options_and_info_report_searcher_memory_and_recall(
        tmp_path: Path, tiny_encoder_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in DOCUMENTS[:120]))
    model = ("--model", tiny_encoder_path, "--dtype", "float32")
    status, out, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "hnsw", *model,
                           "--ann", "hnsw", "--hnsw-m", "8", "--ef-search", "64")
    assert status == 0, err
    assert "dense search: hnsw (M=8, efConstruction=200, efSearch=64)" in out
    status, out, err = run(monkeypatch, capsys, "info", tmp_path / "hnsw", "--recall-sample", "50")
    assert status == 0, err
    sizes = re.search(r"bytes per document: ([\d,]+) float32 vectors \+ ([\d,]+) hnsw index = ([\d,]+)", out)
    assert sizes is not None, out
    assert 128 <= int(sizes[1]) <= 130 and int(sizes[2]) > 0  # 32 float32 dimensions (+ the npy header)
    recall = float(out.split("perturbed document vectors: ")[1].split()[0])
    assert 0.9 <= recall <= 1.0

    status, out, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "int8", *model,
                           "--quantization", "int8")
    assert status == 0, err
    codes = re.search(r"([\d,]+) int8 codes", out)
    assert "exact over int8 codes" in out and codes is not None and 32 <= int(codes[1]) <= 34  # one byte a dimension

    status, _, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "bad", *model,
                         "--ann", "ivf_pq", "--quantization", "binary")
    assert status == 2 and "ivf_sq8" in err
