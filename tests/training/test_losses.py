"""Losses: each against a value computed by hand in numpy, and against sentence-transformers where it has the loss.

sentence-transformers' bi-encoder losses are called through `compute_loss_from_embeddings` (they never touch
their model there), its cross-encoder losses through a fake CrossEncoder that looks logits up in a table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bicross.errors import InvalidInput
from bicross.training.losses import (
    binary_cross_entropy,
    duplicate_candidate_mask,
    info_nce,
    listwise_kl,
    listwise_softmax,
    margin_mse,
    mse_on_sigmoid,
    pairwise_margin,
    triplet_loss,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; the machine is shared
    yield
    torch.set_num_threads(previous)


def _random(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _logsumexp(values: np.ndarray) -> float:
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


def _similarity(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    dot = float(a @ b)
    return dot / (np.linalg.norm(a) * np.linalg.norm(b)) if kind == "cosine" else dot


def _info_nce_by_hand(query, positive, negatives, temperature, kind, mask=None, symmetric=False) -> float:
    """The textbook formula, one query at a time: -log softmax of the own positive among the kept candidates."""
    q, p = query.numpy(), positive.numpy()
    candidates = p if negatives is None else np.concatenate([p, negatives.reshape(-1, q.shape[1]).numpy()])
    batch = len(q)
    forward = []
    for i in range(batch):
        logits = np.array([_similarity(q[i], c, kind) / temperature for c in candidates])
        kept = [j for j in range(len(candidates)) if j == i or mask is None or not mask[i][j]]
        forward.append(_logsumexp(logits[kept]) - logits[i])
    if not symmetric:
        return float(np.mean(forward))
    backward = []
    for i in range(batch):  # document i picks its query among all queries; query j is excluded if mask[j][i]
        logits = np.array([_similarity(p[i], q[j], kind) / temperature for j in range(batch)])
        kept = [j for j in range(batch) if j == i or mask is None or not mask[j][i]]
        backward.append(_logsumexp(logits[kept]) - logits[i])
    return float((np.mean(forward) + np.mean(backward)) / 2)


@pytest.mark.parametrize("kind", ["cosine", "dot"])
@pytest.mark.parametrize("negative_shape", [None, (3, 2, 4), (5, 4)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_equals_the_formula_by_hand(kind, negative_shape, symmetric) -> None:
    query, positive = _random(3, 4, seed=1), _random(3, 4, seed=2)
    negatives = None if negative_shape is None else _random(*negative_shape, seed=3)
    loss = info_nce(query, positive, negatives, temperature=0.5, similarity=kind, symmetric=symmetric)
    expected = _info_nce_by_hand(query, positive, negatives, 0.5, kind, symmetric=symmetric)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_info_nce_masks_false_negatives_like_leaving_them_out() -> None:
    query, positive, negatives = _random(3, 4, seed=1), _random(3, 4, seed=2), _random(3, 2, 4, seed=3)
    # Query 2 shares query 0's positive "a"; query 0 mined "a" itself as a hard negative.
    mask = duplicate_candidate_mask(["a", "b", "a"], [["x", "a"], ["y", "z"], ["b", "w"]])
    assert torch.nonzero(mask).tolist() == [[0, 2], [0, 4], [1, 7], [2, 0], [2, 4]]
    for symmetric in (False, True):
        loss = info_nce(query, positive, negatives, temperature=0.5, symmetric=symmetric, false_negative_mask=mask)
        expected = _info_nce_by_hand(query, positive, negatives, 0.5, "cosine", mask.tolist(), symmetric)
        assert loss.item() == pytest.approx(expected, rel=1e-10)
        unmasked = info_nce(query, positive, negatives, temperature=0.5, symmetric=symmetric)
        assert abs(loss.item() - unmasked.item()) > 1e-3  # the mask changed something


def test_info_nce_symmetric_reads_an_asymmetric_mask_transposed() -> None:
    query, positive = _random(3, 4, seed=1), _random(3, 4, seed=2)
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = True  # document 1 also answers query 0: so query 0 is no negative for document 1 either
    loss = info_nce(query, positive, temperature=0.5, symmetric=True, false_negative_mask=mask)
    expected = _info_nce_by_hand(query, positive, None, 0.5, "cosine", mask.tolist(), symmetric=True)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_info_nce_never_masks_the_own_positive_and_keeps_gradients_finite() -> None:
    query = _random(3, 4, seed=1).requires_grad_(True)
    everything = torch.ones(3, 3 + 6, dtype=torch.bool)  # asks to mask every candidate, diagonal included
    loss = info_nce(query, _random(3, 4, seed=2), _random(3, 2, 4, seed=3), false_negative_mask=everything)
    loss.backward()
    assert loss.item() == 0.0  # only the own positive is left: probability 1
    assert torch.isfinite(query.grad).all()


def test_duplicate_candidate_mask_with_shared_negatives() -> None:
    mask = duplicate_candidate_mask(["a", "b"], [["b", "c", "a"]])
    assert mask.tolist() == [[False, False, False, False, True], [False, False, True, False, False]]
    assert duplicate_candidate_mask(["a", "a"]).tolist() == [[False, True], [True, False]]
    with pytest.raises(InvalidInput, match="not a single string"):
        duplicate_candidate_mask("ab")
    with pytest.raises(InvalidInput, match="not strings"):
        duplicate_candidate_mask(["a", "b"], ["cd", "ef"])


@pytest.mark.parametrize("kind", ["cosine", "dot"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_equals_sentence_transformers_multiple_negatives_ranking(kind, symmetric) -> None:
    st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    from sentence_transformers.util import cos_sim, dot_score

    directions = ("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",)
    reference = st.MultipleNegativesRankingLoss(
        None, scale=1 / 0.05, similarity_fct=cos_sim if kind == "cosine" else dot_score,
        directions=directions, partition_mode="per_direction" if symmetric else "joint",
    )
    # float64, so that a gap in the formula, not float32 rounding of logits up to 160, would show.
    query, positive, negatives = (_random(*shape, seed=seed).requires_grad_(True)
                                  for seed, shape in enumerate([(6, 8), (6, 8), (6, 3, 8)]))
    ours = info_nce(query, positive, negatives, temperature=0.05, similarity=kind, symmetric=symmetric)
    (our_gradient,) = torch.autograd.grad(ours, query)
    # sentence-transformers takes the hard negatives as columns: negative k of every query is one column.
    theirs = reference.compute_loss_from_embeddings([query, positive, *negatives.unbind(dim=1)], None)
    (their_gradient,) = torch.autograd.grad(theirs, query)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(our_gradient, their_gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be a finite number > 0"),
        ({"temperature": math.nan}, "temperature"),
        ({"positive": torch.zeros(2, 4)}, r"positive has shape \(2, 4\) but query has \(3, 4\)"),
        ({"negatives": torch.zeros(2, 2, 4)}, r"negatives must be \(3, N, 4\)"),
        ({"negatives": torch.zeros(5, 3)}, r"\(M, 4\) shared negatives"),
        ({"similarity": "euclidean"}, "choose 'cosine' or 'dot'"),
        ({"false_negative_mask": torch.zeros(3, 3)}, "must be a bool tensor of shape"),
        ({"false_negative_mask": torch.zeros(3, 4, dtype=torch.bool)}, r"of shape \(3, 3\)"),
        ({"query": torch.zeros(3)}, r"query must be a non-empty \(batch, dim\) matrix"),
    ],
)
def test_info_nce_rejects_bad_input_saying_which_argument(kwargs, message) -> None:
    arguments = {"query": torch.zeros(3, 4), "positive": torch.zeros(3, 4), **kwargs}
    with pytest.raises(InvalidInput, match=message):
        info_nce(**arguments)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "dot"])
def test_triplet_loss_equals_the_formula_by_hand(distance) -> None:
    anchor, positive, negative = _random(4, 3, seed=1), _random(4, 3, seed=2), _random(4, 3, seed=3)

    def by_hand(a: np.ndarray, b: np.ndarray) -> float:
        if distance == "euclidean":
            return float(np.sqrt(((a - b) ** 2).sum()))
        return 1 - _similarity(a, b, "cosine") if distance == "cosine" else -float(a @ b)

    a, p, n = anchor.numpy(), positive.numpy(), negative.numpy()
    expected = np.mean([max(0.0, by_hand(a[i], p[i]) - by_hand(a[i], n[i]) + 1.0) for i in range(4)])
    assert 0 < expected  # the margin is active for some rows, so the test sees the hinge
    loss = triplet_loss(anchor, positive, negative, margin=1.0, distance=distance)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("distance", "margin"), [("euclidean", 5.0), ("cosine", 0.3)])
def test_triplet_loss_equals_sentence_transformers(distance, margin) -> None:
    st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    metric = st.TripletDistanceMetric.EUCLIDEAN if distance == "euclidean" else st.TripletDistanceMetric.COSINE
    reference = st.TripletLoss(None, distance_metric=metric, triplet_margin=margin)
    anchor, positive, negative = (_random(6, 8, seed=seed, dtype=torch.float32) for seed in range(3))
    theirs = reference.compute_loss_from_embeddings([anchor, positive, negative], None)
    ours = triplet_loss(anchor, positive, negative, margin=margin, distance=distance)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_triplet_loss_gradient_is_finite_when_anchor_equals_positive() -> None:
    anchor = torch.ones(2, 3, requires_grad=True)
    triplet_loss(anchor, anchor.detach().clone(), torch.zeros(2, 3)).backward()
    assert torch.isfinite(anchor.grad).all()


def test_triplet_loss_rejects_bad_arguments() -> None:
    a = torch.zeros(2, 3)
    with pytest.raises(InvalidInput, match="margin must be a finite number >= 0"):
        triplet_loss(a, a, a, margin=-1.0)
    with pytest.raises(InvalidInput, match="choose 'euclidean', 'cosine' or 'dot'"):
        triplet_loss(a, a, a, distance="manhattan")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"negative has shape \(3, 3\)"):
        triplet_loss(a, a, torch.zeros(3, 3))


def _score_table(table: dict[tuple[str, str], torch.Tensor]):
    """A fake sentence-transformers CrossEncoder whose forward looks each (query, document) logit up in `table`."""
    from sentence_transformers.cross_encoder import CrossEncoder

    class ScoreTable(CrossEncoder):
        num_labels = 1  # shadows CrossEncoder's property, which would inspect real modules

        def __init__(self) -> None:
            torch.nn.Module.__init__(self)  # skip loading a model

        @property
        def device(self) -> torch.device:
            return torch.device("cpu")

        def preprocess(self, pairs, prompt=None, task=None):
            return {"pairs": list(pairs)}

        def forward(self, inputs, **kwargs):
            return {"scores": torch.stack([table[pair] for pair in inputs["pairs"]])}

    return ScoreTable()


def _pairs(count: int) -> tuple[list[str], list[str]]:
    return [f"q{i}" for i in range(count)], [f"d{i}" for i in range(count)]


def test_binary_cross_entropy_by_hand_and_against_sentence_transformers() -> None:
    logits, labels = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([1, 0, 1, 0])  # integer labels are fine
    sigmoid = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
    y = labels.numpy()
    for weight in (None, 3.0):
        w = 1.0 if weight is None else weight
        expected = np.mean(-(w * y * np.log(sigmoid) + (1 - y) * np.log(1 - sigmoid)))
        ours = binary_cross_entropy(logits, labels, pos_weight=weight)
        assert ours.item() == pytest.approx(expected, rel=1e-6)
        losses = pytest.importorskip("sentence_transformers.cross_encoder.losses")
        queries, documents = _pairs(4)
        model = _score_table(dict(zip(zip(queries, documents, strict=True), logits, strict=True)))
        reference = losses.BinaryCrossEntropyLoss(model, pos_weight=None if weight is None else torch.tensor(weight))
        assert ours.item() == pytest.approx(reference([queries, documents], labels).item(), rel=1e-6)


def test_mse_on_sigmoid_by_hand_and_against_sentence_transformers() -> None:
    logits, targets = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 1 / 3, 0.0])  # grades 3, 1, 0 of 3
    sigmoid = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
    expected = np.mean((sigmoid - targets.numpy()) ** 2)
    ours = mse_on_sigmoid(logits, targets)
    assert ours.item() == pytest.approx(expected, rel=1e-6)
    losses = pytest.importorskip("sentence_transformers.cross_encoder.losses")
    queries, documents = _pairs(3)
    model = _score_table(dict(zip(zip(queries, documents, strict=True), logits, strict=True)))
    reference = losses.MSELoss(model, activation_fn=torch.nn.Sigmoid())
    assert ours.item() == pytest.approx(reference([queries, documents], targets).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: binary_cross_entropy(torch.zeros(2), torch.tensor([0.0, 2.0])), r"labels must lie in \[0, 1\]"),
        (lambda: binary_cross_entropy(torch.zeros(2), torch.tensor([0.0, math.nan])), r"labels must lie in \[0, 1\]"),
        (lambda: binary_cross_entropy(torch.zeros(2), torch.zeros(3)), r"labels must have shape \(2,\)"),
        (lambda: binary_cross_entropy(torch.zeros(2, 1), torch.zeros(2)), r"flatten \(n, 1\) logits"),
        (lambda: binary_cross_entropy(torch.zeros(2), torch.zeros(2), pos_weight=0.0), "pos_weight must be"),
        (lambda: mse_on_sigmoid(torch.zeros(2), torch.tensor([3.0, 0.0])), "grade / max_grade"),
        (lambda: binary_cross_entropy([0.0], torch.zeros(1)), "logits must be a torch.Tensor"),
    ],
)
def test_pointwise_losses_reject_bad_input(call, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()


def test_pairwise_margin_by_hand_and_against_torch_margin_ranking() -> None:
    positive, negatives = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([[1.5, 3.0], [-2.0, 0.5], [0.2, 1.0]])
    # relu(1 - (pos - neg)) per pair: 0.5, 2.0 | 0.0, 1.5 | 0.2, 1.0
    assert pairwise_margin(positive, negatives).item() == pytest.approx((0.5 + 2.0 + 0 + 1.5 + 0.2 + 1.0) / 6)
    reference = torch.nn.MarginRankingLoss(margin=1.0)
    expanded = positive[:, None].expand_as(negatives)
    expected = reference(expanded.flatten(), negatives.flatten(), torch.ones(6))
    assert pairwise_margin(positive, negatives).item() == pytest.approx(expected.item())
    assert pairwise_margin(positive, negatives[:, 0]).item() == pytest.approx((0.5 + 0 + 0.2) / 3)  # (n,) negatives
    with pytest.raises(InvalidInput, match=r"negative_scores must be \(3,\) or \(3, k\)"):
        pairwise_margin(positive, torch.zeros(2, 2))


def _listwise_by_hand(scores: np.ndarray, labels: np.ndarray, lengths: list[int]) -> float:
    """Per row: cross-entropy between labels / labels.sum() and the softmax of the scores, over the first `length`."""
    losses = []
    for row, length in enumerate(lengths):
        s, y = scores[row, :length], labels[row, :length]
        log_probs = s - _logsumexp(s)
        losses.append(-float((y / y.sum() * log_probs).sum()))
    return float(np.mean(losses))


def test_listwise_softmax_by_hand_with_padding() -> None:
    scores = torch.tensor([[2.0, 0.5, -1.0], [0.3, 1.2, 9.0]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]], dtype=torch.float64)  # row 1: the 5 is padding
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss = listwise_softmax(scores, labels, mask)
    assert loss.item() == pytest.approx(_listwise_by_hand(scores.detach().numpy(), labels.numpy(), [3, 2]), rel=1e-10)
    loss.backward()
    assert scores.grad[1, 2].item() == 0.0 and torch.isfinite(scores.grad).all()  # padding gets no gradient


def test_listwise_softmax_of_exp_labels_equals_sentence_transformers_list_net() -> None:
    losses = pytest.importorskip("sentence_transformers.cross_encoder.losses")
    raw_labels = [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0])]  # ListNet targets softmax(labels)
    scores = torch.tensor([[0.4, -0.3, 1.1], [2.0, 0.7, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    table = {(f"q{i}", f"d{i}{j}"): scores[i, j] for i in range(2) for j in range(3) if mask[i, j]}
    reference = losses.ListNetLoss(_score_table(table))
    theirs = reference([["q0", "q1"], [["d00", "d01", "d02"], ["d10", "d11"]]], raw_labels)
    padded = torch.zeros(2, 3)
    padded[0], padded[1, :2] = raw_labels[0], raw_labels[1]
    assert listwise_softmax(scores, padded.exp(), mask).item() == pytest.approx(theirs.item(), rel=1e-6)


def test_listwise_softmax_rejects_rows_without_a_target() -> None:
    scores = torch.zeros(2, 2)
    with pytest.raises(InvalidInput, match=r"rows \[1\] .* all zero"):
        listwise_softmax(scores, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(InvalidInput, match=r"rows \[0\]"):  # its only positive label is masked out
        listwise_softmax(scores, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[True, False], [True, True]]))
    with pytest.raises(InvalidInput, match=">= 0"):
        listwise_softmax(scores, torch.tensor([[1.0, -1.0], [1.0, 0.0]]))
    with pytest.raises(InvalidInput, match="mask must be a bool tensor"):
        listwise_softmax(scores, torch.ones(2, 2), torch.ones(2, 2))


def test_margin_mse_by_hand_and_against_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    query, positive = _random(4, 8, seed=1, dtype=torch.float32), _random(4, 8, seed=2, dtype=torch.float32)
    negatives = _random(4, 2, 8, seed=3, dtype=torch.float32)
    student_positive = (query * positive).sum(-1)  # (4,): dot product, sentence-transformers' default
    student_negatives = torch.einsum("nd,nkd->nk", query, negatives)  # (4, 2)
    teacher = _random(4, 3, seed=4, dtype=torch.float32) * 5  # (4, 1 + 2): positive score, then negatives
    ours = margin_mse(student_positive, student_negatives, teacher[:, 0], teacher[:, 1:])
    sp, sn, t = student_positive.numpy(), student_negatives.numpy(), teacher.numpy()
    expected = np.mean([((sp[i] - sn[i, k]) - (t[i, 0] - t[i, 1 + k])) ** 2 for i in range(4) for k in range(2)])
    assert ours.item() == pytest.approx(expected, rel=1e-6)
    theirs = st.MarginMSELoss(None).compute_loss_from_embeddings([query, positive, *negatives.unbind(dim=1)], teacher)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_margin_mse_sends_no_gradient_to_the_teacher() -> None:
    teacher_positive = torch.tensor([1.0], requires_grad=True)
    student_positive = torch.tensor([0.0], requires_grad=True)
    margin_mse(student_positive, torch.zeros(1, 1), teacher_positive, torch.zeros(1, 1)).backward()
    assert teacher_positive.grad is None and student_positive.grad.item() == pytest.approx(-2.0)
    with pytest.raises(InvalidInput, match=r"teacher_negatives has shape \(1, 2\) but student_negatives has \(1, 1\)"):
        margin_mse(student_positive, torch.zeros(1, 1), teacher_positive, torch.zeros(1, 2))


def test_listwise_kl_by_hand_with_temperature_and_padding() -> None:
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 7.0]], dtype=torch.float64)
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 4.0, -9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = []
    for row, length in enumerate([3, 2]):
        s, t = student[row, :length].numpy() / 2.0, teacher[row, :length].numpy() / 2.0
        log_p, log_q = t - _logsumexp(t), s - _logsumexp(s)
        expected.append(float((np.exp(log_p) * (log_p - log_q)).sum()))
    loss = listwise_kl(student, teacher, temperature=2.0, mask=mask)
    assert loss.item() == pytest.approx(np.mean(expected) * 4.0, rel=1e-10)
    with pytest.raises(InvalidInput, match=r"rows \[1\] of listwise_kl's mask keep no candidate"):
        listwise_kl(student, teacher, mask=torch.tensor([[True, True, True], [False, False, False]]))
    with pytest.raises(InvalidInput, match="temperature must be a finite number > 0"):
        listwise_kl(student, teacher, temperature=-1.0)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_listwise_kl_equals_sentence_transformers_distill_kl_div(temperature) -> None:
    st = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    query = _random(4, 8, seed=1, dtype=torch.float32).requires_grad_(True)
    documents = _random(4, 3, 8, seed=2, dtype=torch.float32)
    teacher = _random(4, 3, seed=3, dtype=torch.float32) * 4
    student = torch.einsum("nd,nkd->nk", query, documents)  # (4, 3): dot product, sentence-transformers' default
    ours = listwise_kl(student, teacher, temperature=temperature)
    reference = st.DistillKLDivLoss(None, temperature=temperature)
    theirs = reference.compute_loss_from_embeddings([query, *documents.unbind(dim=1)], teacher)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    # and torch's own KL divergence on the unmasked rows
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                  log_target=True, reduction="batchmean") * temperature**2
    assert ours.item() == pytest.approx(kl.item(), rel=1e-5)
