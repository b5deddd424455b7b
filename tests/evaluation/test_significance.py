"""Paired significance tests: exact small cases, closed-form t tails, and the scipy-free fallback."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.evaluation import paired_randomization_test, paired_t_test
from bicross.evaluation.significance import _t_two_sided_p_value

A = {"q1": 0.9, "q2": 0.8, "q3": 0.7, "q4": 0.6}
B = {"q1": 0.7, "q2": 0.7, "q3": 0.4, "q4": 0.5}  # differences 0.2, 0.1, 0.3, 0.1


def _exact_sign_flip_p_value(differences: list[float]) -> float:
    observed = abs(sum(differences))
    patterns = list(itertools.product((-1, 1), repeat=len(differences)))
    extreme = sum(abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed - 1e-12
                  for signs in patterns)
    return extreme / len(patterns)


def test_randomization_identical_runs_give_one():
    assert paired_randomization_test(A, A) == 1.0


def test_randomization_approaches_exact_enumeration():
    differences = [0.2, -0.05, 0.3, 0.1, -0.1, 0.25]
    a = {f"q{i}": 0.5 + d for i, d in enumerate(differences)}
    b = {f"q{i}": 0.5 for i in range(len(differences))}
    # |sum| >= 0.7 when the flipped differences sum to <= 0: {}, {-.05}, {-.1}, {-.05, -.1},
    # {.1, -.1} (a tie, which must count) and {.1, -.05, -.1}; times 2 for the mirror images.
    exact = _exact_sign_flip_p_value([a[q] - b[q] for q in sorted(a)])
    assert exact == pytest.approx(12 / 64)
    assert paired_randomization_test(a, b, trials=20000) == pytest.approx(exact, abs=0.01)


def test_randomization_small_p_for_consistent_improvement():
    a = {f"q{i}": 0.6 + 0.01 * i for i in range(30)}
    b = {f"q{i}": 0.4 + 0.01 * i for i in range(30)}
    assert paired_randomization_test(a, b, trials=999) == pytest.approx(1 / 1000)


def test_randomization_is_seeded_symmetric_and_uses_shared_queries_only():
    rng = np.random.default_rng(7)
    a = {f"q{i}": float(x) for i, x in enumerate(rng.random(40))}
    b = {f"q{i}": float(x) for i, x in enumerate(rng.random(40))}
    p = paired_randomization_test(a, b, trials=2000, seed=5)
    assert paired_randomization_test(a, b, trials=2000, seed=5) == p
    assert paired_randomization_test(b, a, trials=2000, seed=5) == p
    assert paired_randomization_test({**a, "extra": 9.0}, b, trials=2000, seed=5) == p
    assert 0.0 < p <= 1.0


def test_randomization_batches_give_same_result_as_one_batch(monkeypatch):
    a = {f"q{i}": float(i % 3) for i in range(10)}
    b = {f"q{i}": float(i % 2) for i in range(10)}
    whole = paired_randomization_test(a, b, trials=500, seed=1)
    monkeypatch.setattr("bicross.evaluation.significance._BATCH_ELEMENTS", 70)  # 7 trials a batch
    assert paired_randomization_test(a, b, trials=500, seed=1) == whole


@pytest.mark.parametrize("trials", [0, -5, 2.5, True])
def test_randomization_rejects_bad_trials(trials):
    with pytest.raises(InvalidInput, match="trials must be a positive integer"):
        paired_randomization_test(A, B, trials=trials)


@pytest.mark.parametrize("test", [paired_randomization_test, paired_t_test])
def test_no_shared_queries_is_an_error(test):
    with pytest.raises(InvalidInput, match="share no query id"):
        test({"q1": 1.0}, {"Q1": 1.0})


def _student_t_p_closed_form(t: float, degrees: int) -> float:
    """Two-sided p-values with textbook closed forms for 1, 2 and 3 degrees of freedom."""
    t = abs(t)
    if degrees == 1:
        return 1 - 2 / math.pi * math.atan(t)
    if degrees == 2:
        return 1 - t / math.sqrt(2 + t * t)
    u = t / math.sqrt(3)
    return 1 - 2 / math.pi * (math.atan(u) + u / (1 + u * u))


@pytest.mark.parametrize("degrees", [1, 2, 3])
@pytest.mark.parametrize("t", [0.0, 1e-8, 0.3, 1.0, -2.0, 12.7, 400.0])
def test_t_tail_matches_closed_forms(t, degrees):
    assert _t_two_sided_p_value(t, degrees) == pytest.approx(
        _student_t_p_closed_form(t, degrees), rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("t, degrees, p", [
    (2.228138851986, 10, 0.05),  # the 5% two-sided critical value of t(10) in every table
    (2.045229642132703, 29, 0.05),
    (2.576, 1e6, 0.009995),  # large samples: the normal distribution
])
def test_t_tail_matches_table_values(t, degrees, p):
    assert _t_two_sided_p_value(t, degrees) == pytest.approx(p, rel=1e-4)


def test_t_tail_matches_scipy_over_a_grid():
    stats = pytest.importorskip("scipy.stats")
    for degrees in (1, 4, 9, 49, 299, 4999):
        for t in (0.01, 0.5, 1.5, 2.5, 4.0, 9.0):
            assert _t_two_sided_p_value(t, degrees) == pytest.approx(
                2 * stats.t.sf(t, degrees), rel=1e-9), (t, degrees)


def test_paired_t_test_hand_computed():
    # differences 0.2, 0.1, 0.3, 0.1: mean 0.175, sample sd sqrt(0.0275 / 3), t = 3.6556, 3 df
    t = 0.175 / (math.sqrt(0.0275 / 3) / 2)
    assert paired_t_test(A, B) == pytest.approx(_student_t_p_closed_form(t, 3), rel=1e-9)
    assert paired_t_test(B, A) == pytest.approx(paired_t_test(A, B), rel=1e-12)


def test_paired_t_test_without_scipy_uses_own_tail(monkeypatch):
    with_scipy = paired_t_test(A, B)
    monkeypatch.setitem(sys.modules, "scipy", None)  # makes `from scipy import stats` fail
    assert paired_t_test(A, B) == pytest.approx(with_scipy, rel=1e-9)


def test_paired_t_test_degenerate_cases():
    assert paired_t_test(A, A) == 1.0
    assert paired_t_test(A, {q: s - 0.25 for q, s in A.items()}) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InvalidInput, match="at least 2 shared queries"):
        paired_t_test({"q1": 0.5}, {"q1": 0.2})
