"""Trainer steps for ColBERT and the Poly-encoder: InfoNCE over their scores, and distillation from a teacher.

Contrastive (`colbert_step`, `poly_step`): every query scores all of the batch's positives (the others'
positives are in-batch negatives) and all of its mined negatives, in `info_nce`'s order (candidate
`B + i * k + j` is example i's negative j). The loss is the softmax cross-entropy of scores / temperature with
the query's own positive as target (`contrastive_from_scores`); a candidate that is the same document as the
positive (two queries sharing it, or a mined "negative" that is the positive) is left out, as
`duplicate_candidate_mask` finds it. That is `info_nce`, computed from a score matrix instead of embeddings,
because MaxSim and poly scores are not dot products of one vector per text. `in_batch=False` keeps each
query to its own [positive, *negatives].

Distillation (`colbert_distill_step`, `poly_distill_step`): each query scores its own [positive,
*negatives] and copies the teacher's `scores` (`bicross.training.labels`) through
`distill_steps.distillation_loss` (margin_mse, listwise_kl or mse), plus `label_weight` times the contrastive
loss on the same lists.

Temperature 1 by default: a MaxSim score is a sum of `query_length` cosines (32 by default, so it spans
+-32) and ColBERT and PyLate train it unscaled; a poly score is an unnormalised dot product. Shortcut: no
GradCache (late interaction keeps token vectors; chunked backward would have to cache those).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bicross.errors import InvalidInput
from bicross.late_interaction.colbert import ColBERT
from bicross.late_interaction.poly import PolyEncoder
from bicross.scoring.late_interaction import maxsim_batched, maxsim_matrix, poly_scores
from bicross.training.data import ContrastiveExample
from bicross.training.distill_steps import DistillLoss, list_distillation_loss, teacher_scores

__all__ = ["LateInteractionLoss", "colbert_distill_step", "colbert_list_scores", "colbert_step",
           "contrastive_from_scores", "poly_distill_step", "poly_list_scores", "poly_step"]

Step = Callable[[Sequence[ContrastiveExample]], float]


@dataclass(frozen=True)
class LateInteractionLoss:
    """Temperature of the contrastive loss and whether other queries' documents are candidates too."""

    temperature: float = 1.0
    in_batch: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidInput(f"temperature must be a finite number > 0, got {self.temperature!r}")


def contrastive_from_scores(scores: Tensor, temperature: float = 1.0, false_negative_mask: Tensor | None = None) -> Tensor:
    """InfoNCE from a score matrix `(B, C)` whose column i is query i's positive (the rest are negatives).

    `false_negative_mask` `(B, C)`: True where a candidate is no negative for the query (left out).

    >>> round(contrastive_from_scores(torch.tensor([[1.0, 0.0], [0.0, 1.0]])).item(), 4)  # log(1 + e^-1)
    0.3133
    >>> abs(contrastive_from_scores(torch.tensor([[1.0, 5.0]]), false_negative_mask=torch.tensor([[False, True]])).item())
    0.0
    """
    from bicross.training.losses import listwise_softmax

    if scores.ndim != 2 or scores.shape[1] < scores.shape[0]:
        raise InvalidInput(f"scores must be (B, C) with C >= B (the positives first), got {tuple(scores.shape)}")
    labels = torch.zeros_like(scores)
    labels[:, :scores.shape[0]] = torch.eye(scores.shape[0], dtype=scores.dtype, device=scores.device)
    valid = None if false_negative_mask is None else ~false_negative_mask.to(scores.device)
    return listwise_softmax(scores / temperature, labels, mask=valid)


def colbert_list_scores(model: ColBERT, examples: Sequence[ContrastiveExample], count: int) -> Tensor:
    """`(B, 1 + count)` MaxSim of each query against its own positive and first `count` negatives."""
    queries = model.encode([e.query for e in examples], "query")
    documents = model.encode([t for e in examples for t in (e.positive, *e.negatives[:count])], "document")
    batch, width = len(examples), documents.vectors.shape[1]
    return maxsim_batched(queries.vectors.float(), documents.vectors.float().view(batch, 1 + count, width, -1),
                          queries.mask, documents.mask.view(batch, 1 + count, width))


def poly_list_scores(model: PolyEncoder, examples: Sequence[ContrastiveExample], count: int) -> Tensor:
    """`(B, 1 + count)` poly scores of each query against its own positive and first `count` negatives."""
    context = model.encode_queries(model.tokenize([e.query for e in examples], "query")).float()  # (B, m, h)
    texts = [t for e in examples for t in (e.positive, *e.negatives[:count])]
    documents = model.encode_documents(model.tokenize(texts, "document")).float()  # (B * (1 + count), h)
    return poly_scores(context, documents.view(len(examples), 1 + count, -1))


def colbert_step(model: ColBERT, loss: LateInteractionLoss | None = None) -> Step:
    """`step(examples) -> float` training a ColBERT with InfoNCE over MaxSim (in-batch + mined negatives)."""
    loss = loss or LateInteractionLoss()

    def all_scores(examples: Sequence[ContrastiveExample], count: int) -> Tensor:
        queries = model.encode([e.query for e in examples], "query")
        documents = model.encode(_candidates(examples, count), "document")  # positives, then negatives row by row
        return maxsim_matrix(queries.vectors.float(), documents.vectors.float(), queries.mask, documents.mask)

    return _contrastive_step(all_scores, lambda examples, count: colbert_list_scores(model, examples, count), loss)


def poly_step(model: PolyEncoder, loss: LateInteractionLoss | None = None) -> Step:
    """`step(examples) -> float` training a Poly-encoder with InfoNCE over its scores (in-batch + mined negatives)."""
    loss = loss or LateInteractionLoss()

    def all_scores(examples: Sequence[ContrastiveExample], count: int) -> Tensor:
        context = model.encode_queries(model.tokenize([e.query for e in examples], "query")).float()
        documents = model.encode_documents(model.tokenize(_candidates(examples, count), "document")).float()
        return poly_scores(context, documents)  # (B, B + B * count)

    return _contrastive_step(all_scores, lambda examples, count: poly_list_scores(model, examples, count), loss)


def colbert_distill_step(model: ColBERT, loss: DistillLoss | None = None) -> Step:
    """`step(examples) -> float` distilling a teacher's scores of [positive, *negatives] into a ColBERT."""
    return _distill_step(lambda examples, count: colbert_list_scores(model, examples, count), loss or DistillLoss())


def poly_distill_step(model: PolyEncoder, loss: DistillLoss | None = None) -> Step:
    """`step(examples) -> float` distilling a teacher's scores of [positive, *negatives] into a Poly-encoder."""
    return _distill_step(lambda examples, count: poly_list_scores(model, examples, count), loss or DistillLoss())


def _contrastive_step(all_scores: Callable[[Sequence[ContrastiveExample], int], Tensor],
                      list_scores: Callable[[Sequence[ContrastiveExample], int], Tensor],
                      loss: LateInteractionLoss) -> Step:
    from bicross.training.losses import duplicate_candidate_mask, listwise_softmax

    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = min(len(e.negatives) for e in examples)
        if loss.in_batch:
            negative_ids = [list(e.negative_ids[:count]) or list(e.negatives[:count]) for e in examples] if count else None
            mask = duplicate_candidate_mask([e.positive_id or e.positive for e in examples], negative_ids)
            value = contrastive_from_scores(all_scores(examples, count), loss.temperature, mask)
        else:
            if count == 0:
                raise InvalidInput("in_batch=False needs at least one negative per example (mine them first)")
            scores = list_scores(examples, count)  # (B, 1 + count)
            labels = torch.zeros_like(scores)
            labels[:, 0] = 1.0
            value = listwise_softmax(scores / loss.temperature, labels)
        value.backward()
        return float(value.detach())

    return step


def _distill_step(list_scores: Callable[[Sequence[ContrastiveExample], int], Tensor], loss: DistillLoss) -> Step:
    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = min(len(e.negatives) for e in examples)
        if count == 0:
            raise InvalidInput("distillation needs at least one negative per example (mine candidates with count >= 1)")
        value = list_distillation_loss(list_scores(examples, count), teacher_scores(examples, count), loss)
        value.backward()
        return float(value.detach())

    return step


def _candidates(examples: Sequence[ContrastiveExample], count: int) -> list[str]:
    """The batch's positives, then each example's first `count` negatives (info_nce's candidate order)."""
    return [e.positive for e in examples] + [n for e in examples for n in e.negatives[:count]]
