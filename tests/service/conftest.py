"""Fixtures of the service tests: a tiny collection, and `serve(...)` to run it over a real socket."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serving import serving

from bicross.encoders.bi_encoder import BiEncoder
from bicross.index.collection import Collection
from bicross.service import ServiceSettings
from bicross.types import Document

DOCUMENTS = [
    Document("berlin", "berlin is the capital of germany and many people live in the city", "Berlin", {"year": 2015}),
    Document("paris", "paris is the capital of france on the river", "Paris", {"year": 2009}),
    Document("vitamin", "vitamin d and cancer risk in a study of patients", "Vitamin D", {"year": 2020}),
    Document("heart", "blood and heart study of people", "", {"year": 2012}),
    Document("fox", "the quick brown fox jumps over the dog", "Fox", {"year": 2001}),
    Document("museum", "the art museum in the city is nice today", "Museum", {"year": 2018}),
]


@pytest.fixture(scope="session")
def tiny_collection_template(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_path: Path) -> Path:
    """A collection folder built once with the tiny encoder (copy it before writing)."""
    folder = tmp_path_factory.mktemp("served") / "tiny"
    Collection.build(folder, DOCUMENTS, BiEncoder.load(str(tiny_encoder_path)))
    return folder


@pytest.fixture
def tiny_collection(tiny_collection_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny collection, named `tiny`, that a test may write to."""
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_collection_template, folder)
    return folder


@pytest.fixture
def serve(tiny_cross_encoder_path: Path):
    """`with serve(folder_or_mapping, **settings) as served:` a running server over tiny models."""

    def start(collections, loading=None, **options):
        settings = ServiceSettings(**{"reranker": "tiny-cross", "batch_wait_ms": 0.0, **options})
        return serving(collections, settings, tiny_cross_encoder_path, loading)

    return start
