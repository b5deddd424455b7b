"""Is run A better than run B, or lucky? Paired tests on per-query scores.

Both tests look at the queries the two score dicts share (e.g. `result.per_query["ndcg@10"]` of
two `evaluate` calls) and return a two-sided p-value for "the mean difference is zero".

`paired_t_test` uses scipy when it is installed; otherwise the Student t tail comes from the
regularized incomplete beta function, evaluated with the continued fraction of Numerical Recipes
(Press et al., section 6.4): a dozen lines instead of a dependency. It agrees with scipy to ~1e-14
(relative) for hundreds of queries and ~1e-10 for 100,000, where lgamma differences cancel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bicross.errors import InvalidInput

__all__ = ["paired_randomization_test", "paired_t_test"]

# Sign-flip trials are drawn in batches of about this many numbers to bound memory.
_BATCH_ELEMENTS = 1_000_000


def _paired_differences(a: Mapping[str, float], b: Mapping[str, float]) -> np.ndarray:
    """Differences `a - b` over the shared query ids, in sorted id order (reproducible seeds)."""
    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise InvalidInput(
            f"the two score dicts share no query id (a has {len(a)}, e.g. {list(a)[:3]}; b has "
            f"{len(b)}, e.g. {list(b)[:3]}): compare per-query scores of the same queries"
        )
    return np.array([a[query_id] - b[query_id] for query_id in shared], dtype=np.float64)


def paired_randomization_test(a: Mapping[str, float], b: Mapping[str, float],
                              trials: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of a paired sign-flip randomization test on the mean difference.

    Each trial swaps the two systems' scores on a random half of the queries (flips the sign of
    each difference with probability 1/2); the p-value is the share of trials whose absolute mean
    difference is at least the observed one, counting the observed assignment itself:
    (hits + 1) / (trials + 1), so it is never 0.

    >>> a = {"q1": 0.9, "q2": 0.8, "q3": 0.7}
    >>> paired_randomization_test(a, a)
    1.0
    >>> b = {"q1": 0.1, "q2": 0.2, "q3": 0.1}  # 2 of the 8 sign patterns are as extreme
    >>> round(paired_randomization_test(a, b), 2)
    0.25
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidInput(f"trials must be a positive integer, got {trials!r}: use e.g. 10000")
    differences = _paired_differences(a, b)  # (queries,)
    observed = abs(differences.sum())
    # Flipping signs reorders the floating-point sum; allow for that rounding.
    threshold = observed - 1e-9 * float(np.abs(differences).sum())
    rng = np.random.default_rng(seed)
    batch = max(1, _BATCH_ELEMENTS // differences.size)
    hits = 0
    for start in range(0, trials, batch):
        size = min(batch, trials - start)
        # One uniform draw per sign, so the stream (and the p-value) does not depend on batching.
        signs = np.where(rng.random((size, differences.size)) < 0.5, -1.0, 1.0)  # (size, queries)
        hits += int(np.count_nonzero(np.abs(signs @ differences) >= threshold))
    return (hits + 1) / (trials + 1)


def paired_t_test(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Two-sided p-value of Student's paired t-test on the shared queries.

    Identical scores give 1.0; a constant non-zero difference gives 0.0.

    >>> a = {"q1": 0.9, "q2": 0.8, "q3": 0.7, "q4": 0.6}
    >>> round(paired_t_test(a, {"q1": 0.7, "q2": 0.7, "q3": 0.4, "q4": 0.5}), 4)
    0.0354
    """
    differences = _paired_differences(a, b)
    if differences.size < 2:
        raise InvalidInput("a paired t-test needs at least 2 shared queries; "
                           f"got {differences.size}: evaluate on more queries")
    mean = float(differences.mean())
    deviation = float(differences.std(ddof=1))
    if deviation == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (deviation / math.sqrt(differences.size))
    degrees = differences.size - 1
    try:
        from scipy import stats
    except ImportError:
        return _t_two_sided_p_value(t, degrees)
    return float(2.0 * stats.t.sf(abs(t), degrees))


def _t_two_sided_p_value(t: float, degrees: float) -> float:
    """P(|T| >= |t|) for Student's t with `degrees` degrees of freedom: I_x(degrees/2, 1/2)."""
    square = t * t
    x, one_minus_x = degrees / (degrees + square), square / (degrees + square)
    return _regularized_incomplete_beta(x, one_minus_x, degrees / 2.0, 0.5)


def _regularized_incomplete_beta(x: float, one_minus_x: float, a: float, b: float) -> float:
    """I_x(a, b), via the continued fraction on whichever side of the mean converges fast.

    1 - x is passed in, not computed, so that x within 1e-16 of 1 (tiny t) keeps its precision.
    """
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(one_minus_x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(one_minus_x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction of the incomplete beta function, by the modified Lentz method."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 / (1.0 - (a + b) * x / (a + 1.0) or tiny)
    result = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 / (1.0 + numerator * d or tiny)
            c = 1.0 + numerator / c or tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return result
    return result
