"""Late-interaction scores: ColBERT's MaxSim and the Poly-encoder's two attentions, as pure tensor functions.

MaxSim (Khattab & Zaharia 2020): a query keeps one vector per token, a document too; the score is, for every
query token, its best dot product with any document token, summed over the query tokens. With unit-length
token vectors each term is a cosine, so a score lies in [-query tokens, +query tokens].

Poly-encoder (Humeau et al. 2020): `m` learned codes each attend over the query's token states, giving `m`
context vectors; the document's single vector then attends over those `m` vectors, and the score is the dot
product of that mix with the document vector. The document side never sees the query, so its vector can be
computed once and stored.

Shapes: `q`/`t` query/document tokens, `d` dimensions, `n` documents, `b` queries, `m` codes. Masks are bool
(or 0/1) tensors, True where a token counts. Masked similarities are set to the dtype's most negative finite
value rather than -inf, so a fully masked row never turns into NaN (a document with no token that counts
scores 0 per query token). No I/O, no models: these run the same on random tensors, in training and serving.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bicross.errors import InvalidInput

__all__ = ["code_attention", "maxsim", "maxsim_batched", "maxsim_matrix", "poly_attention", "poly_scores"]


def maxsim(query: Tensor, documents: Tensor, query_mask: Tensor | None = None,
           document_mask: Tensor | None = None) -> Tensor:
    """MaxSim scores `(n,)` of one query's token vectors `(q, d)` against padded documents `(n, t, d)`.

    Args:
        query: `(q, d)` token vectors of the query.
        documents: `(n, t, d)` token vectors of n documents, padded to t tokens.
        query_mask: `(q,)`, True where a query token counts (None: all do).
        document_mask: `(n, t)`, True where a document token counts (None: all do); padding and skipped
            punctuation are False.

    >>> query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> documents = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [9.0, 9.0]]])
    >>> maxsim(query, documents).tolist()  # doc 0: 1 + 0.5; doc 1: 9 + 9
    [1.5, 18.0]
    >>> maxsim(query, documents, document_mask=torch.tensor([[1, 1], [1, 0]])).tolist()  # doc 1: 0 + 1
    [1.5, 1.0]
    """
    _check(query, 2, "query")
    mask = None if query_mask is None else _mask(query_mask, tuple(query.shape[:1]), "query_mask")[None]
    return maxsim_matrix(query[None], documents, mask, document_mask)[0]


def maxsim_batched(queries: Tensor, documents: Tensor, query_mask: Tensor | None = None,
                   document_mask: Tensor | None = None) -> Tensor:
    """MaxSim `(b, n)` of each query `(b, q, d)` against its own n documents `(b, n, t, d)` (a reranker's lists).

    >>> queries = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two queries of one token
    >>> documents = torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]]], [[[2.0, 0.0]], [[0.0, 3.0]]]])
    >>> maxsim_batched(queries, documents).tolist()
    [[2.0, 0.0], [0.0, 3.0]]
    """
    _check(queries, 3, "queries")
    _check(documents, 4, "documents")
    if documents.shape[0] != queries.shape[0] or documents.shape[-1] != queries.shape[-1]:
        raise InvalidInput(f"documents {tuple(documents.shape)} do not match queries {tuple(queries.shape)}: "
                           "expected (b, n, t, d) for queries (b, q, d)")
    similarities = torch.einsum("bqd,bntd->bnqt", queries, documents)  # (b, n, q, t)
    query_mask = None if query_mask is None else _mask(query_mask, tuple(queries.shape[:2]), "query_mask")[:, None]
    if document_mask is not None:
        document_mask = _mask(document_mask, tuple(documents.shape[:3]), "document_mask")
    return _reduce(similarities, query_mask, document_mask)


def maxsim_matrix(queries: Tensor, documents: Tensor, query_mask: Tensor | None = None,
                  document_mask: Tensor | None = None) -> Tensor:
    """MaxSim `(b, n)` of every query `(b, q, d)` against every document `(n, t, d)` (in-batch negatives).

    Memory is b * n * q * t similarities: chunk the documents for large n.

    >>> queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    >>> documents = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]])
    >>> maxsim_matrix(queries, documents).tolist()
    [[1.0, 3.0], [2.0, 2.0]]
    >>> maxsim_matrix(queries, documents, query_mask=torch.tensor([[1, 0], [1, 1]])).tolist()
    [[1.0, 1.0], [2.0, 2.0]]
    """
    _check(queries, 3, "queries")
    _check(documents, 3, "documents")
    if documents.shape[-1] != queries.shape[-1]:
        raise InvalidInput(f"dimension mismatch: query tokens have {queries.shape[-1]} dimensions, document tokens "
                           f"{documents.shape[-1]}; encode both with the same model")
    similarities = torch.einsum("bqd,ntd->bnqt", queries, documents)  # (b, n, q, t)
    query_mask = None if query_mask is None else _mask(query_mask, tuple(queries.shape[:2]), "query_mask")[:, None]
    if document_mask is not None:
        document_mask = _mask(document_mask, tuple(documents.shape[:2]), "document_mask")[None]
    return _reduce(similarities, query_mask, document_mask)


def _reduce(similarities: Tensor, query_mask: Tensor | None, document_mask: Tensor | None) -> Tensor:
    """Max over document tokens, sum over query tokens: `(..., q, t)` -> `(...)`; masks broadcast to `(..., q)`/`(..., t)`."""
    if document_mask is not None:
        keep = document_mask[..., None, :]  # (..., 1, t)
        similarities = similarities.masked_fill(~keep, torch.finfo(similarities.dtype).min)
    best = similarities.max(dim=-1).values  # (..., q)
    if document_mask is not None:  # a document with no token that counts: 0, not the fill value
        best = torch.where(document_mask.any(dim=-1)[..., None], best, torch.zeros_like(best))
    if query_mask is not None:
        best = best * query_mask.to(best.dtype)
    return best.sum(dim=-1)


def code_attention(codes: Tensor, token_states: Tensor, attention_mask: Tensor) -> Tensor:
    """Poly-encoder context vectors `(b, m, h)`: each of the m codes `(m, h)` attends over the token states.

    Vector i of query j is `sum_t softmax_t(codes[i] . states[j, t]) * states[j, t]` over the tokens that
    count (`attention_mask (b, t)`, padding False).

    >>> codes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> states = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [9.0, 9.0]]])
    >>> code_attention(codes, states, torch.tensor([[1, 1, 0]])).double().round(decimals=2).tolist()  # code 0 -> token 0
    [[[4.97, 0.03], [0.03, 4.97]]]
    """
    _check(codes, 2, "codes")
    _check(token_states, 3, "token_states")
    if codes.shape[1] != token_states.shape[2]:
        raise InvalidInput(f"codes have {codes.shape[1]} dimensions, token states {token_states.shape[2]}")
    mask = _mask(attention_mask, tuple(token_states.shape[:2]), "attention_mask")
    logits = torch.einsum("mh,bth->bmt", codes.to(token_states.dtype), token_states)  # (b, m, t)
    logits = logits.masked_fill(~mask[:, None, :], torch.finfo(logits.dtype).min)
    return torch.einsum("bmt,bth->bmh", logits.softmax(dim=-1), token_states)


def poly_attention(context: Tensor, candidates: Tensor) -> Tensor:
    """Each candidate's mix of its query's context vectors: `(b, n, h)` from context `(b, m, h)`.

    `candidates` is `(b, n, h)` (each query's own candidates) or `(n, h)` (the same candidates for every
    query, as in-batch training). Mix = `sum_i softmax_i(candidate . context[i]) * context[i]`.

    >>> context = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> poly_attention(context, torch.tensor([[20.0, 0.0], [0.0, 0.0]])).round(decimals=2).tolist()
    [[[1.0, 0.0], [0.5, 0.5]]]
    """
    _check(context, 3, "context")
    candidates = _candidates(candidates, context)
    weights = torch.einsum("bnh,bmh->bnm", candidates, context).softmax(dim=-1)  # (b, n, m)
    return torch.einsum("bnm,bmh->bnh", weights, context)


def poly_scores(context: Tensor, candidates: Tensor) -> Tensor:
    """Poly-encoder scores `(b, n)`: dot(candidate's mix of the context vectors, candidate).

    >>> context = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> poly_scores(context, torch.tensor([[20.0, 0.0], [0.0, 2.0]])).double().round(decimals=2).tolist()  # 2 * 0.88
    [[20.0, 1.76]]
    """
    candidates = _candidates(candidates, context)
    return (poly_attention(context, candidates) * candidates).sum(dim=-1)


def _candidates(candidates: Tensor, context: Tensor) -> Tensor:
    if not isinstance(candidates, Tensor) or candidates.ndim not in (2, 3):
        raise InvalidInput("candidates must be a (n, h) or (b, n, h) tensor")
    if candidates.ndim == 2:
        candidates = candidates[None].expand(context.shape[0], -1, -1)
    if candidates.shape[0] != context.shape[0] or candidates.shape[2] != context.shape[2]:
        raise InvalidInput(f"candidates {tuple(candidates.shape)} do not match context {tuple(context.shape)}: "
                           "expected (b, n, h) for context (b, m, h)")
    return candidates.to(context.dtype)


def _check(value: object, ndim: int, name: str) -> None:
    if not isinstance(value, Tensor) or value.ndim != ndim:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise InvalidInput(f"{name} must be a {ndim}-d tensor, got {shape}")


def _mask(mask: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    if not isinstance(mask, Tensor) or tuple(mask.shape) != shape:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InvalidInput(f"{name} must have shape {shape}, got {got}")
    return mask.bool()
