"""One model worker per process: a bounded admission queue, deadlines, and micro-batches of embeddings.

Every request that needs a model becomes a job on one worker thread (one model copy; on a CPU, two model
calls at once would only share the cores, and tokenizers are not safe to call from two threads at once).
The event loop never runs a model, so /health keeps answering while a search runs.

- Admission: at most `max_queue` jobs are admitted (waiting or running); one more raises QueueFull at
  once, before any work is done (the app answers 429 with Retry-After). Below that bound a job is also
  refused (Overloaded, a QueueFull) when the expected wait ahead of it plus its own expected run would
  pass its timeout, and a job about to start with less time left than its expected run is dropped
  (admission.py: moving averages of measured run times per kind of job).
- Deadlines: a job carries its caller's deadline. If the caller stops waiting (timeout, disconnect), its
  future is cancelled; the worker skips cancelled or expired jobs before they reach the model, and a
  started job can no longer be cancelled (`Future.set_running_or_notify_cancel` decides, atomically).
- Background work (shadow A/B searches, shadow.py): at most `max_background` jobs wait, one more is
  refused (`submit_background` returns False, the caller counts it skipped); the worker runs one only
  when no request is waiting, so a request only ever waits for a background job already running.
- Micro-batching: jobs with the same `batch_key` that are waiting together (or arrive within
  `batch_wait_seconds` of the first) are run by one call, up to `max_batch_tokens` estimated tokens. A job
  with another key ends the batch, so a long request is never starved by a stream of short ones. Callers
  give no key for models whose outputs depend on their batch (dynamically quantized ONNX): their texts
  are never mixed across requests.

Shortcut: tokens are estimated as characters / 4 (tokenizing here would mean a second tokenizer call on
another thread); the estimate only shapes batches, never results.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from bicross.service.admission import (
    MARGIN,
    RunTimes,
    combined_spread,
    expected_wait,
    retry_after_seconds,
    too_late_to_start,
    would_time_out,
)

__all__ = ["DeadlineExceeded", "ModelWorker", "Overloaded", "QueueFull", "ShuttingDown", "TooSlow", "estimate_tokens"]


class QueueFull(Exception):
    """The admission queue is full: answer 429 with `Retry-After: retry_after` seconds."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"the server is busy: {limit} model requests are already queued or running (max_queue); "
                         f"retry after {retry_after} s")
        self.retry_after = retry_after


class Overloaded(QueueFull):
    """The work queued ahead would keep this request past its timeout: 429 at once, not a 504 later."""

    def __init__(self, wait: float, run: float, timeout: float, margin: float = 0.0) -> None:
        retry_after = retry_after_seconds(wait + margin, run, timeout)
        Exception.__init__(self, f"the server is busy: the work queued ahead is expected to take {wait:.1f} s and "
                           f"this request {run:.2f} s (+{margin:.1f} s margin for slower runs), past its timeout of "
                           f"{timeout:g} s; retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The caller's deadline passed before its work finished; work not yet started was dropped."""


class TooSlow(DeadlineExceeded):
    """Nothing is ahead, but this request alone is expected to take far longer than its timeout: 504 at once."""

    def __init__(self, run: float, timeout: float) -> None:
        super().__init__(f"this request is expected to take {run:.1f} s here, more than twice its timeout of "
                         f"{timeout:g} s, so it was not started; give it a longer timeout or send less work per request")


class ShuttingDown(Exception):
    """The server is stopping: work admitted but not started is refused (503 with Retry-After)."""


def estimate_tokens(texts: Sequence[str]) -> int:
    """A rough token count for batch shaping: about four characters per token, plus [CLS] and [SEP].

    >>> estimate_tokens(["abcdefgh", "ab"])
    6
    """
    return sum(len(text) // 4 + 2 for text in texts)


@dataclass
class _Job:
    future: Future
    deadline: float
    run: Callable[[], Any] | None = None  # a job of its own
    batch_key: Hashable | None = None  # batchable jobs: merged with equal keys, run by `run_batch`
    item: Any = None
    tokens: int = 0
    run_batch: Callable[[list[Any]], list[Any]] | None = None
    abandoned: str = field(default="")  # why the caller stopped waiting ("timeout", "disconnected")
    kind: str = "job"  # jobs of one kind share a run-time estimate, per unit of work
    timeout: float = 0.0  # seconds the caller gave it (deadline = admitted at + timeout)
    units: float = 1.0  # e.g. queries in a search, pairs to rerank, estimated tokens to embed


class ModelWorker:
    """The thread that runs every model call, behind a bounded queue.

    `on_drop(reason)`, `on_batch(kind, size)` and `on_queue(length)` report to metrics; `model_lock` is held
    around every call, so other threads (a document write embedding its texts) can share the model safely.
    """

    def __init__(self, max_queue: int, retry_after: int, batch_wait_seconds: float, max_batch_tokens: int, *,
                 on_drop: Callable[[str], None] = lambda reason: None,
                 on_batch: Callable[[str, int], None] = lambda kind, size: None,
                 on_queue: Callable[[int], None] = lambda length: None,
                 clock: Callable[[], float] = time.monotonic, max_background: int = 0) -> None:
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.batch_wait_seconds = batch_wait_seconds
        self.max_batch_tokens = max_batch_tokens
        self.model_lock = threading.Lock()
        self._on_drop, self._on_batch, self._on_queue = on_drop, on_batch, on_queue
        self._clock = clock
        self._jobs: deque[_Job] = deque()
        self.max_background = max_background
        self._background: deque[Callable[[], None]] = deque()
        self._ready = threading.Condition()
        self._admitted = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.run_times = RunTimes()
        self._running: tuple[float, float | None] | None = None  # (started at, expected seconds) of the model call
        self._running_spread = 0.0

    @property
    def admitted(self) -> int:
        """Jobs waiting or running now."""
        return self._admitted

    @property
    def waiting(self) -> int:
        """Jobs admitted and not yet taken by the worker."""
        return len(self._jobs)

    @property
    def background_waiting(self) -> int:
        """Background jobs queued and not yet started."""
        return len(self._background)

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="bicross-model-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the running job, refuse the waiting ones, end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, run: Callable[[], Any], timeout: float, kind: str = "job", units: float = 1.0) -> Future:
        """Admit a job of its own; raise QueueFull if `max_queue` jobs are already admitted, Overloaded if the
        work ahead would keep it past `timeout`. `kind` and `units` size its expected run time."""
        return self._admit(_Job(Future(), self._clock() + timeout, run=run, kind=kind, units=units, timeout=timeout))

    def submit_batchable(self, key: Hashable | None, item: Any, tokens: int, run_batch: Callable[[list[Any]], list[Any]],
                         timeout: float) -> Future:
        """Admit a job that may share one `run_batch(items)` call with waiting jobs of the same `key`.

        `run_batch` returns one result per item, in order. `key` None: never merged (run_batch([item]) alone).
        Its expected run time is estimated per token, for the kind named by the key's first element.
        """
        kind = str(key[0] if isinstance(key, tuple) else key or "unbatched")
        job = _Job(Future(), self._clock() + timeout, batch_key=key, item=item, tokens=tokens, run_batch=run_batch,
                   kind=kind, units=max(tokens, 1), timeout=timeout)
        return self._admit(job)

    def submit_background(self, run: Callable[[], None]) -> bool:
        """Queue `run` to go when no request is waiting; False (not queued) if `max_background` already wait.

        `run` reports its own outcome (its exceptions are swallowed: background work never stops the worker).
        """
        with self._ready:
            if self._stopping or len(self._background) >= self.max_background:
                return False
            self._background.append(run)
            self._ready.notify()
        return True

    async def wait(self, future: Future, timeout: float, disconnected: Awaitable[Any] | None = None) -> Any:
        """The job's result, or DeadlineExceeded after `timeout` s (or once `disconnected` completes).

        Either way the job is cancelled: if the worker has not taken it yet, it never runs.
        """
        waited = asyncio.wrap_future(future)
        watcher = asyncio.ensure_future(disconnected) if disconnected is not None else None
        try:
            pending = {waited} if watcher is None else {waited, watcher}
            done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if waited in done:
                if waited.cancelled():  # the worker dropped it unrun: its deadline passed while it waited
                    raise DeadlineExceeded(f"no result within the request's timeout of {timeout:g} s")
                return waited.result()
            self._abandon(future, "disconnected" if watcher is not None and watcher in done else "timeout")
            raise DeadlineExceeded(f"no result within the request's timeout of {timeout:g} s")
        finally:
            if watcher is not None:
                watcher.cancel()
            if not waited.done():
                waited.cancel()

    def _abandon(self, future: Future, reason: str) -> None:
        with self._ready:
            for job in self._jobs:
                if job.future is future:
                    job.abandoned = reason
        future.cancel()

    def _admit(self, job: _Job) -> Future:
        with self._ready:
            if self._stopping:
                raise ShuttingDown("the server is shutting down; retry on another instance or once it is back")
            if self._admitted >= self.max_queue:
                raise QueueFull(self.max_queue, self.retry_after)
            run = self.run_times.expected(job.kind, job.units)
            wait, spread = self._expected_wait(job)
            if run is not None and would_time_out(wait, run, job.timeout, spread):
                raise TooSlow(run, job.timeout) if wait <= 0 else Overloaded(wait, run, job.timeout, MARGIN * spread)
            self._admitted += 1
            self._jobs.append(job)
            self._on_queue(self._admitted)
            self._ready.notify()
        return job.future

    def _expected_wait(self, job: _Job) -> tuple[float, float]:
        """Under `_ready`: expected seconds until `job`, admitted now, would start, and the deviation of that
        wait plus its own run (the running job's included whole: a cautious shortcut)."""
        times = self.run_times
        queued = [times.expected(waiting.kind, waiting.units) for waiting in self._jobs]
        started, expected = self._running if self._running is not None else (0.0, None)
        spreads = [times.spread(waiting.kind, waiting.units) for waiting in self._jobs]
        spreads.append(times.spread(job.kind, job.units))
        if self._running is not None:
            spreads.append(self._running_spread)
        return expected_wait(queued, expected, self._clock() - started), combined_spread(spreads)

    def _finish(self, count: int) -> None:
        with self._ready:
            self._admitted -= count
            self._on_queue(self._admitted)

    def _loop(self) -> None:
        while True:
            background: Callable[[], None] | None = None
            with self._ready:
                while not self._jobs and not self._background and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    refused = list(self._jobs)
                    self._jobs.clear()
                    self._background.clear()
                    break
                if self._jobs:
                    first = self._jobs.popleft()
                else:  # requests first: background work runs only when none waits
                    background = self._background.popleft()
            if background is not None:
                self._run_background(background)
            elif first.batch_key is None:
                self._run([first])
            else:
                self._run(self._gather(first))
        for job in refused:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown("the server is shutting down before this request could run"))
        self._finish(len(refused))

    def _run_background(self, run: Callable[[], None]) -> None:
        """Run one background job under the model lock (not the queue's: requests keep being admitted)."""
        try:
            with self.model_lock:
                run()
        except Exception:  # noqa: BLE001, S110 - the job reports its own failures; the worker goes on
            pass

    def _gather(self, first: _Job) -> list[_Job]:
        """`first` plus the jobs behind it with the same key, waiting up to batch_wait_seconds for more."""
        batch, tokens = [first], first.tokens
        until = self._clock() + self.batch_wait_seconds
        with self._ready:
            while tokens < self.max_batch_tokens and not self._stopping:
                if not self._jobs:
                    remaining = until - self._clock()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
                    continue
                following = self._jobs[0]
                if following.batch_key != first.batch_key or tokens + following.tokens > self.max_batch_tokens:
                    break  # first come, first served: a different job ends the batch
                batch.append(self._jobs.popleft())
                tokens += following.tokens
        return batch

    def _run(self, jobs: list[_Job]) -> None:
        """Run the jobs still wanted (one call for a batch); drop the cancelled or expired ones unrun."""
        live = [job for job in jobs if self._start(job)]
        try:
            if not live:
                return
            with self.model_lock:
                results = self._call(live)
            for job, result in zip(live, results, strict=True):
                job.future.set_result(result)
        except BaseException as error:  # noqa: BLE001 - handed to the callers, who turn it into a response
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
        finally:
            with self._ready:
                self._running = None
            self._finish(len(jobs))

    def _start(self, job: _Job) -> bool:
        """Mark the job running, or drop it: cancelled, expired, or sure to expire before its run could end."""
        now = self._clock()
        expected = self.run_times.expected(job.kind, job.units)
        if not job.future.done():
            if now >= job.deadline:
                job.abandoned = job.abandoned or "timeout"
                job.future.cancel()
            elif too_late_to_start(expected, job.deadline - now, job.timeout):
                job.abandoned = "would_time_out"
                job.future.cancel()
        if job.future.set_running_or_notify_cancel():
            return True
        self._on_drop(job.abandoned or "cancelled")
        return False

    def _call(self, live: list[_Job]) -> list[Any]:
        """Run the live jobs in one model call (under the model lock); measure it for the estimates."""
        units = sum(job.units for job in live)
        started = self._clock()
        with self._ready:
            self._running = (started, self.run_times.expected(live[0].kind, units))
            self._running_spread = self.run_times.spread(live[0].kind, units)
        if live[0].run is not None:
            results = [live[0].run()]
        else:
            results = live[0].run_batch([job.item for job in live])  # type: ignore[misc]
            self._on_batch(live[0].kind, len(live))
        with self._ready:  # successful runs only: a quick failure says nothing of the cost
            self.run_times.observe(live[0].kind, self._clock() - started, units)
        return results
