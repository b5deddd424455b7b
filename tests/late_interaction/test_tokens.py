"""ColBERT tokenization: markers after [CLS], [MASK] query augmentation, punctuation and padding out of MaxSim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.late_interaction.tokens import ColBERTTokenizer

VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", "the", "cat",
         "sat", "on", "mat", "how", "many", "people", "live", "in", "berlin"]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import BertTokenizer

    folder: Path = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return BertTokenizer.from_pretrained(str(folder), do_lower_case=True)


def _ids(*tokens: str) -> list[int]:
    return [VOCAB.index(token) for token in tokens]


def test_queries_get_the_query_marker_and_are_padded_with_mask_tokens_that_all_count(hf_tokenizer) -> None:
    tokenizer = ColBERTTokenizer(hf_tokenizer, query_length=8)
    batch = tokenizer.batch(["how many people?"], "query")
    assert batch.input_ids.tolist() == [_ids("[CLS]", "[unused0]", "how", "many", "people", "?", "[SEP]", "[MASK]")]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]  # the encoder does not attend to [MASK]
    assert batch.scoring_mask.all()  # ...but its output vector counts: query augmentation
    attending = ColBERTTokenizer(hf_tokenizer, query_length=8, attend_to_expansion=True)
    assert attending.batch(["how many people?"], "query").attention_mask.all()


def test_documents_get_the_document_marker_and_punctuation_and_padding_do_not_count(hf_tokenizer) -> None:
    tokenizer = ColBERTTokenizer(hf_tokenizer, document_length=16)
    batch = tokenizer.batch(["the cat sat, on the mat.", "berlin"], "document")
    assert batch.input_ids[0].tolist() == _ids("[CLS]", "[unused1]", "the", "cat", "sat", ",", "on", "the", "mat", ".",
                                               "[SEP]")
    assert batch.input_ids[1].tolist()[:4] == _ids("[CLS]", "[unused1]", "berlin", "[SEP]")
    counted = [VOCAB[i] for i, keep in zip(batch.input_ids[0], batch.scoring_mask[0], strict=True) if keep]
    assert counted == ["[CLS]", "[unused1]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert not batch.scoring_mask[1, 4:].any() and batch.attention_mask[1].tolist() == [1] * 4 + [0] * 7
    keeping = ColBERTTokenizer(hf_tokenizer, document_length=16, skip_punctuation=False)
    assert keeping.batch(["the cat sat, on the mat."], "document").scoring_mask.all()


def test_long_texts_are_cut_to_the_length_with_the_marker_included_and_flagged(hf_tokenizer) -> None:
    tokenizer = ColBERTTokenizer(hf_tokenizer, query_length=5, document_length=6)
    queries = tokenizer.tokenize(["how many people live in berlin", "cat"], "query")
    assert [len(ids) for ids in queries.input_ids] == [5, 4] and queries.truncated.tolist() == [True, False]
    documents = tokenizer.tokenize(["the cat sat on the mat"], "document")
    assert documents.input_ids[0] == _ids("[CLS]", "[unused1]", "the", "cat", "sat", "[SEP]")
    assert np.array_equal(tokenizer.pad(documents, [0]).input_ids, np.array([documents.input_ids[0]]))


def test_a_marker_missing_from_the_vocabulary_is_refused_with_the_fix(hf_tokenizer) -> None:
    with pytest.raises(InvalidInput, match=r"'\[Q\] ' is not a token of this vocabulary.*from_backbone"):
        ColBERTTokenizer(hf_tokenizer, query_marker="[Q] ")
    with pytest.raises(InvalidInput, match="empty or whitespace"):
        ColBERTTokenizer(hf_tokenizer).tokenize(["  "], "query")
