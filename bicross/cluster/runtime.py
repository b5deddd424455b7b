"""Reach Ray: import it lazily (the `ray` extra), start a local instance or join a cluster, and say what a run gets.

`ClusterConfig` holds every knob of a sharded run (workers, shard size, resources per worker, retries), so the
functions of this room take one config rather than a long tail of arguments. Workers default to what the
cluster offers: one per GPU where there are GPUs, else one per `cpus_per_worker` CPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bicross.errors import InvalidInput, MissingExtra

__all__ = ["ClusterConfig", "for_workers", "import_ray", "ray_session", "worker_count", "worker_resources"]


@dataclass(frozen=True)
class ClusterConfig:
    """How a sharded run uses the cluster.

    Args:
        address: "local" (start a Ray instance here for the run), a cluster address (`auto`, `HOST:6379`,
            `ray://HOST:10001`), or None: the connection the caller opened (`ray.init`, `ray_session`).
        workers: Ray actors (each with one model copy); None: as many as the cluster's resources allow.
        shard_size: items (texts, pairs, queries) per task; a killed worker costs at most one shard's work.
        cpus_per_worker: CPUs Ray reserves per actor, also its torch threads.
        gpus_per_worker: GPUs per actor; None: 1 where the cluster has GPUs, else 0.
        max_retries: times one shard is run again on a fresh actor after its worker died; then the run fails.
        before_shard: called in the worker with the shard number before each shard (tests use it to kill a
            worker); must be picklable.
    """

    address: str | None = None
    workers: int | None = None
    shard_size: int = 512
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    max_retries: int = 3
    before_shard: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InvalidInput(f"workers must be positive, got {self.workers}; leave it unset to use the whole cluster")
        if self.shard_size < 1:
            raise InvalidInput(f"shard_size must be positive, got {self.shard_size}")
        if self.cpus_per_worker <= 0 or (self.gpus_per_worker is not None and self.gpus_per_worker < 0):
            raise InvalidInput("cpus_per_worker must be positive and gpus_per_worker at least 0")
        if self.max_retries < 0:
            raise InvalidInput(f"max_retries must be 0 or more, got {self.max_retries}")

    @property
    def threads(self) -> int:
        """Torch threads per worker: its CPU reservation, at least one."""
        return max(1, int(self.cpus_per_worker))


def import_ray() -> Any:
    """The `ray` module, or MissingExtra naming the extra that installs it."""
    try:
        import ray
    except ImportError as error:
        raise MissingExtra("ray", "ray") from error
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[Any]:
    """Ray for the block: "local" starts an instance here (`num_cpus` CPUs, `num_gpus` GPUs; default: all it
    finds), anything else is an address (`auto`, `HOST:6379`, `ray://HOST:10001`); a connection already open
    is used as it is (and left open), and None asks for one. A connection this call made is shut down on exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is None:
        raise InvalidInput("Ray is not connected: give an address ('local', HOST:6379, ray://HOST:10001) or call "
                           "ray.init() first")
    if not address:
        raise InvalidInput("--ray needs 'local' or a cluster address such as HOST:6379 or ray://HOST:10001")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address == "local":
        options.update(num_cpus=num_cpus, num_gpus=num_gpus)
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except ConnectionError as error:
        raise InvalidInput(f"cannot reach a Ray cluster at {address!r} ({error}); start one with `ray start --head` "
                           "or use --ray local") from error
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_resources(config: ClusterConfig, cluster: dict[str, float]) -> tuple[float, float]:
    """(CPUs, GPUs) each actor asks for: the config's, GPUs defaulting to 1 where the cluster has any.

    >>> worker_resources(ClusterConfig(), {"CPU": 8.0}), worker_resources(ClusterConfig(), {"CPU": 8.0, "GPU": 2.0})
    ((1.0, 0.0), (1.0, 1.0))
    """
    gpus = config.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0.0) >= 1 else 0.0
    return config.cpus_per_worker, gpus


def worker_count(config: ClusterConfig, cluster: dict[str, float], shards: int) -> int:
    """Actors to start: the config's, else as many as the cluster's CPUs (or GPUs) hold; never more than shards.

    >>> worker_count(ClusterConfig(), {"CPU": 4.0}, 10), worker_count(ClusterConfig(), {"CPU": 4.0}, 3)
    (4, 3)
    >>> worker_count(ClusterConfig(cpus_per_worker=2), {"CPU": 4.0, "GPU": 1.0}, 10)
    1
    """
    if config.workers is not None:
        wanted = config.workers
    else:
        cpus, gpus = worker_resources(config, cluster)
        fits = int(cluster.get("CPU", 0.0) // cpus)
        if gpus > 0:
            fits = min(fits, int(cluster.get("GPU", 0.0) // gpus))
        wanted = max(1, fits)
    return max(1, min(wanted, shards))


def for_workers(name_or_path: str) -> str:
    """A model or folder name as Ray workers must see it: an existing local path made absolute (actors do not
    start in the driver's working directory), anything else (a hub id) unchanged."""
    from pathlib import Path

    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else name_or_path
