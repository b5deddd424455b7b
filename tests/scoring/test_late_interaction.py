"""MaxSim and the Poly-encoder attentions against brute-force loops; masked tokens never count."""

from __future__ import annotations

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.scoring.late_interaction import (
    code_attention,
    maxsim,
    maxsim_batched,
    maxsim_matrix,
    poly_attention,
    poly_scores,
)


def _loop_maxsim(query, document, query_mask, document_mask) -> float:
    """sum over counted query tokens of max over counted document tokens of the dot product, in plain Python."""
    total = 0.0
    for i in range(query.shape[0]):
        if not query_mask[i]:
            continue
        best = None
        for j in range(document.shape[0]):
            if document_mask[j]:
                value = float(sum(query[i, k] * document[j, k] for k in range(query.shape[1])))
                best = value if best is None else max(best, value)
        total += 0.0 if best is None else best
    return total


def _random(seed: int):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(3, 5, 4, generator=generator)
    documents = torch.randn(6, 7, 4, generator=generator)
    query_mask = torch.rand(3, 5, generator=generator) > 0.3
    document_mask = torch.rand(6, 7, generator=generator) > 0.4
    document_mask[:, 0] = True  # every document has a token that counts (the empty case is tested apart)
    return queries, documents, query_mask, document_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maxsim_functions_equal_a_brute_force_loop(seed: int) -> None:
    queries, documents, query_mask, document_mask = _random(seed)
    expected = torch.tensor([[_loop_maxsim(q, d, qm, dm) for d, dm in zip(documents, document_mask, strict=True)]
                             for q, qm in zip(queries, query_mask, strict=True)])
    assert torch.allclose(maxsim_matrix(queries, documents, query_mask, document_mask), expected, atol=1e-5)
    for i in range(3):
        assert torch.allclose(maxsim(queries[i], documents, query_mask[i], document_mask), expected[i], atol=1e-5)
    own = documents.view(3, 2, 7, 4)  # each query gets two documents of its own
    batched = maxsim_batched(queries, own, query_mask, document_mask.view(3, 2, 7))
    assert torch.allclose(batched, torch.stack([expected[i, 2 * i:2 * i + 2] for i in range(3)]), atol=1e-5)


def test_changing_a_masked_vector_changes_nothing() -> None:
    queries, documents, query_mask, document_mask = _random(3)
    before = maxsim_matrix(queries, documents, query_mask, document_mask)
    changed_queries, changed_documents = queries.clone(), documents.clone()
    changed_queries[~query_mask] = 100.0  # would dominate every max if it counted
    changed_documents[~document_mask] = 100.0
    assert torch.equal(maxsim_matrix(changed_queries, changed_documents, query_mask, document_mask), before)
    changed_queries[query_mask] += 1.0  # a counted vector does change the scores
    assert not torch.allclose(maxsim_matrix(changed_queries, documents, query_mask, document_mask), before)


def test_a_document_without_counted_tokens_scores_zero_and_gradients_skip_masked_tokens() -> None:
    query = torch.randn(4, 3)
    documents = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    scores = maxsim(query, documents, document_mask=mask)
    assert scores[1].item() == 0.0 and torch.isfinite(scores).all()
    scores.sum().backward()
    assert documents.grad is not None and torch.all(documents.grad[~mask] == 0)


def test_maxsim_refuses_shapes_that_do_not_fit() -> None:
    with pytest.raises(InvalidInput, match="dimension mismatch"):
        maxsim_matrix(torch.randn(1, 2, 3), torch.randn(2, 2, 4))
    with pytest.raises(InvalidInput, match="document_mask must have shape"):
        maxsim(torch.randn(2, 3), torch.randn(2, 5, 3), document_mask=torch.ones(2, 4))
    with pytest.raises(InvalidInput, match="query must be a 2-d tensor"):
        maxsim(torch.randn(1, 2, 3), torch.randn(2, 5, 3))


def test_code_attention_and_poly_scores_equal_brute_force_loops() -> None:
    generator = torch.Generator().manual_seed(0)
    codes, states = torch.randn(3, 4, generator=generator), torch.randn(2, 6, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    context = code_attention(codes, states, mask)  # (2, 3, 4)
    for b in range(2):
        valid = states[b][mask[b].bool()]
        for i in range(3):
            weights = torch.softmax(valid @ codes[i], dim=0)
            assert torch.allclose(context[b, i], (weights[:, None] * valid).sum(0), atol=1e-5)
    changed = states.clone()
    changed[0, 3:] = 50.0  # padding of query 0
    assert torch.allclose(code_attention(codes, changed, mask), context)
    candidates = torch.randn(5, 4, generator=generator)
    scores = poly_scores(context, candidates)  # shared candidates (5, 4)
    for b in range(2):
        for n in range(5):
            weights = torch.softmax(context[b] @ candidates[n], dim=0)
            mixed = (weights[:, None] * context[b]).sum(0)
            assert abs(scores[b, n].item() - float(mixed @ candidates[n])) < 1e-4
    own = candidates[None].expand(2, -1, -1)
    assert torch.allclose(poly_scores(context, own), scores)
    assert poly_attention(context, candidates).shape == (2, 5, 4)
