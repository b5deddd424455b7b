"""Admission by expected wait: refused at once when the work ahead would keep a job past its timeout, and
dropped unrun when it could no longer finish in time.

The worker's clock is a fake the test moves (a model call "takes" the seconds it adds), so no outcome
depends on the machine's speed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving import WAIT, wait_until

from bicross.service.batching import DeadlineExceeded, ModelWorker, Overloaded, QueueFull, TooSlow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def taking(self, seconds: float, result: object = "done"):
        """A job whose model call takes `seconds` of fake time."""
        def run() -> object:
            self.now += seconds
            return result
        return run


def measured(worker: ModelWorker, kind: str, per_unit: float, deviation: float = 0.0) -> None:
    """Set a kind's estimates as if measured (deviation 0 unless given: the arithmetic below stays exact)."""
    worker.run_times.per_unit[kind], worker.run_times.deviation[kind] = per_unit, deviation


def worker_with(clock: FakeClock, **options) -> tuple[ModelWorker, list[str]]:
    drops: list[str] = []
    worker = ModelWorker(options.pop("max_queue", 64), 1, 0.0, 1024, clock=clock, on_drop=drops.append, **options)
    return worker, drops


def test_run_times_are_measured_per_kind_and_unit_from_successful_model_calls():
    clock = FakeClock()
    worker, _ = worker_with(clock)
    worker.start()
    try:
        assert worker.submit(clock.taking(4.0), WAIT, "search", units=2).result(WAIT) == "done"
        assert worker.run_times.expected("search", 1) == 2.0
        assert worker.run_times.expected("rerank", 1) is None  # another kind is not guessed from it

        def failing() -> None:
            clock.now += 50.0
            raise ValueError("bad input")

        with pytest.raises(ValueError, match="bad input"):
            worker.submit(failing, WAIT, "search").result(WAIT)
        assert worker.run_times.expected("search", 1) == 2.0  # a failure is not a cost measurement
    finally:
        worker.stop(WAIT)


def test_a_job_that_could_not_finish_within_its_timeout_behind_the_queue_is_refused_at_once():
    clock = FakeClock()
    worker, _ = worker_with(clock)  # not started: admitted jobs just wait
    measured(worker, "search", 1.0)
    for _ in range(30):  # the 30th waits 29 s and runs 1 s: just within 30 s
        worker.submit(clock.taking(1.0), 30.0, "search")
    with pytest.raises(Overloaded, match=r"expected to take 30.0 s .* past its timeout of 30 s") as refused:
        worker.submit(clock.taking(1.0), 30.0, "search")
    assert isinstance(refused.value, QueueFull) and refused.value.retry_after == 1
    assert worker.admitted == 30  # the refused job took no place in the queue
    worker.submit(clock.taking(1.0), 60.0, "search")  # a caller who waits longer is still admitted
    worker.submit(lambda: None, 30.0, "unmeasured")  # and an unmeasured kind always is (its cost counts 0)


def test_the_running_job_counts_with_what_is_left_of_its_expected_time():
    clock = FakeClock()
    worker, _ = worker_with(clock)
    measured(worker, "search", 10.0)
    entered, release = threading.Event(), threading.Event()

    def held() -> str:
        entered.set()
        assert release.wait(WAIT)
        clock.now += 10.0
        return "held"

    worker.start()
    try:
        running = worker.submit(held, WAIT, "search")
        assert entered.wait(WAIT)
        clock.now += 4.0  # 6 s left of its expected 10 s
        worker.submit(clock.taking(10.0), 30.0, "search")  # waits 6, runs 10
        with pytest.raises(Overloaded, match="expected to take 16.0 s"):
            worker.submit(clock.taking(10.0), 25.0, "search")
        release.set()
        assert running.result(WAIT) == "held"
    finally:
        worker.stop(WAIT)


def test_a_job_expected_to_outlast_its_timeout_gets_a_try_alone_unless_far_past_it():
    clock = FakeClock()
    worker, drops = worker_with(clock)
    measured(worker, "rerank", 1.0)
    worker.start()
    try:  # 40 pairs at 1 s each against a 30 s timeout: the estimate may be wrong; it runs
        assert worker.submit(clock.taking(5.0), 30.0, "rerank", units=40).result(WAIT) == "done"
        measured(worker, "rerank", 1.0)  # (that run was faster than expected and moved the average)
        with pytest.raises(TooSlow, match="expected to take 70.0 s here, more than twice its timeout of 30 s"):
            worker.submit(clock.taking(5.0), 30.0, "rerank", units=70)  # hopeless: refused, not started
        assert drops == [] and worker.admitted == 0 and issubclass(TooSlow, DeadlineExceeded)  # a 504
    finally:
        worker.stop(WAIT)


def test_a_job_with_less_time_left_than_its_expected_run_is_dropped_unrun():
    clock = FakeClock()
    worker, drops = worker_with(clock)
    measured(worker, "search", 2.0)
    ran: list[str] = []
    late = worker.submit(lambda: ran.append("late"), 30.0, "search")
    in_time = worker.submit(lambda: ran.append("in time"), 60.0, "search")
    clock.now += 29.0  # 1 s left for a 2 s job; the other has 31 s left
    worker.start()
    try:
        assert in_time.result(WAIT) is None
        assert late.cancelled() and ran == ["in time"]
        wait_until(lambda: drops == ["would_time_out"], "the drop to be reported")
        assert worker.admitted == 0
    finally:
        worker.stop(WAIT)


def test_batched_jobs_are_estimated_per_token_of_their_kind():
    clock = FakeClock()
    worker, _ = worker_with(clock)
    worker.start()
    try:
        run_batch = lambda items: (clock.__setattr__("now", clock.now + 0.5), [len(i) for i in items])[1]  # noqa: E731
        assert worker.submit_batchable(("embeddings", 1), "text", 100, run_batch, WAIT).result(WAIT) == 4
        assert worker.run_times.expected("embeddings", 100) == pytest.approx(0.5)
    finally:
        worker.stop(WAIT)


def test_overloaded_is_a_429_with_retry_after_from_the_expected_wait(serve, tiny_collection):
    with serve(tiny_collection) as served, ThreadPoolExecutor(1) as pool:
        assert served.client.post("/search", json={"query": "paris"}).status_code == 200  # measures "search+rerank"
        worker = served.service.worker
        assert worker.run_times.expected("search+rerank", 1) is not None
        worker.run_times.per_unit["search+rerank"] = 200.0  # as if each search took 200 s
        served.gate.close()
        held = pool.submit(served.client.post, "/search", json={"query": "capital of germany", "timeout": 250})
        assert served.gate.entered.wait(WAIT)
        # ahead: what is left of the running search's 200 s; this one 200 s more: past a 250 s timeout
        refused = served.client.post("/search", json={"query": "fox", "timeout": 250})
        assert refused.status_code == 429 and "past its timeout of 250 s" in refused.json()["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        short = served.client.post("/search", json={"query": "fox", "timeout": 0.05})
        assert short.status_code == 429  # with work ahead, past its timeout either way
        served.gate.open()
        assert held.result(WAIT).status_code == 200
        wait_until(lambda: worker.admitted == 0, "the held search to finish")
        worker.run_times.per_unit["search+rerank"] = 200.0  # (the held search, fast in fact, moved the average)
        hopeless = served.client.post("/search", json={"query": "museum", "timeout": 50})  # 200 s > 2 x 50 s
        assert hopeless.status_code == 504 and "was not started" in hopeless.json()["detail"]
        assert ["museum"] not in served.gate.calls


def test_a_margin_for_slower_than_average_runs_is_kept_from_their_measured_deviation():
    clock = FakeClock()
    worker, _ = worker_with(clock)
    measured(worker, "search", 1.0, deviation=0.5)
    admitted = 0
    with pytest.raises(Overloaded, match=r"\+\d+\.\d s margin for slower runs"):
        for _ in range(30):
            worker.submit(clock.taking(1.0), 30.0, "search")
            admitted += 1
    # k jobs ahead: wait k, run 1, margin 4 x 0.5 x sqrt(k + 1): the 20th (k = 19) needs 28.9 s, the 21st 30.2
    assert admitted == 20
