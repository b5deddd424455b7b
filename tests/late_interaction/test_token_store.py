"""The token store: round trip, appends, int8 that keeps MaxSim rankings, and corruption found with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.errors import IndexCorrupt, IndexMismatch, InvalidInput
from bicross.index import store as collection_store
from bicross.late_interaction.token_store import TokenStore, text_hash
from bicross.scoring.late_interaction import maxsim

DIM = 8


def _documents(count: int, seed: int = 0) -> list[np.ndarray]:
    """Unit token vectors, 3 to 12 per document, as a ColBERT would give."""
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(int(rng.integers(3, 13)), DIM)).astype(np.float32) for _ in range(count)]
    return [array / np.linalg.norm(array, axis=1, keepdims=True) for array in arrays]


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_round_trip_and_append_keep_every_document(dtype: str, tmp_path: Path) -> None:
    first, second = _documents(5, seed=1), _documents(3, seed=2)
    store = TokenStore.create(tmp_path / "tokens", DIM, dtype, model="tiny")  # type: ignore[arg-type]
    store = store.append([f"d{i}" for i in range(5)], first, [f"text {i}" for i in range(5)])
    store = store.append(["e0", "e1", "e2"], second)
    reopened = TokenStore.open(tmp_path / "tokens", verify=True, model="tiny")
    assert reopened.ids == ("d0", "d1", "d2", "d3", "d4", "e0", "e1", "e2") and len(reopened) == 8
    tolerance = 1e-3 if dtype == "float16" else 1 / 254 + 1e-6  # int8: half a step of the row's scale at most
    for position, expected in enumerate(first + second):
        assert reopened.vectors(position).shape == expected.shape
        assert np.abs(reopened.vectors(position) - expected).max() <= tolerance
    assert reopened.position("e1") == 6 and reopened.find_text("text 3") == 3 and reopened.find_text("other") is None
    assert reopened.token_counts().tolist() == [len(a) for a in first + second]
    stats = reopened.stats()
    tokens = sum(len(a) for a in first + second)
    per_token = DIM * 2 if dtype == "float16" else DIM + 4  # int8 codes + one float32 scale per vector
    assert stats.tokens == tokens and stats.bytes == tokens * per_token + (6 + 4) * 8  # + two offset arrays
    assert stats.bytes_per_document == pytest.approx(stats.bytes / 8)
    assert isinstance(reopened._segments[0].vectors, np.memmap)  # read from disk on demand, not loaded


def test_int8_keeps_maxsim_rankings(tmp_path: Path) -> None:
    documents = _documents(60, seed=3)
    queries = _documents(20, seed=4)
    exact = TokenStore.create(tmp_path / "f16", DIM, "float16").append([str(i) for i in range(60)], documents)
    coarse = TokenStore.create(tmp_path / "i8", DIM, "int8").append([str(i) for i in range(60)], documents)

    def ranking(store: TokenStore, query: np.ndarray) -> np.ndarray:
        width = max(len(d) for d in documents)
        padded = torch.zeros(60, width, DIM)
        mask = torch.zeros(60, width, dtype=torch.bool)
        for i in range(60):
            vectors = torch.from_numpy(store.vectors(i))
            padded[i, :len(vectors)], mask[i, :len(vectors)] = vectors, True
        return maxsim(torch.from_numpy(query), padded, document_mask=mask).numpy()

    agreements, top_one = [], 0
    for query in queries:
        a, b = ranking(exact, query), ranking(coarse, query)
        ranks_a, ranks_b = np.argsort(np.argsort(-a)), np.argsort(np.argsort(-b))
        agreements.append(np.corrcoef(ranks_a, ranks_b)[0, 1])  # Spearman's rho
        top_one += int(np.argmax(a) == np.argmax(b))
        assert np.abs(a - b).max() < 0.05  # a score is a sum of up to 12 cosines
    assert min(agreements) > 0.99 and top_one >= 19
    assert coarse.stats().bytes < exact.stats().bytes  # 12 bytes a vector against 16 at 8 dims (132 vs 256 at 128)


def test_a_truncated_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    store = TokenStore.create(tmp_path / "tokens", DIM, "int8").append(["a", "b"], _documents(2))
    segment = tmp_path / "tokens" / store.manifest["files"]["segment-000001"]["name"]
    vectors = segment / "vectors.i8"
    vectors.write_bytes(vectors.read_bytes()[:-5])  # a half-written (or half-copied) file
    with pytest.raises(IndexCorrupt, match=r"vectors\.i8 holds \d+ bytes, \d+ expected for \d+ token vectors of 8 "
                                           r"dims \(int8\): the file is truncated"):
        TokenStore.open(tmp_path / "tokens")
    (segment / "ids.json").write_text('{"ids": ["a"')  # and a torn JSON file
    vectors.write_bytes(b"\0" * (store.stats().tokens * DIM))
    with pytest.raises(IndexCorrupt, match="ids.json is missing or not valid JSON"):
        TokenStore.open(tmp_path / "tokens")


def test_a_flipped_byte_is_found_by_verify(tmp_path: Path) -> None:
    store = TokenStore.create(tmp_path / "tokens", DIM, "float16").append(["a"], _documents(1))
    vectors = tmp_path / "tokens" / store.manifest["files"]["segment-000001"]["name"] / "vectors.f16"
    data = bytearray(vectors.read_bytes())
    data[3] ^= 0xFF
    vectors.write_bytes(bytes(data))
    TokenStore.open(tmp_path / "tokens")  # sizes are right: only the checksum can tell
    with pytest.raises(IndexCorrupt, match="fails its checksum"):
        TokenStore.open(tmp_path / "tokens", verify=True)


def test_an_interrupted_append_leaves_the_previous_store(tmp_path: Path, monkeypatch) -> None:
    store = TokenStore.create(tmp_path / "tokens", DIM, "float16").append(["a"], _documents(1))

    def crash(step: str) -> None:
        if step == "file-renamed":  # the new segment is on disk, the manifest does not name it yet
            raise KeyboardInterrupt

    monkeypatch.setattr(collection_store, "_step_hook", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(["b", "c"], _documents(2, seed=5))
    monkeypatch.setattr(collection_store, "_step_hook", None)
    assert TokenStore.open(tmp_path / "tokens", verify=True).ids == ("a",)
    assert TokenStore.open(tmp_path / "tokens").append(["b"], _documents(1)).ids == ("a", "b")


def test_appends_and_opens_refuse_what_cannot_be_right(tmp_path: Path) -> None:
    store = TokenStore.create(tmp_path / "tokens", DIM, "float16", model="model-a").append(["a"], _documents(1))
    with pytest.raises(InvalidInput, match="already in the store or given twice"):
        store.append(["a"], _documents(1))
    with pytest.raises(InvalidInput, match=r"are not \(tokens, 8\) arrays"):
        store.append(["z"], [np.zeros((3, 4))])
    with pytest.raises(IndexMismatch, match="holds vectors of 'model-a'"):
        TokenStore.open(tmp_path / "tokens", model="model-b")
    with pytest.raises(IndexCorrupt, match="no token store"):
        TokenStore.open(tmp_path / "nothing")
    with pytest.raises(InvalidInput, match="already holds a store"):
        TokenStore.create(tmp_path / "tokens", DIM)
    assert text_hash("x") == text_hash("x") != text_hash("y")
