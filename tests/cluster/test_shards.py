"""ShardPool on a local Ray: results in shard order, a killed worker's shard rerun, worker errors passed on."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from ray_faults import Refuses, Squares, die_always, die_once

from bicross.cluster import ClusterConfig, ShardPool, map_shards
from bicross.cluster.shards import plan_shards
from bicross.errors import BicrossError, InvalidInput

pytestmark = pytest.mark.usefixtures("local_ray")

NUMBERS = list(range(23))
SHARDS = [NUMBERS[r.start:r.stop] for r in plan_shards(len(NUMBERS), 4)]
SQUARES = [[value * value for value in shard] for shard in SHARDS]


def test_a_killed_worker_s_shard_runs_again_and_results_keep_shard_order(tmp_path: Path) -> None:
    marker = tmp_path / "died"
    config = ClusterConfig(workers=2, before_shard=functools.partial(die_once, marker))
    with ShardPool(Squares(), config, len(SHARDS)) as pool:
        assert (pool.workers, pool.identity) == (2, "squares")
        assert pool.map(SHARDS) == SQUARES
        assert marker.is_file() and pool.restarts == 1  # one worker really died, and was replaced
        assert pool.map(SHARDS[:2]) == SQUARES[:2]  # the pool keeps working after a replacement


def test_a_shard_out_of_retries_fails_the_run() -> None:
    config = ClusterConfig(workers=1, max_retries=1, before_shard=die_always)
    with pytest.raises(BicrossError, match="shard 0 failed 2 times"):
        map_shards(Squares(), SHARDS, config)


def test_a_worker_s_own_error_reaches_the_caller_unretried() -> None:
    with pytest.raises(InvalidInput, match="is refused"):
        map_shards(Refuses(), SHARDS, ClusterConfig(workers=1))
