"""Distillation steps for the Trainer: a student's scores of [positive, *negatives] against the teacher's labels.

Each example carries the teacher's `scores` (see `bicross.training.labels`). A step scores the same
(query, text) lists with the student, takes one of the pure distillation losses (`margin_mse`,
`listwise_kl`, `score_mse`), optionally adds a loss on the judged labels (InfoNCE over in-batch and the
listed negatives for a bi-encoder; listwise softmax cross-entropy with the positive as target for a
cross-encoder) times `label_weight`, calls `backward` and returns the loss value, like the recipe's
`_bi_encoder_step`.

A bi-encoder's score is its similarity (cosine for normalising models) times `bi_encoder_scale`: a cosine
lies in [-1, 1] while a cross-encoder's logit margins reach 10 or more, and Margin-MSE asks the student to
copy those margins; 20 (the inverse of InfoNCE's temperature 0.05) makes them reachable. Shortcut: no
GradCache here (the distillation losses need no in-batch negatives, so a smaller batch costs little).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample

__all__ = ["DistillLoss", "bi_encoder_distill_step", "bi_encoder_scores", "cross_encoder_distill_step",
           "cross_encoder_scores", "distillation_loss", "list_distillation_loss", "teacher_scores"]

LossKind = Literal["margin_mse", "listwise_kl", "mse"]


@dataclass(frozen=True)
class DistillLoss:
    """Which distillation loss, its temperature, and the weight of the loss on labels added to it."""

    kind: LossKind = "margin_mse"
    temperature: float = 1.0  # listwise_kl: softmax(scores / T) on both sides
    label_weight: float = 0.0  # 0: the teacher's scores alone
    label_temperature: float = 0.05  # bi-encoder InfoNCE on the labels
    bi_encoder_scale: float = 20.0  # bi-encoder score = similarity * scale (see the module notes)

    def __post_init__(self) -> None:
        if self.kind not in ("margin_mse", "listwise_kl", "mse"):
            raise InvalidInput(f"unknown distillation loss {self.kind!r}; choose margin_mse, listwise_kl or mse")
        for name in ("temperature", "label_temperature", "bi_encoder_scale"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidInput(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.label_weight, int | float) and math.isfinite(self.label_weight)
                and self.label_weight >= 0):
            raise InvalidInput(f"label_weight must be >= 0 (0: distil only), got {self.label_weight!r}")


def distillation_loss(student: Tensor, teacher: Tensor, loss: DistillLoss) -> Tensor:
    """The chosen loss between `(B, 1 + k)` student and teacher scores of [positive, *negatives].

    >>> s = torch.tensor([[2.0, 1.0]]); t = torch.tensor([[5.0, 2.0]])
    >>> distillation_loss(s, t, DistillLoss("margin_mse")).item(), distillation_loss(s, t, DistillLoss("mse")).item()
    (4.0, 5.0)
    """
    if loss.kind == "margin_mse":
        from bicross.training.losses import margin_mse

        return margin_mse(student[:, 0], student[:, 1:], teacher[:, 0], teacher[:, 1:])
    if loss.kind == "listwise_kl":
        from bicross.training.losses import listwise_kl

        return listwise_kl(student, teacher, temperature=loss.temperature)
    from bicross.training.losses import score_mse

    return score_mse(student, teacher)


def teacher_scores(examples: Sequence[ContrastiveExample], count: int) -> Tensor:
    """`(B, 1 + count)` teacher scores of each example's positive and first `count` negatives."""
    unlabelled = [i for i, e in enumerate(examples) if e.scores is None]
    if unlabelled:
        raise InvalidInput(f"examples {unlabelled[:5]} of the batch have no teacher scores: label them first "
                           "(bicross.training.labels.label_examples, or `bicross distill`)")
    return torch.tensor([e.scores[:1 + count] for e in examples], dtype=torch.float32)  # type: ignore[index]


def _negatives_count(examples: Sequence[ContrastiveExample]) -> int:
    count = min(len(e.negatives) for e in examples)
    if count == 0:
        raise InvalidInput("distillation needs at least one negative per example (mine candidates with count >= 1)")
    return count


def _bi_encoder_embeddings(model, examples: Sequence[ContrastiveExample], count: int) -> tuple[Tensor, Tensor, Tensor]:
    """Query `(B, d)`, positive `(B, d)` and negative `(B, count, d)` embeddings, in float32."""
    queries = model(model.tokenize([e.query for e in examples], "query"), "query").float()
    positives = model(model.tokenize([e.positive for e in examples], "document"), "document").float()
    negatives = model(model.tokenize([n for e in examples for n in e.negatives[:count]], "document"), "document")
    return queries, positives, negatives.float().view(len(examples), count, -1)


def _similarities(queries: Tensor, documents: Tensor, similarity: str) -> Tensor:
    """`(B, C)` similarity of each query `(B, d)` to its own documents `(B, C, d)`."""
    if similarity == "cosine":
        queries, documents = F.normalize(queries, dim=-1), F.normalize(documents, dim=-1)
    if similarity == "euclidean":
        return -torch.linalg.vector_norm(queries[:, None, :] - documents, dim=-1)
    return torch.einsum("bd,bcd->bc", queries, documents)


def bi_encoder_scores(model, examples: Sequence[ContrastiveExample], loss: DistillLoss = DistillLoss()) -> Tensor:
    """`(B, 1 + k)` student scores (similarity * scale) of each example's positive and negatives."""
    count = _negatives_count(examples)
    queries, positives, negatives = _bi_encoder_embeddings(model, examples, count)
    documents = torch.cat([positives[:, None, :], negatives], dim=1)  # (B, 1 + k, d)
    return _similarities(queries, documents, model.settings.similarity) * loss.bi_encoder_scale


def bi_encoder_distill_step(model, loss: DistillLoss):
    """`step(examples) -> float` for a `TrainableBiEncoder` student."""
    from bicross.training.losses import duplicate_candidate_mask, info_nce

    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = _negatives_count(examples)
        target = teacher_scores(examples, count)
        queries, positives, negatives = _bi_encoder_embeddings(model, examples, count)
        documents = torch.cat([positives[:, None, :], negatives], dim=1)  # (B, 1 + k, d)
        student = _similarities(queries, documents, model.settings.similarity) * loss.bi_encoder_scale
        value = distillation_loss(student, target.to(student.device), loss)
        if loss.label_weight:
            mask = duplicate_candidate_mask([e.positive_id or e.positive for e in examples],
                                            [list(e.negative_ids[:count]) or list(e.negatives[:count]) for e in examples])
            similarity = "dot" if model.settings.similarity == "dot" else "cosine"
            value = value + loss.label_weight * info_nce(queries, positives, negatives,
                                                         temperature=loss.label_temperature, similarity=similarity,
                                                         false_negative_mask=mask)
        value.backward()
        return float(value.detach())

    return step


def cross_encoder_scores(model, examples: Sequence[ContrastiveExample]) -> Tensor:
    """`(B, 1 + k)` student logits of each example's (query, positive) and (query, negative) pairs."""
    count = _negatives_count(examples)
    queries = [e.query for e in examples for _ in range(1 + count)]
    texts = [t for e in examples for t in (e.positive, *e.negatives[:count])]
    return model(model.tokenize(queries, texts)).float().view(len(examples), 1 + count)


def list_distillation_loss(student: Tensor, teacher: Tensor, loss: DistillLoss) -> Tensor:
    """The distillation loss of (B, 1 + k) student scores (positive first) against the teacher's, plus
    `label_weight` times listwise softmax on the labels (the positive is the one relevant candidate)."""
    from bicross.training.losses import listwise_softmax

    value = distillation_loss(student, teacher.to(student.device), loss)
    if loss.label_weight:
        labels = torch.zeros_like(student)
        labels[:, 0] = 1.0
        value = value + loss.label_weight * listwise_softmax(student, labels)
    return value


def cross_encoder_distill_step(model, loss: DistillLoss):
    """`step(examples) -> float` for a `TrainableCrossEncoder` student."""

    def step(examples: Sequence[ContrastiveExample]) -> float:
        count = _negatives_count(examples)
        target = teacher_scores(examples, count)
        value = list_distillation_loss(cross_encoder_scores(model, examples), target, loss)  # scores (B, 1 + k)
        value.backward()
        return float(value.detach())

    return step
