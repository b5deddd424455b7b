"""Fixtures for the evaluation tests: where the shared BEIR collections live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# /work/main/tests/evaluation/conftest.py -> /work/shared/data (the checkout's sibling `shared/`).
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared BEIR collections: $BICROSS_SHARED_DATA, else ../shared/data beside the repo."""
    folder = Path(os.environ.get("BICROSS_SHARED_DATA") or DEFAULT_SHARED_DATA)
    if not (folder / "scifact" / "queries.jsonl").is_file():
        pytest.fail(f"shared BEIR data not found at {folder}: set BICROSS_SHARED_DATA to the folder "
                    "holding scifact/ and cranfield/")
    return folder
