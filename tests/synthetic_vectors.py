"""Synthetic embedding-like vectors and recall, shared by the ANN and quantization tests."""

from __future__ import annotations

import numpy as np


def clustered_unit_vectors(rows: int, dimension: int, seed: int = 0, clusters: int = 1_000) -> np.ndarray:
    """Unit vectors shaped like sentence embeddings (bench/ann_scale.py describes the match to MiniLM):
    topic centres and the spread around them from one Gaussian whose variance falls off as a power law over
    a random rotation, plus a mean direction shared by all vectors; float32."""
    generator = np.random.default_rng(seed)
    rotation = np.linalg.qr(generator.standard_normal((dimension, dimension)))[0].astype(np.float32)
    amplitude = np.arange(1, dimension + 1, dtype=np.float32) ** -0.5
    amplitude /= np.linalg.norm(amplitude)
    centres = (generator.standard_normal((clusters, dimension)).astype(np.float32) * amplitude) @ rotation
    spread = (generator.standard_normal((rows, dimension)).astype(np.float32) * amplitude) @ rotation
    vectors = np.sqrt(0.5) * centres[generator.integers(0, clusters, rows)] + np.sqrt(0.5) * spread
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    offset = generator.standard_normal(dimension).astype(np.float32)
    vectors += offset * 0.4 / np.linalg.norm(offset)  # mean embedding norm ~0.37, as MiniLM's
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k ids that were found."""
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))
