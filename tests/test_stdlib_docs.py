"""The standard-library corpus: read from sources without importing them, and a demo whose answers are right."""

from __future__ import annotations

from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.stdlib_docs import DEMO_QUESTIONS, stdlib_documents

DOC = "A docstring long enough to be kept as a document of its own."


@pytest.fixture()
def fake_stdlib(tmp_path: Path) -> Path:
    """A standard library of three files, one of which acts when imported."""
    (tmp_path / "pkg" / "tests").mkdir(parents=True)
    (tmp_path / "csv.py").write_text(f'"""CSV module. {DOC}"""\n')
    (tmp_path / "noisy.py").write_text(
        f'"""Noisy. {DOC}"""\nopen("IMPORTED", "w").write("side effect")\n\n'
        f'def public(a, b=1, *rest, key=None):\n    """Public function. {DOC}"""\n'
        f'    def inner():\n        """Inner helper, not part of the API. {DOC}"""\n\n'
        f'def _private():\n    """Private. {DOC}"""\n\n'
        f'def short():\n    """Too short."""\n\n'
        f'class Thing:\n    """A thing. {DOC}"""\n    def method(self):\n        """A method. {DOC}"""\n'
        f'    def _hidden(self):\n        """Hidden. {DOC}"""\n\n'
        f'if True:\n    def branch():\n        """Per-platform branch, first. {DOC}"""\n'
        f'else:\n    def branch():\n        """Per-platform branch, second. {DOC}"""\n')
    (tmp_path / "pkg" / "__init__.py").write_text(f'"""A package. {DOC}"""\n')
    (tmp_path / "pkg" / "tests" / "test_x.py").write_text(f'"""A test suite. {DOC}"""\n')
    (tmp_path / "_private_module.py").write_text(f'"""Private module. {DOC}"""\n')
    (tmp_path / "broken.py").write_text('"""Not Python 3."""\nprint "hello"\n')
    return tmp_path


def test_public_documented_objects_become_documents_named_by_qualified_name(fake_stdlib: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fake_stdlib)
    documents = stdlib_documents(fake_stdlib)
    assert [d.id for d in documents] == ["csv", "noisy", "noisy.public", "noisy.Thing", "noisy.Thing.method",
                                         "noisy.branch", "pkg"]
    assert not (fake_stdlib / "IMPORTED").exists()  # read with ast, never imported
    by_id = {d.id: d for d in documents}
    assert by_id["noisy.public"].title == "noisy.public"
    assert by_id["noisy.public"].text.startswith("public(a, b=1, *rest, key=None)\nPublic function.")
    assert by_id["noisy.branch"].text.startswith("branch()\nPer-platform branch, first.")
    assert by_id["noisy.Thing"].metadata == {"kind": "class", "source": "noisy.py"}


def test_a_slice_of_modules_and_a_module_that_is_not_there(fake_stdlib: Path) -> None:
    assert [d.id for d in stdlib_documents(fake_stdlib, modules=["pkg", "csv"])] == ["csv", "pkg"]
    with pytest.raises(InvalidInput, match="no documented modules found .* among"):
        stdlib_documents(fake_stdlib, modules=["nothing"])


def test_this_pythons_standard_library_is_a_corpus_of_thousands() -> None:
    documents = stdlib_documents()
    ids = {d.id for d in documents}
    assert len(documents) > 2000 and len(ids) == len(documents)
    assert {"csv", "subprocess.run", "argparse.ArgumentParser", "json.dumps", "pathlib.Path.glob"} <= ids
    assert not any(part.startswith("_") for d in documents for part in d.id.split("."))


@pytest.fixture(scope="module")
def stdlib_searcher(tmp_path_factory: pytest.TempPathFactory, minilm_fast, ms_marco_reranker):
    """The demo's default pipeline over the whole standard-library corpus (a minute or two to index here)."""
    from bicross.index.collection import Collection
    from bicross.search import Searcher

    collection = Collection.build(tmp_path_factory.mktemp("stdlib") / "index", stdlib_documents(), minilm_fast)
    return Searcher(collection, minilm_fast, ms_marco_reranker)


@pytest.mark.parametrize("question", list(DEMO_QUESTIONS))
def test_each_demo_question_has_a_judged_right_answer_in_the_top_3(stdlib_searcher, question: str) -> None:
    top = [hit.id for hit in stdlib_searcher.search(question).hits[:3]]
    assert set(top) & DEMO_QUESTIONS[question], top
