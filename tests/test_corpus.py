"""Reading user corpora: every supported format, and every refusal naming the file, line or ids at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bicross.corpus import check_documents, load_documents
from bicross.errors import InvalidInput
from bicross.types import Document


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_beir_corpus_reads_id_title_and_text(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "d1", "title": "Berlin", "text": "Berlin is a city.", "metadata": {}},
        {"_id": "d2", "title": "", "text": "Paris is the capital of France.", "metadata": {}},
    ])
    documents = load_documents(corpus)
    assert [d.id for d in documents] == ["d1", "d2"]
    assert documents[0].title == "Berlin" and documents[0].text == "Berlin is a city."
    assert documents[0].full_text == "Berlin. Berlin is a city."
    assert documents[1].full_text == "Paris is the capital of France."


def test_plain_jsonl_keeps_extra_fields_as_metadata(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [{"id": 7, "text": "river", "lang": "en", "year": 2020}])
    (document,) = load_documents(corpus)
    assert document.id == "7"  # ids are strings whatever type the file used
    assert document.metadata == {"lang": "en", "year": 2020}


def test_blank_lines_in_jsonl_are_skipped(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n\n   \n{"id": "b", "text": "two"}\n', encoding="utf-8")
    assert [d.id for d in load_documents(corpus)] == ["a", "b"]


@pytest.mark.parametrize(("name", "delimiter"), [("docs.csv", ","), ("docs.tsv", "\t")])
def test_csv_and_tsv_read_with_header_columns(tmp_path: Path, name: str, delimiter: str) -> None:
    corpus = tmp_path / name
    rows = [["id", "title", "text", "source"], ["a", "Heart", "blood and heart", "wiki"],
            ["b", "", "vitamin d, cancer risk", "pubmed"]]
    if delimiter == ",":
        rows[2][2] = '"vitamin d, cancer risk"'  # a quoted comma stays inside the field
    corpus.write_text("\n".join(delimiter.join(r) for r in rows) + "\n", encoding="utf-8")
    documents = load_documents(corpus)
    assert [(d.id, d.title, d.text) for d in documents] == [
        ("a", "Heart", "blood and heart"), ("b", "", "vitamin d, cancer risk")]
    assert documents[0].metadata == {"source": "wiki"}


def test_folder_of_text_files_uses_relative_paths_as_ids(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "a.txt").write_text("the quick brown fox", encoding="utf-8")
    (tmp_path / "notes" / "b_file.md").write_text("# museum\nart today", encoding="utf-8")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    documents = load_documents(tmp_path)
    assert [d.id for d in documents] == ["a.txt", "notes/b_file.md"]
    assert documents[1].text == "# museum\nart today"
    assert documents[1].title == "b file"


def test_malformed_jsonl_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n{"id": "c", "text": "ok"}\n')
    with pytest.raises(InvalidInput, match="malformed JSON") as error:
        load_documents(corpus)
    assert f"{corpus}:2" in str(error.value)


def test_jsonl_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('["a", "text"]\n')
    with pytest.raises(InvalidInput, match=r"docs.jsonl:1: expected a JSON object, got list"):
        load_documents(corpus)


def test_latin1_bytes_are_refused_with_file_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_bytes('{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(InvalidInput, match="not valid UTF-8") as error:
        load_documents(corpus)
    assert f"{corpus}:2" in str(error.value)


def test_latin1_text_file_in_folder_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(InvalidInput, match=r"bad\.txt:1: text file is not valid UTF-8"):
        load_documents(tmp_path)


def test_duplicate_ids_are_refused_naming_them(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [
        {"id": "x1", "text": "a"}, {"id": "x2", "text": "b"}, {"id": "x1", "text": "c"},
        {"id": "x3", "text": "d"}, {"id": "x3", "text": "e"}])
    with pytest.raises(InvalidInput, match="2 duplicate document id") as error:
        load_documents(corpus)
    message = str(error.value)
    assert "'x1'" in message and "'x3'" in message and "'x2'" not in message
    assert str(corpus) in message


def test_empty_and_whitespace_texts_are_refused_naming_ids(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [
        {"id": "full", "text": "gene"}, {"id": "empty", "text": ""}, {"id": "blank", "text": " \t\n"}])
    with pytest.raises(InvalidInput, match="2 document\\(s\\) with no text") as error:
        load_documents(corpus)
    assert "'empty'" in str(error.value) and "'blank'" in str(error.value)
    assert "'full'" not in str(error.value)


def test_a_title_alone_counts_as_text() -> None:
    # BEIR corpora hold documents with a title and an empty text; they must not be refused.
    check_documents([Document("t", "", title="Only a title")])


def test_no_documents_at_all_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n")
    with pytest.raises(InvalidInput, match="holds no documents"):
        load_documents(corpus)


def test_missing_id_names_file_line_and_accepted_fields(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "x"}, {"name": "b", "text": "y"}])
    with pytest.raises(InvalidInput, match=r"docs\.jsonl:2: no document id .*_id, id, doc_id, docid"):
        load_documents(corpus)


def test_missing_text_field_names_file_and_line(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [{"id": "a", "body_text": "x"}])
    with pytest.raises(InvalidInput, match=r"docs\.jsonl:1: no text field"):
        load_documents(corpus)


def test_non_string_text_is_refused(tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": ["a", "list"]}])
    with pytest.raises(InvalidInput, match=r"docs\.jsonl:1: 'text' and 'title' must be strings"):
        load_documents(corpus)


def test_unsupported_suffix_is_refused_with_the_supported_ones(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.parquet"
    corpus.write_bytes(b"PAR1")
    with pytest.raises(InvalidInput, match=r"unsupported corpus file .*docs\.parquet: use \.jsonl"):
        load_documents(corpus)


def test_nonexistent_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.jsonl does not exist"):
        load_documents(tmp_path / "missing.jsonl")


def test_folder_without_text_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="has no .txt or .md files"):
        load_documents(tmp_path)


def test_csv_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.csv"
    corpus.write_text("id,text\na,fine\nb,too,many\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="more fields than the header") as error:
        load_documents(corpus)
    assert f"{corpus}:3" in str(error.value)


def test_csv_error_line_counts_physical_lines_of_multiline_fields(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.csv"
    corpus.write_text('id,text\na,"two\nlines"\nb,too,many\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="more fields") as error:
        load_documents(corpus)
    assert f"{corpus}:4" in str(error.value)


def test_tsv_quotes_are_text_and_do_not_merge_rows(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.tsv"
    corpus.write_text('id\ttext\na\t"quoted" word\nb\t"open quote\nc\tnext doc\n', encoding="utf-8")
    documents = load_documents(corpus)
    assert [(d.id, d.text) for d in documents] == [("a", '"quoted" word'), ("b", '"open quote'), ("c", "next doc")]


BOM_CORPORA = {
    "docs.jsonl": '{"id": "a", "text": "berlin city"}\n{"id": "b", "text": "vitamin d cancer"}\n',
    "docs.csv": "id,text\r\na,berlin city\r\nb,\"vitamin d, cancer\"\r\n",  # what Excel's "CSV UTF-8" writes
    "docs.tsv": "id\ttext\na\tberlin city\nb\tvitamin d cancer\n",
}


@pytest.mark.parametrize("name", sorted(BOM_CORPORA))
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_byte_order_mark_is_honoured_not_read_as_part_of_the_first_id(tmp_path: Path, name: str,
                                                                        encoding: str) -> None:
    # utf-8-sig, utf-16 and utf-32 write a byte-order mark; utf-16-be does not, so add the big-endian one.
    data = BOM_CORPORA[name].encode(encoding)
    (tmp_path / name).write_bytes(b"\xfe\xff" + data if encoding == "utf-16-be" else data)
    documents = load_documents(tmp_path / name)
    assert [d.id for d in documents] == ["a", "b"]
    assert documents[1].text.replace(",", "") == "vitamin d cancer"


def test_text_files_with_a_byte_order_mark_lose_the_mark(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes("\ufeffberlin city".encode())
    (tmp_path / "b.md").write_bytes("# vitamin\r\nd".encode("utf-16"))
    assert [d.text for d in load_documents(tmp_path)] == ["berlin city", "# vitamin\r\nd"]


def test_utf16_without_a_byte_order_mark_is_refused_naming_it(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_bytes('{"id": "a", "text": "berlin"}\n'.encode("utf-16-le"))
    with pytest.raises(InvalidInput, match=r"docs\.jsonl:1: corpus holds NUL bytes: it looks like UTF-16 without"):
        load_documents(corpus)


def test_a_broken_utf16_file_names_its_encoding_and_line(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.tsv"
    corpus.write_bytes("id\ttext\na\tberlin\n".encode("utf-16") + b"\x00\xd8")  # a lone surrogate at the end
    with pytest.raises(InvalidInput, match=r"docs\.tsv:3: corpus is UTF-16 by its byte-order mark, but holds bytes"):
        load_documents(corpus)
