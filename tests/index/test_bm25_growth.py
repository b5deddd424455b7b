"""BM25 that grows: an index updated by adds, deletes and updates ranks exactly like one built from scratch over
its live texts, for every analysis and scoring config; a collection's add analyses and writes only the new
documents' postings; folders written before segment-wise BM25 still open."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import bicross.index.analysis as analysis_module
import bicross.index.bm25_segments as segments_module
from bicross.encoders import BiEncoder
from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.bm25 import Bm25Config, Bm25Index
from bicross.index.collection import Collection
from bicross.types import Document

SHARED = Path(__file__).resolve().parents[3] / "shared"
FIXTURE = Path(__file__).parent / "fixtures" / "collection-before-cjk"
CONFIGS = {
    "english": Bm25Config.for_language("en"),
    "neutral": Bm25Config(),
    "porter-robertson": Bm25Config(stopwords=None, stemmer="porter", k1=0.9, b=0.4, method="robertson", lowercase=False),
    "atire-full-length-norm": Bm25Config(stopwords="en", stemmer="english", k1=2.0, b=1.0, method="atire"),
    "lucene-no-length-norm": Bm25Config(stopwords="en_plus", k1=1.2, b=0.0),
    "german": Bm25Config.for_language("de"),
    "cjk-as-whole-runs": Bm25Config(cjk="none"),
}
EXTRA = ["Der Hund schläft im Garten unter dem großen Baum, weil es heute sehr warm ist.",
         "维生素D有助于身体吸收钙，缺乏维生素D可能导致骨质疏松。", "東京は日本の首都で、世界で最も人口の多い都市圏です。",
         "the the and of", ""]


def scifact(documents: int, queries: int) -> tuple[list[str], list[str]]:
    """Title + text of the first SciFact documents, and query texts; skipped only where ../shared is absent."""
    data = Path(os.environ.get("BICROSS_SHARED_DATA") or SHARED / "data") / "scifact"
    if not (data / "corpus.jsonl").is_file():
        if "BICROSS_SHARED_DATA" not in os.environ and not SHARED.exists():
            pytest.skip(f"{SHARED} is absent: no SciFact text to grow an index from")
        pytest.fail(f"{data / 'corpus.jsonl'} not found: set BICROSS_SHARED_DATA to the folder holding scifact/")
    with (data / "corpus.jsonl").open(encoding="utf-8") as lines:
        texts = [f"{row['title']}. {row['text']}" for row in map(json.loads, lines)][:documents]
    with (data / "queries.jsonl").open(encoding="utf-8") as lines:
        return texts, [json.loads(line)["text"] for line, _ in zip(lines, range(queries), strict=False)]


def zipf_corpus(documents: int, seed: int = 0, min_words: int = 0) -> list[str]:
    """Synthetic texts of words drawn with a Zipf distribution (a few very common words, a long tail)."""
    generator = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(2000)]
    return [" ".join(words[min(rank, 1999) - 1] for rank in generator.zipf(1.3, size=generator.integers(min_words, 40)))
            for _ in range(documents)]


def assert_ranks_like_a_fresh_build(grown: Bm25Index, live_texts: list[str], queries: list[str]) -> None:
    """Same ids in the same order and the same scores (bit for bit: same arithmetic) as a build over `live_texts`."""
    fresh = Bm25Index.build(live_texts, grown.config)
    assert grown.num_documents == fresh.num_documents == len(live_texts)
    compared = 0
    for (ids, scores), (fresh_ids, fresh_scores) in zip(grown.search_many(queries, len(live_texts)),
                                                        fresh.search_many(queries, len(live_texts)), strict=True):
        np.testing.assert_array_equal(ids, fresh_ids)
        np.testing.assert_array_equal(scores, fresh_scores)
        compared += ids.size
    assert compared > 0


def grow(texts: list[str], config: Bm25Config, seed: int = 1) -> tuple[Bm25Index, list[str]]:
    """Build over a third of `texts`, then adds, deletes, updates (delete + re-add) and a second delete."""
    rng = np.random.default_rng(seed)
    third = len(texts) // 3
    index, live = Bm25Index.build(texts[:third], config), list(texts[:third])
    index, live = index.update((), texts[third:2 * third]), live + texts[third:2 * third]
    gone = np.sort(rng.choice(len(live), size=len(live) // 5, replace=False))
    index, live = index.update(gone), [text for i, text in enumerate(live) if i not in set(gone.tolist())]
    updated = np.sort(rng.choice(len(live), size=10, replace=False))
    new_versions = [live[i] + " revised" for i in updated]
    index = index.update(updated, new_versions + texts[2 * third:])
    live = [text for i, text in enumerate(live) if i not in set(updated.tolist())] + new_versions + texts[2 * third:]
    index, live = index.update([0, 3, len(live) - 1]), live[1:3] + live[4:-1]
    assert len(index.segments) == 3 and index.tombstones.size > 0
    return index, live


@pytest.mark.parametrize("name", CONFIGS)
def test_grown_index_ranks_exactly_like_a_fresh_build_on_scifact(name: str) -> None:
    texts, queries = scifact(240, 40)
    index, live = grow(texts + EXTRA, CONFIGS[name])
    assert_ranks_like_a_fresh_build(index, live, queries + EXTRA[:3])
    assert_ranks_like_a_fresh_build(index.compacted(), live, queries + EXTRA[:3])


@pytest.mark.parametrize("name", ["english", "porter-robertson", "atire-full-length-norm", "lucene-no-length-norm"])
def test_grown_index_scores_equal_bm25s_eager_full_build_on_scifact(name: str) -> None:
    """The reference the old index was: bm25s' eager scores over the live texts, same terms, same parameters."""
    import bm25s

    from bicross.index.analysis import Analyzer

    texts, queries = scifact(240, 40)
    config = CONFIGS[name]
    index, live = grow(texts, config)
    vocabulary: dict[str, int] = {}
    term_ids = [[vocabulary.setdefault(term, len(vocabulary)) for term in terms] for terms in Analyzer(config)(live)]
    reference = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    reference.index((term_ids, vocabulary), create_empty_token=False, show_progress=False)
    compared = 0
    for query, terms in zip(queries, Analyzer(config)(queries), strict=True):
        expected = reference.get_scores_from_ids([vocabulary[term] for term in terms if term in vocabulary])
        ids, scores = index.search(query, len(live))
        np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(expected > 0))
        np.testing.assert_array_equal(scores, expected[ids])  # bit for bit: bm25s' own arithmetic
        compared += ids.size
    assert compared > 500


@pytest.mark.parametrize("name", CONFIGS)
def test_grown_index_ranks_exactly_like_a_fresh_build_on_zipf_words(name: str) -> None:
    texts = zipf_corpus(600)
    index, live = grow(texts, CONFIGS[name], seed=2)
    queries = [" ".join(f"w{i}" for i in range(start, start + 3)) for start in (1, 5, 40, 300, 1500)] + ["w1 w1 w7"]
    assert_ranks_like_a_fresh_build(index, live, queries)


@pytest.mark.parametrize("deleted", [3, 400], ids=["few-deletes-binary-searched", "many-deletes-masked"])
def test_deleted_rows_never_count_whether_few_or_many(deleted: int) -> None:
    texts = zipf_corpus(800, seed=3)
    gone = np.sort(np.random.default_rng(4).choice(800, size=deleted, replace=False))
    index = Bm25Index.build(texts, CONFIGS["neutral"]).update(gone, zipf_corpus(50, seed=6))
    live = [text for i, text in enumerate(texts) if i not in set(gone.tolist())] + zipf_corpus(50, seed=6)
    assert_ranks_like_a_fresh_build(index, live, ["w1", "w1 w2 w3", "w2 w40", "w7 w7 w900"])


def test_grown_index_survives_save_and_load_with_its_tombstones(tmp_path: Path) -> None:
    index, live = grow(zipf_corpus(300), CONFIGS["english"])
    index.save(tmp_path / "grown")
    assert sorted(p.name for p in (tmp_path / "grown").iterdir()) == index.files()
    loaded = Bm25Index.load(tmp_path / "grown", mmap=True)
    np.testing.assert_array_equal(loaded.tombstones, index.tombstones)
    assert_ranks_like_a_fresh_build(loaded, live, ["w1 w2 w3", "w10 w200"])


def test_update_returns_a_new_index_and_leaves_the_old_one_searching_as_before() -> None:
    old = Bm25Index.build(["apple banana", "banana cherry", "cherry date"], Bm25Config())
    before = old.search("banana cherry", 3)
    new = old.update([1], ["banana banana"])
    assert new.segments[0] is old.segments[0]  # shared, not copied
    for got, expected in zip(old.search("banana cherry", 3), before, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert new.search("banana", 3)[0].tolist() == [2, 0]  # row 2 is the added text: its tf is higher


def test_update_analyses_only_the_added_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    index = Bm25Index.build(zipf_corpus(500), CONFIGS["english"])
    analysed: list[int] = []
    analyse = analysis_module.Analyzer.__call__
    monkeypatch.setattr(analysis_module.Analyzer, "__call__",
                        lambda self, texts: analysed.append(len(texts)) or analyse(self, texts))
    index.update(np.arange(100), zipf_corpus(7, seed=5))
    assert analysed == [7]


def test_language_is_kept_from_the_build_not_redetected_on_update() -> None:
    english = Bm25Index.build(["She runs along the river every morning before work, and then she takes the train.",
                               "The cat sat on the mat all day; it was happy to watch the birds in the garden."])
    grown = english.update((), ["Der Hund schläft im Garten unter dem großen Baum, weil es heute sehr warm ist."])
    assert grown.config == english.config == Bm25Config.for_language("en")
    assert grown.search("running", 3)[0].tolist() == [0]  # still stemmed as English


def test_deleting_every_text_leaves_an_index_that_matches_nothing() -> None:
    index = Bm25Index.build(["apple", "banana"], Bm25Config()).update([0, 1])
    assert index.num_documents == 0 and index.search("apple", 5)[0].size == 0


@pytest.mark.parametrize(("deleted", "added"), [([5], []), ([-1], []), ([[0]], []), ([], "one text"), ([], [3])])
def test_bad_updates_are_refused(deleted: object, added: object) -> None:
    index = Bm25Index.build(["apple", "banana"], Bm25Config())
    with pytest.raises(InvalidInput):
        index.update(deleted, added)  # type: ignore[arg-type]


def test_a_bm25_folder_of_the_eager_format_is_refused_with_how_to_rebuild() -> None:
    with pytest.raises(IndexCorrupt, match=r"older bicross .*Bm25Index.build"):
        Bm25Index.load(FIXTURE / "bm25.g000001")


# ------------------------------------------------------------------------------------------------------------
# In a collection


@pytest.fixture(scope="module")
def encoder(tiny_encoder_path: Path) -> BiEncoder:
    return BiEncoder.load(str(tiny_encoder_path), dtype="float32")


def _bm25_files(folder: Path, manifest: dict) -> dict[str, tuple[str, int, int]]:
    """role -> (name, bytes, mtime_ns) of every file inside the BM25 segment folders of a manifest."""
    found = {}
    for segment in manifest["segments"]:
        name = manifest["files"][segment["bm25"]]["name"]
        for file in sorted((folder / name).iterdir()):
            found[f"{segment['bm25']}/{file.name}"] = (name, file.stat().st_size, file.stat().st_mtime_ns)
    return found


def test_an_add_writes_only_the_new_segments_postings(tmp_path: Path, encoder: BiEncoder,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    documents = [Document(f"z{i}", text) for i, text in enumerate(zipf_corpus(60, min_words=1))]
    collection = Collection.build(tmp_path / "c", documents[:40], encoder)
    collection.add(documents[40:50], encoder)
    before = _bm25_files(collection.path, collection.manifest)
    saved, loaded, analysed = [], [], []
    save, load, analyse = segments_module.save_segment, segments_module.load_segment, analysis_module.Analyzer.__call__
    monkeypatch.setattr("bicross.index.bm25.save_segment", lambda *args: saved.append(args[1]) or save(*args))
    monkeypatch.setattr("bicross.index.bm25.load_segment", lambda *args: loaded.append(args[0]) or load(*args))
    monkeypatch.setattr(analysis_module.Analyzer, "__call__",
                        lambda self, texts: analysed.append(len(texts)) or analyse(self, texts))
    collection.add(documents[50:] + [Document("z3", "an update of z3")], encoder)
    assert analysed == [11] and len(saved) == 1 and loaded == []  # the 11 new texts, one segment, nothing re-read
    after = _bm25_files(collection.path, collection.manifest)
    assert {role: after[role] for role in before} == before  # same names, bytes and mtimes: not rewritten
    assert [s["bm25"] for s in collection.manifest["segments"]] == ["bm25-0", "bm25-1", "bm25-2"]
    collection.delete(["z0", "z41"])
    assert len(saved) == 1 and _bm25_files(collection.path, collection.manifest) == after  # a delete writes none
    live = [d.full_text for d in collection.documents]
    assert_ranks_like_a_fresh_build(collection.bm25, live, ["w1 w2", "w3 w30 w300", "update"])
    assert_ranks_like_a_fresh_build(Collection.open(collection.path).bm25, live, ["w1 w2", "w3 w30 w300", "update"])


def test_grown_scifact_collection_ranks_like_a_fresh_build(tmp_path: Path, encoder: BiEncoder) -> None:
    texts, queries = scifact(150, 30)
    documents = [Document(f"s{i}", text) for i, text in enumerate(texts)]
    collection = Collection.build(tmp_path / "c", documents[:60], encoder)
    collection.add(documents[60:110], encoder)
    collection.delete([f"s{i}" for i in range(0, 110, 7)])
    collection.add([Document("s8", "Vitamin D deficiency and the risk of fractures in older adults."),
                    *documents[110:]], encoder)
    collection.delete(["s100", "s149"])
    reopened = Collection.open(collection.path)
    live = [d.full_text for d in reopened.documents]
    assert reopened.bm25.config == Collection.build(tmp_path / "fresh", reopened.documents, encoder).bm25.config
    assert_ranks_like_a_fresh_build(reopened.bm25, live, queries)
    assert_ranks_like_a_fresh_build(collection.bm25, live, queries)
    collection.compact()
    assert_ranks_like_a_fresh_build(Collection.open(collection.path).bm25, live, queries)


def test_a_folder_written_before_bm25_segments_opens_and_upgrades_at_its_next_commit(tmp_path: Path) -> None:
    folder = shutil.copytree(FIXTURE, tmp_path / "old")
    with pytest.warns(UserWarning, match="rebuilt in memory from its 4 documents"):
        old = Collection.open(folder)
    live = [d.full_text for d in old.documents]
    assert_ranks_like_a_fresh_build(old.bm25, live, ["berlin museums", "北京是中国的首都"])
    assert "bm25" in old.manifest["files"]
    assert old.compact() is True  # one segment, no tombstones, but its BM25 is in the old format: a commit upgrades it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upgraded = Collection.open(folder)
    assert "bm25" not in upgraded.manifest["files"] and upgraded.manifest["segments"][0]["bm25"] == "bm25-0"
    assert_ranks_like_a_fresh_build(upgraded.bm25, live, ["berlin museums", "北京是中国的首都"])
    assert upgraded.compact() is False


def test_old_format_with_segments_and_tombstones_rebuilds_each_segment(tmp_path: Path, encoder: BiEncoder) -> None:
    documents = [Document(f"z{i}", text) for i, text in enumerate(zipf_corpus(50, min_words=1))]
    collection = Collection.build(tmp_path / "c", documents[:30], encoder)
    collection.add(documents[30:45], encoder)
    collection.delete(["z1", "z33"])
    manifest = json.loads((collection.path / "manifest.json").read_text())
    for segment in manifest["segments"]:  # as bicross wrote it before: no BM25 postings per segment
        del manifest["files"][segment.pop("bm25")]
    (collection.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="rebuilt in memory from its 43 documents"):
        old = Collection.open(collection.path)
    live = [d.full_text for d in old.documents]
    assert [s.num_rows for s in old.bm25.segments] == [30, 15] and old.bm25.tombstones.tolist() == [1, 33]
    assert_ranks_like_a_fresh_build(old.bm25, live, ["w1 w2", "w5 w50"])
    old.add(documents[45:], encoder)  # writes the postings of the two old segments and of the new one
    assert [s["bm25"] for s in old.manifest["segments"]] == ["bm25-0", "bm25-1", "bm25-2"]
    assert_ranks_like_a_fresh_build(Collection.open(collection.path).bm25, live + [d.full_text for d in documents[45:]],
                                    ["w1 w2", "w5 w50"])
