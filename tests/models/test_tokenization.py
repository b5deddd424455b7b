"""Input checks, truncation accounting, pair truncation that keeps the query, and padded batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.models.tokenization import (
    TokenizedTexts,
    Tokenizer,
    check_texts,
    length_sorted_batches,
    pad_batch,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_path: Path) -> Tokenizer:
    return Tokenizer.load(tiny_encoder_path)


def test_valid_texts_pass() -> None:
    check_texts(["berlin", "  paris  ", "caf\u00e9 \u4e16\u754c"], "query")
    check_texts([], "query")


@pytest.mark.parametrize(("texts", "message"), [
    (["ok", ""], "query #1 is empty or whitespace only"),
    (["ok", " \n\t "], "query #1 is empty or whitespace only"),
    (["ok", None], "query #1 is NoneType, expected str"),
    (["ok", b"bytes"], "query #1 is bytes, expected str"),
    ("a single string", "query must be a list of strings, got a single string"),
    (["ok", "bad \udcff surrogate"], "query #1 holds characters that are not valid Unicode"),
])
def test_unusable_texts_are_refused_naming_the_position(texts: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_texts(texts, "query")  # type: ignore[arg-type]


def test_long_text_is_cut_and_flagged_short_one_is_not(tokenizer: Tokenizer) -> None:
    tokens = tokenizer.single(["berlin " * 40, "paris", "berlin " * 14], max_length=16)
    assert tokens.lengths.tolist() == [16, 3, 16]  # [CLS] + 14 words + [SEP] fits exactly
    assert tokens.truncated.tolist() == [True, False, False]
    cut = tokenizer.hf.convert_ids_to_tokens(tokens.input_ids[0])
    assert cut[0] == "[CLS]" and cut[-1] == "[SEP]"


def test_pair_truncation_cuts_the_document_and_keeps_the_whole_query(tokenizer: Tokenizer) -> None:
    # 9 query words + 3 specials leave 4 document tokens; cutting the longest first would cut the query too
    query = "how many people live in berlin by the river"
    tokens = tokenizer.pairs([query, "paris"], ["the river city " * 20, "a city"], max_length=16)
    assert tokens.truncated.tolist() == [True, False]
    assert tokens.lengths.tolist() == [16, 6]
    pieces = tokenizer.hf.convert_ids_to_tokens(tokens.input_ids[0])
    assert pieces[:11] == ["[CLS]", *query.split(), "[SEP]"]
    assert pieces[11:] == ["the", "river", "city", "the", "[SEP]"]
    # token types mark the query segment 0 and the document segment 1
    assert tokens.token_type_ids[0] == [0] * 11 + [1] * 5


def test_pair_with_a_query_longer_than_max_length_is_still_cut_to_fit(tokenizer: Tokenizer) -> None:
    tokens = tokenizer.pairs(["berlin " * 30, "paris"], ["city", "the river"], max_length=16)
    assert tokens.lengths.max() <= 16
    for ids in tokens.input_ids:
        assert tokenizer.hf.convert_ids_to_tokens(ids).count("[SEP]") == 2


def test_length_sorted_batches_cover_every_index_once_longest_first() -> None:
    lengths = np.array([5, 1, 9, 9, 3, 7, 2])
    batches = list(length_sorted_batches(lengths, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(7))
    assert lengths[flat].tolist() == [9, 9, 7, 5, 3, 2, 1]


def test_length_sorted_batches_refuse_a_non_positive_batch_size() -> None:
    with pytest.raises(InvalidInput, match="batch_size must be positive"):
        list(length_sorted_batches(np.array([1, 2]), 0))


def test_pad_batch_right_pads_selected_rows_with_a_mask() -> None:
    tokens = TokenizedTexts(input_ids=[[2, 7, 3], [2, 8, 9, 10, 3], [2, 3]],
                            token_type_ids=[[0, 0, 0], [0, 0, 1, 1, 1], [0, 0]],
                            truncated=np.zeros(3, dtype=bool))
    batch = pad_batch(tokens, np.array([2, 0]), pad_id=0)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(array.dtype == np.int64 and array.shape == (2, 3) for array in batch.values())
    assert batch["input_ids"].tolist() == [[2, 3, 0], [2, 7, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    wide = pad_batch(tokens, np.array([1, 2]), pad_id=99)
    assert wide["input_ids"].tolist() == [[2, 8, 9, 10, 3], [2, 3, 99, 99, 99]]
    assert wide["token_type_ids"].tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]
    assert wide["attention_mask"].sum(axis=1).tolist() == [5, 2]


def test_tokenizer_pad_id_is_the_pad_token(tokenizer: Tokenizer) -> None:
    assert tokenizer.pad_id == tokenizer.hf.convert_tokens_to_ids("[PAD]")
