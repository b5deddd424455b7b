"""Admission by expected wait: refuse at once what could not finish within its timeout anyway.

A bounded queue alone is not enough: 64 admitted searches at ~0.9 s each wait ~55 s, far past a 30 s
timeout, so at overload most admitted requests would time out after the model had already started on
some of them (measured: 448 of 593 admitted requests ended in 504). Instead the worker keeps a moving
average of how long each kind of job takes per unit of work (a query, a reranked pair, an estimated
token), and

- refuses a new job (429 at once) when the expected wait ahead of it plus its own expected run time is
  more than its timeout, and
- drops a job about to start whose remaining time is less than its expected run time (it would time out
  halfway through, wasting the model on a result nobody reads).

A started job runs to its end (a model call cannot be interrupted), so a job expected to take far longer
than its whole timeout (e.g. /search/batch of many queries with a short timeout) is refused even with
nothing ahead: its caller would be gone long before it ended, and the model would be busy for nothing.

Until a kind has been measured its cost is unknown and counts as 0: the first jobs are always admitted.
The estimates shape admission only, never results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MARGIN", "RunTimes", "combined_spread", "expected_wait", "retry_after_seconds", "too_late_to_start",
           "would_time_out"]


@dataclass
class RunTimes:
    """Exponential moving averages of seconds per unit of work, and of its deviation, by job kind.

    As TCP estimates a round trip (RFC 6298): the mean, and the mean absolute deviation from it, so that
    admission can keep a margin for jobs slower than average.

    >>> times = RunTimes(alpha=0.5, beta=0.5)
    >>> times.expected("search", 2) is None
    True
    >>> times.observe("search", seconds=1.0, units=1); times.observe("search", seconds=4.0, units=2)
    >>> times.expected("search", 2), times.spread("search", 2)
    (3.0, 1.5)
    """

    alpha: float = 0.2  # weight of the newest measurement: recent enough to follow a model or load change
    beta: float = 0.25  # the same for the deviation (RFC 6298's value)
    per_unit: dict[str, float] = field(default_factory=dict)
    deviation: dict[str, float] = field(default_factory=dict)

    def observe(self, kind: str, seconds: float, units: float) -> None:
        """Fold one measured run of `units` units of work into the kind's averages."""
        if units <= 0 or seconds < 0:
            return
        rate = seconds / units
        previous = self.per_unit.get(kind)
        if previous is None:
            self.per_unit[kind], self.deviation[kind] = rate, rate / 2  # RFC 6298's first sample
            return
        self.deviation[kind] += self.beta * (abs(rate - previous) - self.deviation[kind])
        self.per_unit[kind] = previous + self.alpha * (rate - previous)

    def spread(self, kind: str, units: float) -> float:
        """The deviation of `units` of `kind` (0 before it was measured)."""
        return self.deviation.get(kind, 0.0) * units

    def expected(self, kind: str, units: float) -> float | None:
        """Expected seconds for `units` of `kind`, or None before the kind was ever measured."""
        rate = self.per_unit.get(kind)
        return None if rate is None else rate * units


def expected_wait(queued: Iterable[float | None], running_expected: float | None, running_elapsed: float) -> float:
    """Seconds a new job waits: the queued jobs' expected runs plus what is left of the running one.

    Unknown costs (None) count as 0, so an unmeasured server never refuses.

    >>> expected_wait([1.0, None, 2.0], running_expected=3.0, running_elapsed=1.0)
    5.0
    >>> expected_wait([], running_expected=3.0, running_elapsed=5.0)  # running longer than expected
    0.0
    """
    left = max(0.0, (running_expected or 0.0) - running_elapsed)
    return sum(cost for cost in queued if cost is not None) + left


SLACK = 2.0  # how far past its deadline an estimate must point before a job that could start at once is refused
# deviations kept free before a deadline: 4, as TCP's retransmission timeout (RFC 6298). Measured: with 2, 2 of 54
# admitted searches still timed out at 50 clients (searches vary ~20% with their documents' lengths)
MARGIN = 4.0


def would_time_out(wait: float, run: float | None, timeout: float, spread: float = 0.0) -> bool:
    """Whether to refuse a job now: waiting `wait` s, then running `run` s, would pass its `timeout`.

    `spread` is the deviation of wait plus run (`combined_spread`); MARGIN of it are kept free, so a
    job admitted behind slower-than-average ones still ends in time. A job that would start at once
    (`wait` 0) is refused only when its own run is expected past SLACK x its timeout: estimates are
    averages, it gets a try; far past, its result would surely come too late.

    >>> would_time_out(20.0, 0.9, 30.0), would_time_out(29.5, 0.9, 30.0), would_time_out(29.5, None, 30.0)
    (False, True, False)
    >>> would_time_out(20.0, 0.9, 30.0, spread=2.0), would_time_out(20.0, 0.9, 30.0, spread=3.0)
    (False, True)
    >>> would_time_out(0.0, 40.0, 30.0), would_time_out(0.0, 70.0, 30.0), would_time_out(1.0, 40.0, 30.0)
    (False, True, True)
    """
    if run is None:
        return False
    return wait + run + MARGIN * spread > (SLACK * timeout if wait <= 0 else timeout)


def combined_spread(spreads: Iterable[float]) -> float:
    """The deviation of a sum of independent run times: the root of the summed squares.

    >>> combined_spread([3.0, 4.0])
    5.0
    """
    return math.sqrt(sum(spread * spread for spread in spreads))


def too_late_to_start(run: float | None, remaining: float, timeout: float) -> bool:
    """Whether to drop a job about to start: its expected run is longer than the time left before its deadline.

    A job expected to outlast even its whole timeout was admitted on the benefit of the doubt (above); it is
    dropped only when its run is expected past SLACK x the time left.

    >>> too_late_to_start(2.0, 1.0, 30.0), too_late_to_start(2.0, 3.0, 30.0), too_late_to_start(None, 0.1, 30.0)
    (True, False, False)
    >>> too_late_to_start(40.0, 25.0, 30.0), too_late_to_start(40.0, 15.0, 30.0)
    (False, True)
    """
    if run is None:
        return False
    return run > (SLACK * remaining if run > timeout else remaining)


def retry_after_seconds(wait: float, run: float, timeout: float) -> int:
    """Whole seconds until the queue ahead should have drained enough for the job to fit in its timeout.

    >>> retry_after_seconds(40.0, 1.0, 30.0), retry_after_seconds(0.5, 1.0, 1.0)
    (11, 1)
    """
    return max(1, math.ceil(wait + run - timeout))
