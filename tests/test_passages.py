"""Splitting long documents into overlapping passages: config checks, token windows, character spans."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bicross.errors import InvalidInput
from bicross.models.tokenization import Tokenizer
from bicross.passages import PassageConfig, passage_text, split_documents, token_windows
from bicross.types import Document

LONG = " ".join(["the weather is nice today and the museum of art is in paris"] * 6 + ["vitamin d lowers cancer risk"])


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_path: Path) -> Tokenizer:
    return Tokenizer.load(tiny_encoder_path)


@pytest.mark.parametrize(("config", "message"), [
    ({"window": 0}, "passage window must be a whole number of tokens >= 1"),
    ({"window": 64, "stride": 0}, "passage stride must be a whole number of tokens >= 1"),
    ({"window": 64, "stride": 65}, "must be <= the window (64)"),
    ({"aggregate": "mean"}, "choose max, first or sum-top-k"),
    ({"aggregate": "sum-top-k", "k": 0}, "k (passages summed by sum-top-k) must be a whole number >= 1"),
])
def test_bad_configs_say_how_to_fix_them(config: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        PassageConfig(**config)
    assert message in str(error.value)


def test_config_round_trips_through_the_manifest() -> None:
    config = PassageConfig(window=128, stride=64, aggregate="sum-top-k", k=3)
    assert PassageConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("seed", range(5))
def test_windows_cover_every_token_within_the_window(seed: int) -> None:
    chance = random.Random(seed)
    starts = [True] + [chance.random() < 0.7 for _ in range(chance.randint(1, 200))]
    window = chance.randint(3, 20)
    stride = chance.randint(1, window)
    windows = token_windows(starts, window, stride)
    covered = {token for start, end in windows for token in range(start, end)}
    assert covered == set(range(len(starts)))
    assert all(0 < end - start <= window for start, end in windows)
    assert [start for start, _ in windows] == sorted({start for start, _ in windows})  # strictly increasing
    assert windows[0][0] == 0 and windows[-1][1] == len(starts)


def test_passages_are_substrings_that_fit_the_window(tokenizer: Tokenizer) -> None:
    document = Document("d", LONG, title="vitamin study")
    config = PassageConfig(window=32, stride=16)
    (spans,) = split_documents([document], tokenizer, config)
    assert len(spans) > 3
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG)
    assert all(a_start < b_start < a_end  # consecutive passages overlap
               for (a_start, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    for start, end in spans:
        text = passage_text(document, start, end)
        assert text == f"vitamin study. {LONG[start:end]}"
        tokens = tokenizer.hf(text)["input_ids"]  # with [CLS] and [SEP], as the encoder reads it
        assert len(tokens) <= 32
        assert LONG[start:end] == LONG[start:end].strip() or start == 0  # cut between words, not inside one
    assert "vitamin d lowers cancer risk" in passage_text(document, *spans[-1])


def test_a_short_document_is_one_passage_over_its_whole_text(tokenizer: Tokenizer) -> None:
    documents = [Document("a", "  paris is the capital of france "), Document("b", "", title="berlin")]
    assert split_documents(documents, tokenizer, PassageConfig(window=32, stride=16)) == [[(0, 33)], [(0, 0)]]


def test_the_document_prefix_is_counted_in_the_window(tokenizer: Tokenizer) -> None:
    document = Document("d", LONG)
    plain = split_documents([document], tokenizer, PassageConfig(window=32, stride=16))[0]
    prefixed = split_documents([document], tokenizer, PassageConfig(window=32, stride=16),
                               prefix="the museum of art: ")[0]
    assert prefixed[0][1] < plain[0][1]  # the prefix's tokens leave less room for text


def test_a_window_with_no_room_for_text_is_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(InvalidInput, match="leaves no room for text"):
        split_documents([Document("d", LONG)], tokenizer, PassageConfig(window=2, stride=1))
