"""Training losses as pure functions of embeddings or scores: no models, testable with `torch.randn`.

Bi-encoder: `info_nce` (in-batch negatives plus hard negatives, as sentence-transformers'
MultipleNegativesRankingLoss) and `triplet_loss`. Cross-encoder, on logits: `binary_cross_entropy`,
`mse_on_sigmoid`, `pairwise_margin`, `listwise_softmax`. Distillation from a teacher's scores: `margin_mse`,
`listwise_kl`, `score_mse`. Every function returns the mean over its batch as a scalar tensor.

Shortcuts, on purpose: shapes and arguments are checked, embeddings and logits are not scanned for NaN
(that would synchronise the GPU on every step; a NaN loss shows it anyway); labels are range-checked
because a wrong label scale trains silently. Masked candidates get the dtype's most negative finite value
rather than -inf, so a masked logit never turns into NaN in the softmax or its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bicross.errors import InvalidInput

__all__ = [
    "binary_cross_entropy",
    "duplicate_candidate_mask",
    "info_nce",
    "listwise_kl",
    "listwise_softmax",
    "margin_mse",
    "mse_on_sigmoid",
    "pairwise_margin",
    "score_mse",
    "triplet_loss",
]


def info_nce(
    query: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    similarity: Literal["cosine", "dot"] = "cosine",
    symmetric: bool = False,
    false_negative_mask: Tensor | None = None,
) -> Tensor:
    """Contrastive InfoNCE loss: each query must pick its own positive among all of the batch's documents.

    The candidates of every query are the B positives (the other queries' positives are in-batch negatives)
    followed by all hard negatives of the batch, flattened row by row: candidate `B + i * N + k` is
    `negatives[i, k]`. Every query sees every hard negative, as in sentence-transformers'
    MultipleNegativesRankingLoss, whose value this equals with `scale = 1 / temperature`.

    Args:
        query: `(B, d)` query embeddings.
        positive: `(B, d)` embeddings of each query's positive document.
        negatives: `(B, N, d)` hard negatives per query, or `(M, d)` negatives shared by the batch.
        temperature: logits are similarities divided by this; 0.05 equals sentence-transformers' scale 20.
        similarity: "cosine" normalises the embeddings first; "dot" uses raw inner products.
        symmetric: also score each positive against all queries (in-batch only) and average both
            directions, as MultipleNegativesSymmetricRankingLoss does.
        false_negative_mask: bool `(B, B + B*N)` (or `(B, B + M)`), True where candidate j is not a negative
            for query i (e.g. `duplicate_candidate_mask`); those candidates are left out of the softmax.
            The diagonal, each query's own positive, is never masked.

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(info_nce(q, q, temperature=1.0).item(), 4)  # log(1 + e^-1): own positive 1, other 0
    0.3133
    >>> mask = torch.tensor([[False, True], [True, False]])  # the other positive is the same document
    >>> info_nce(q, q, temperature=1.0, false_negative_mask=mask).item()
    0.0
    """
    batch, dim = _check_matrix("query", query)
    _check_same_shape("positive", positive, "query", query)
    _check_positive("temperature", temperature)
    if similarity not in ("cosine", "dot"):
        raise InvalidInput(f"unknown similarity {similarity!r} for info_nce; choose 'cosine' or 'dot'")
    candidates = positive  # (B, d)
    if negatives is not None:
        candidates = torch.cat([positive, _flatten_negatives(negatives, batch, dim)])  # (B + B*N, d)
    if similarity == "cosine":
        query, positive, candidates = (F.normalize(x, p=2, dim=-1) for x in (query, positive, candidates))
    logits = query @ candidates.T / temperature  # (B, B + B*N)
    targets = torch.arange(batch, device=query.device)  # query i's positive is candidate i
    mask = None
    if false_negative_mask is not None:
        mask = _check_candidate_mask(false_negative_mask, tuple(logits.shape), logits.device)
        logits = logits.masked_fill(mask, torch.finfo(logits.dtype).min)
    loss = F.cross_entropy(logits, targets)
    if not symmetric:
        return loss
    reverse = positive @ query.T / temperature  # (B, B): document i against every query
    if mask is not None:
        # Query i is no negative for document j exactly when document j is no negative for query i.
        reverse = reverse.masked_fill(mask[:, :batch].T, torch.finfo(reverse.dtype).min)
    return (loss + F.cross_entropy(reverse, targets)) / 2


def duplicate_candidate_mask(positive_ids: Sequence[str], negative_ids: Sequence[Sequence[str]] | None = None) -> Tensor:
    """Build `info_nce`'s `false_negative_mask`: True where a candidate is the same document as query i's positive.

    Catches batches where two queries share a positive, or a mined hard negative is in fact the positive.
    Candidates are ordered as `info_nce` orders them: the positives, then `negative_ids` flattened row by row
    (one list per query for `(B, N, d)` negatives, or a single list for `(M, d)` shared ones).

    >>> duplicate_candidate_mask(["d1", "d2", "d1"], [["d2"], ["d9"], ["d3"]]).int().tolist()
    [[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]]
    """
    if isinstance(positive_ids, str) or len(positive_ids) == 0:
        raise InvalidInput("positive_ids must be a non-empty list of document ids, one per query (not a single string)")
    rows = [] if negative_ids is None else list(negative_ids)
    if isinstance(negative_ids, str) or any(isinstance(row, str) for row in rows):
        raise InvalidInput("negative_ids must be lists of document ids (one list per query, or one shared list), not strings")
    candidate_ids = [*positive_ids, *(doc_id for row in rows for doc_id in row)]
    # Compare integer codes in one tensor operation instead of B * (B + B*N) string comparisons.
    codes: dict[str, int] = {}
    candidate_codes = torch.tensor([codes.setdefault(doc_id, len(codes)) for doc_id in candidate_ids])  # (C,)
    mask = candidate_codes[: len(positive_ids), None] == candidate_codes[None, :]  # (B, C)
    mask.fill_diagonal_(False)  # the query's own positive is the target, never a false negative
    return mask


def triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    margin: float = 5.0,
    distance: Literal["euclidean", "cosine", "dot"] = "euclidean",
) -> Tensor:
    """Triplet hinge: mean of `relu(d(anchor, positive) - d(anchor, negative) + margin)`.

    The negative must be at least `margin` farther from the anchor than the positive. Distances: euclidean,
    cosine (`1 - cos`), dot (`-a.b`, for unnormalised models). Equals sentence-transformers' TripletLoss for
    euclidean and cosine; its default margin 5 suits euclidean distances, use ~0.1-0.5 for cosine.

    Args:
        anchor: `(n, d)` anchor (query) embeddings.
        positive: `(n, d)` embeddings that should be close to the anchor.
        negative: `(n, d)` embeddings that should be far from it.
        margin: required gap between the two distances, >= 0.
        distance: how far two embeddings are.

    >>> a = torch.tensor([[0.0, 0.0]]); p = torch.tensor([[1.0, 0.0]]); n = torch.tensor([[3.0, 4.0]])
    >>> triplet_loss(a, p, n, margin=5.0).item()  # relu(1 - 5 + 5)
    1.0
    """
    _check_matrix("anchor", anchor)
    _check_same_shape("positive", positive, "anchor", anchor)
    _check_same_shape("negative", negative, "anchor", anchor)
    _check_margin(margin)
    if distance == "euclidean":
        distance_positive = torch.linalg.vector_norm(anchor - positive, dim=-1)  # (n,); gradient 0, not NaN, at 0
        distance_negative = torch.linalg.vector_norm(anchor - negative, dim=-1)
    elif distance == "cosine":
        anchor, positive, negative = (F.normalize(x, p=2, dim=-1) for x in (anchor, positive, negative))
        distance_positive = 1 - (anchor * positive).sum(-1)
        distance_negative = 1 - (anchor * negative).sum(-1)
    elif distance == "dot":
        distance_positive = -(anchor * positive).sum(-1)
        distance_negative = -(anchor * negative).sum(-1)
    else:
        raise InvalidInput(f"unknown distance {distance!r} for triplet_loss; choose 'euclidean', 'cosine' or 'dot'")
    return F.relu(distance_positive - distance_negative + margin).mean()


def binary_cross_entropy(logits: Tensor, labels: Tensor, *, pos_weight: float | None = None) -> Tensor:
    """Pointwise cross-encoder loss: sigmoid cross-entropy between each pair's logit and its 0/1 relevance.

    Args:
        logits: `(n,)` raw scores, one per (query, document) pair.
        labels: `(n,)` relevance in [0, 1] (soft labels allowed).
        pos_weight: weight of the positive term, e.g. #negatives / #positives to balance rare positives.

    >>> round(binary_cross_entropy(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).item(), 4)  # log 2
    0.6931
    """
    count = _check_vector("logits", logits)
    labels = _check_labels("labels", labels, count, logits)
    weight = None
    if pos_weight is not None:
        _check_positive("pos_weight", pos_weight)
        weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)


def mse_on_sigmoid(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error between `sigmoid(logits)` and graded targets in [0, 1] (e.g. a 0-3 grade / 3).

    The sigmoid keeps the prediction on the targets' scale, so a regression label never pushes logits to
    infinity the way cross-entropy on a 0.7 target near saturation does.

    >>> mse_on_sigmoid(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.5])).item()  # ((0.5-1)^2 + 0) / 2
    0.125
    """
    count = _check_vector("logits", logits)
    targets = _check_labels("targets", targets, count, logits)
    return (torch.sigmoid(logits) - targets).square().mean()


def pairwise_margin(positive_scores: Tensor, negative_scores: Tensor, *, margin: float = 1.0) -> Tensor:
    """Pairwise hinge: each positive must outscore each of its negatives by `margin`; mean of the violations.

    Args:
        positive_scores: `(n,)` scores of the positive pairs.
        negative_scores: `(n,)` one negative per positive, or `(n, k)` k negatives per positive.
        margin: required score gap, >= 0.

    >>> pairwise_margin(torch.tensor([2.0]), torch.tensor([[1.5, 0.5]]), margin=1.0).item()  # (0.5 + 0) / 2
    0.25
    """
    count = _check_vector("positive_scores", positive_scores)
    negative_scores = _negatives_matrix("negative_scores", negative_scores, count)  # (n, k)
    _check_margin(margin)
    return F.relu(margin - (positive_scores[:, None] - negative_scores)).mean()


def listwise_softmax(scores: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Listwise softmax cross-entropy: the softmax over each query's candidates should match its labels.

    The target distribution is the labels normalised per row (`labels / labels.sum()`), so graded labels
    weight candidates proportionally. ListNet proper (and sentence-transformers' ListNetLoss) targets
    `softmax(labels)` instead: pass `labels.exp()` here to get exactly that.

    Args:
        scores: `(Q, C)` logits of each query's C candidates.
        labels: `(Q, C)` relevance >= 0; every row needs a positive label among its kept entries.
        mask: bool `(Q, C)`, True for real candidates; False entries (padding) are left out entirely.

    >>> scores = torch.tensor([[0.0, 0.0, 5.0]]); labels = torch.tensor([[1.0, 0.0, 9.0]])
    >>> round(listwise_softmax(scores, labels, mask=torch.tensor([[True, True, False]])).item(), 4)  # -log(1/2)
    0.6931
    """
    _check_lists("scores", scores)
    valid = _check_list_mask(mask, scores)
    labels = _check_same_shape("labels", labels, "scores", scores).to(scores.dtype)
    if not bool(((labels >= 0) | ~valid).all()):  # also rejects NaN
        raise InvalidInput("labels of listwise_softmax must be >= 0 (relevance grades); shift or clip negative labels")
    kept = torch.where(valid, labels, torch.zeros_like(labels))  # (Q, C)
    totals = kept.sum(dim=1)  # (Q,)
    empty = torch.nonzero(~(totals > 0)).flatten().tolist()
    if empty:
        raise InvalidInput(
            f"rows {empty[:5]} of listwise_softmax's labels are all zero where unmasked, so they have no target "
            "distribution: drop queries without a relevant candidate, or use binary_cross_entropy for them"
        )
    target = kept / totals[:, None]  # (Q, C), rows sum to 1
    return -(target * _masked_log_softmax(scores, valid)).sum(dim=1).mean()


def margin_mse(
    student_positive: Tensor, student_negatives: Tensor, teacher_positive: Tensor, teacher_negatives: Tensor
) -> Tensor:
    """Margin-MSE distillation (Hofstätter et al. 2021): the student's score margins copy the teacher's.

    Only the difference `positive - negative` is matched, so student and teacher may score on different
    scales. Equals sentence-transformers' MarginMSELoss. Teacher scores are targets: no gradient flows to them.

    Args:
        student_positive: `(n,)` student scores of the positive pairs.
        student_negatives: `(n, k)` (or `(n,)`) student scores of the negative pairs.
        teacher_positive: `(n,)` teacher scores of the same positive pairs.
        teacher_negatives: `(n, k)` (or `(n,)`) teacher scores of the same negative pairs.

    >>> margin_mse(torch.tensor([3.0]), torch.tensor([[1.0]]), torch.tensor([10.0]), torch.tensor([[7.0]])).item()
    1.0
    """
    count = _check_vector("student_positive", student_positive)
    student_negatives = _negatives_matrix("student_negatives", student_negatives, count)  # (n, k)
    _check_same_shape("teacher_positive", teacher_positive, "student_positive", student_positive)
    teacher_negatives = _negatives_matrix("teacher_negatives", teacher_negatives, count)
    _check_same_shape("teacher_negatives", teacher_negatives, "student_negatives", student_negatives)
    student_margin = student_positive[:, None] - student_negatives  # (n, k)
    teacher_margin = (teacher_positive[:, None] - teacher_negatives).detach()
    return (student_margin - teacher_margin).square().mean()


def listwise_kl(
    student_scores: Tensor, teacher_scores: Tensor, *, temperature: float = 1.0, mask: Tensor | None = None
) -> Tensor:
    """Listwise distillation: KL(softmax(teacher / T) || softmax(student / T)) per query, mean, times T^2.

    The T^2 factor (Hinton et al. 2015) keeps gradient sizes comparable across temperatures. Equals
    sentence-transformers' DistillKLDivLoss. Teacher scores are targets: no gradient flows to them.

    Args:
        student_scores: `(Q, C)` student scores of each query's C candidates.
        teacher_scores: `(Q, C)` teacher scores of the same candidates.
        temperature: > 0; higher softens both distributions so the teacher's ranking of negatives counts more.
        mask: bool `(Q, C)`, True for real candidates; False entries (padding) are left out of both softmaxes.

    >>> s = torch.tensor([[0.0, 0.0]]); t = torch.tensor([[0.0, 0.0]])
    >>> listwise_kl(s, t).item()  # identical distributions
    0.0
    >>> round(listwise_kl(s, torch.tensor([[1e4, 0.0]])).item(), 4)  # teacher one-hot: -log(1/2)
    0.6931
    """
    _check_lists("student_scores", student_scores)
    _check_same_shape("teacher_scores", teacher_scores, "student_scores", student_scores)
    _check_positive("temperature", temperature)
    valid = _check_list_mask(mask, student_scores)
    empty = torch.nonzero(~valid.any(dim=1)).flatten().tolist()
    if empty:
        raise InvalidInput(f"rows {empty[:5]} of listwise_kl's mask keep no candidate: drop those queries from the batch")
    teacher_log_probs = _masked_log_softmax(teacher_scores.detach() / temperature, valid)  # (Q, C), 0 where masked
    student_log_probs = _masked_log_softmax(student_scores / temperature, valid)
    teacher_probs = teacher_log_probs.exp() * valid  # exp(0) = 1 at masked entries: zero them
    kl = (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=1)  # (Q,)
    return kl.mean() * temperature**2


def score_mse(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """Pointwise distillation: mean squared error between the student's and the teacher's scores of the same pairs.

    The student copies the teacher's scale as well as its order, so it fits a student that starts from the
    teacher's own weights (a cross-encoder with layers removed); for a student on another scale (a bi-encoder's
    cosine) use `margin_mse`. Equals sentence-transformers' cross-encoder MSELoss on logits. Teacher scores are
    targets: no gradient flows to them.

    Args:
        student_scores: `(n,)` or `(Q, C)` student scores.
        teacher_scores: teacher scores of the same pairs, same shape.

    >>> score_mse(torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, -1.0]])).item()  # (2^2 + 0) / 2
    2.0
    """
    _check_tensor("student_scores", student_scores)
    if student_scores.ndim not in (1, 2) or student_scores.numel() == 0:
        raise InvalidInput(f"student_scores must be a non-empty (n,) or (queries, candidates) tensor, got "
                           f"{tuple(student_scores.shape)}")
    _check_same_shape("teacher_scores", teacher_scores, "student_scores", student_scores)
    return (student_scores - teacher_scores.detach().to(student_scores.dtype)).square().mean()


def _masked_log_softmax(scores: Tensor, valid: Tensor) -> Tensor:
    """Row-wise log-softmax over the valid entries; masked entries come back as 0 (callers weight them by 0)."""
    log_probs = scores.masked_fill(~valid, torch.finfo(scores.dtype).min).log_softmax(dim=1)
    # 0 instead of a huge negative number, so `0 * log_prob` stays 0 and no gradient reaches masked entries.
    return torch.where(valid, log_probs, torch.zeros_like(log_probs))


def _flatten_negatives(negatives: Tensor, batch: int, dim: int) -> Tensor:
    """`(B, N, d)` per-query or `(M, d)` shared negatives as one `(B*N or M, d)` candidate matrix."""
    _check_tensor("negatives", negatives)
    if negatives.ndim == 3 and negatives.shape[0] == batch and negatives.shape[2] == dim:
        return negatives.reshape(-1, dim)  # row i*N + k is negatives[i, k]
    if negatives.ndim == 2 and negatives.shape[1] == dim:
        return negatives
    raise InvalidInput(
        f"negatives must be ({batch}, N, {dim}) hard negatives per query or (M, {dim}) shared negatives, matching "
        f"query {(batch, dim)}; got {tuple(negatives.shape)}: stack each query's N negatives along dimension 1"
    )


def _check_candidate_mask(mask: Tensor, shape: tuple[int, int], device: torch.device) -> Tensor:
    _check_tensor("false_negative_mask", mask)
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise InvalidInput(
            f"false_negative_mask must be a bool tensor of shape {shape} (queries, positives + all negatives), got "
            f"{mask.dtype} {tuple(mask.shape)}: build it with duplicate_candidate_mask(positive_ids, negative_ids)"
        )
    # Each query's own positive is the target: masking it would leave nothing to predict.
    return mask.to(device) & ~torch.eye(*shape, dtype=torch.bool, device=device)


def _check_list_mask(mask: Tensor | None, scores: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    _check_tensor("mask", mask)
    if mask.dtype != torch.bool or mask.shape != scores.shape:
        raise InvalidInput(
            f"mask must be a bool tensor shaped like the scores {tuple(scores.shape)}, got {mask.dtype} "
            f"{tuple(mask.shape)}: True for real candidates, False for padding"
        )
    return mask.to(scores.device)


def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, Tensor):
        raise InvalidInput(f"{name} must be a torch.Tensor, got {type(value).__name__}: convert it with torch.as_tensor")


def _check_matrix(name: str, value: Tensor) -> tuple[int, int]:
    _check_tensor(name, value)
    if value.ndim != 2 or value.shape[0] == 0:
        raise InvalidInput(f"{name} must be a non-empty (batch, dim) matrix of embeddings, got shape {tuple(value.shape)}")
    return value.shape[0], value.shape[1]


def _check_vector(name: str, value: Tensor) -> int:
    _check_tensor(name, value)
    if value.ndim != 1 or value.shape[0] == 0:
        raise InvalidInput(f"{name} must be a non-empty (n,) vector of scores, got {tuple(value.shape)}: flatten (n, 1) logits")
    return value.shape[0]


def _check_lists(name: str, value: Tensor) -> None:
    _check_tensor(name, value)
    if value.ndim != 2 or 0 in value.shape:
        raise InvalidInput(f"{name} must be a non-empty (queries, candidates) matrix, got shape {tuple(value.shape)}")


def _check_same_shape(name: str, value: Tensor, reference_name: str, reference: Tensor) -> Tensor:
    _check_tensor(name, value)
    if value.shape != reference.shape:
        raise InvalidInput(
            f"{name} has shape {tuple(value.shape)} but {reference_name} has {tuple(reference.shape)}: give both the same shape"
        )
    return value


def _negatives_matrix(name: str, value: Tensor, count: int) -> Tensor:
    """`(n,)` or `(n, k)` negative scores as `(n, k)`."""
    _check_tensor(name, value)
    if value.ndim == 1 and value.shape[0] == count:
        return value[:, None]
    if value.ndim == 2 and value.shape[0] == count and value.shape[1] > 0:
        return value
    raise InvalidInput(f"{name} must be ({count},) or ({count}, k), one row per positive, got shape {tuple(value.shape)}")


def _check_labels(name: str, labels: Tensor, count: int, logits: Tensor) -> Tensor:
    _check_tensor(name, labels)
    if labels.shape != (count,):
        raise InvalidInput(f"{name} must have shape ({count},), one per logit, got {tuple(labels.shape)}")
    labels = labels.to(dtype=logits.dtype, device=logits.device)
    if not bool(((labels >= 0) & (labels <= 1)).all()):  # also rejects NaN
        raise InvalidInput(f"{name} must lie in [0, 1]; rescale graded labels first, e.g. grade / max_grade")
    return labels


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidInput(f"{name} must be a finite number > 0, got {value!r}")


def _check_margin(margin: float) -> None:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise InvalidInput(f"margin must be a finite number >= 0, got {margin!r}: a negative margin tolerates mis-ranked pairs")
