"""Run shards of work on Ray actors that each hold one worker (a model loaded once), results in shard order.

A worker factory is a small picklable object (a model name and options, never weights): each actor calls it
once, so a model crosses the network as its name and loads on the node that runs it. The factory returns a
`ShardWorker`: `identity` (what its results depend on, e.g. the weights' fingerprint) and a call that turns
one shard into its result. Every result comes back with the identity of the worker that made it, and one
that differs from the pool's first is refused, so a node holding other weights cannot slip into a run.

Failure: a shard whose actor dies (killed, out of memory, its node gone) runs again on a fresh actor, at
most `max_retries` times; an exception raised by the worker's own code is a bug or bad input, not retried,
and reaches the caller as it was raised. Nothing here writes anything: callers commit only once every shard
is back, so a run that fails leaves what was there before.

Shortcut: one shard in flight per actor. Shards take seconds, so the round trip a second one in flight would
hide is noise, and a dead actor takes only one shard down with it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from bicross.cluster.runtime import ClusterConfig, ray_session, worker_count, worker_resources
from bicross.errors import BicrossError, IndexMismatch, InvalidInput

__all__ = ["ShardPool", "ShardWorker", "map_shards", "plan_shards"]


class ShardWorker(Protocol):
    """What a factory builds inside an actor: an identity and a function of one shard."""

    identity: str

    def __call__(self, shard: Any) -> Any: ...


def plan_shards(count: int, shard_size: int) -> list[range]:
    """Consecutive ranges of at most `shard_size` items covering `range(count)`.

    >>> plan_shards(5, 2)
    [range(0, 2), range(2, 4), range(4, 5)]
    >>> plan_shards(0, 2)
    []
    """
    return [range(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


class _ShardActor:
    """The actor's body: build the worker once, then run shards on it."""

    def __init__(self, factory: Callable[[], ShardWorker], before_shard: Callable[[int], None] | None) -> None:
        self._worker = factory()
        self._before_shard = before_shard

    def identity(self) -> str:
        return self._worker.identity

    def run(self, number: int, shard: Any) -> tuple[str, Any]:
        if self._before_shard is not None:
            self._before_shard(number)
        return self._worker.identity, self._worker(shard)


class ShardPool:
    """Actors that each built one worker with `factory`; `imap` runs shards on them. Close it (or use `with`)."""

    def __init__(self, factory: Callable[[], ShardWorker], config: ClusterConfig | None = None,
                 shards: int | None = None) -> None:
        """Start the actors and wait until each has built its worker (a model that cannot load fails here).

        `shards`: how many shards the pool will run, if known, so no more actors start than there is work for.
        """
        config = config or ClusterConfig()
        self.config, self._factory, self.restarts = config, factory, 0
        self._actors: list[Any] = []
        self._session = contextlib.ExitStack()  # connects for the pool's life if `config.address` asks
        local_cpus = None if config.workers is None else int(config.workers * config.cpus_per_worker + 0.999)
        try:
            self._ray = self._session.enter_context(ray_session(config.address, local_cpus))
            self.identity: str = self._start_actors(shards)
        except BaseException:
            self.close()
            raise

    def _start_actors(self, shards: int | None) -> str:
        """Start the actors; return the identity they all report."""
        ray, config = self._ray, self.config
        resources = ray.cluster_resources()
        cpus, gpus = worker_resources(config, resources)
        self._actor_class = ray.remote(_ShardActor).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0,
                                                            max_task_retries=0)
        count = worker_count(config, resources, shards if shards is not None else config.workers or 1 << 30)
        have_cpus, have_gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if count * cpus > have_cpus or count * gpus > have_gpus:  # Ray would wait for them forever
            raise InvalidInput(f"{count} workers of {cpus:g} CPU and {gpus:g} GPU each do not fit the cluster "
                               f"({have_cpus:g} CPUs, {have_gpus:g} GPUs): ask for fewer workers (--ray-workers) "
                               "or less per worker")
        self._actors = [self._start() for _ in range(count)]
        try:
            identities = ray.get([actor.identity.remote() for actor in self._actors])
        except ray.exceptions.RayActorError as error:
            raise BicrossError(f"the Ray workers could not build their model: {error}") from error
        if len(set(identities)) != 1:
            raise IndexMismatch(f"the Ray workers loaded different weights ({sorted(set(identities))}): every node must "
                                "resolve the model name to the same files")
        return identities[0]

    @property
    def workers(self) -> int:
        """Actors in the pool."""
        return len(self._actors)

    def _start(self) -> Any:
        return self._actor_class.remote(self._factory, self.config.before_shard)

    def _replace(self, slot: int) -> None:
        """A fresh actor in place of one that died (killed again in case it only hangs)."""
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - an actor that is already gone cannot be killed; that is the point
            pass
        self._actors[slot] = self._start()
        self.restarts += 1

    def imap(self, shards: Sequence[Any]) -> Iterator[Any]:
        """Each shard's result, in shard order, as soon as it and all before it are done."""
        ray = self._ray
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.ObjectLostError)
        pending = deque(range(len(shards)))
        attempts = [0] * len(shards)
        idle = deque(range(len(self._actors)))
        in_flight: dict[Any, tuple[int, int]] = {}  # object ref -> (shard, actor slot)
        done: dict[int, Any] = {}
        next_out = 0
        while next_out < len(shards):
            while idle and pending:
                slot, number = idle.popleft(), pending.popleft()
                in_flight[self._actors[slot].run.remote(number, shards[number])] = (number, slot)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            number, slot = in_flight.pop(ready[0])
            try:
                identity, result = ray.get(ready[0])
            except lost as error:
                attempts[number] += 1
                if attempts[number] > self.config.max_retries:
                    raise BicrossError(f"shard {number} failed {attempts[number]} times (its worker died: {error}); "
                                       "check the workers' memory and logs, then run again") from error
                self._replace(slot)
                pending.appendleft(number)
            else:
                if identity != self.identity:
                    raise IndexMismatch(f"a Ray worker computed shard {number} with {identity}, not {self.identity}: "
                                        "every node must resolve the model name to the same files")
                done[number] = result
            idle.append(slot)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1

    def map(self, shards: Sequence[Any]) -> list[Any]:
        """Every shard's result, in shard order."""
        return list(self.imap(shards))

    def close(self) -> None:
        """Stop the actors (their models go with them)."""
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        self._session.close()

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def map_shards(factory: Callable[[], ShardWorker], shards: Sequence[Any],
               config: ClusterConfig | None = None) -> list[Any]:
    """Run every shard on a pool of actors built for this call; results in shard order (see `ShardPool`)."""
    if not shards:
        return []
    with ShardPool(factory, config, len(shards)) as pool:
        return pool.map(shards)
