"""Hard-negative mining on Ray: each actor opens the collection, loads the encoder (and the guard's teacher),
and mines a shard of the queries; the driver appends the shards' lines to the output in query order.

Shards hold whole batches of `MiningConfig.batch_queries` queries, so every query is encoded in the same
batch it would be in one process, and the output equals `mine_hard_negatives`'s line for line. Resuming is
the single-process rule: queries already complete in `out` are skipped, and a shard's lines are appended
(and flushed) only once the whole shard is back, so a kill loses at most the shards in flight.

The collection folder must be readable at the same path on every node (a shared filesystem, or one
machine): workers open it themselves rather than receive its vectors.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bicross.cluster.encoding import EncoderSpec
from bicross.cluster.labels import CrossEncoderSpec
from bicross.cluster.runtime import ClusterConfig, for_workers
from bicross.cluster.shards import ShardPool, plan_shards
from bicross.training.data import JudgedQuery
from bicross.training.mining import MiningConfig, MiningReport, mine_hard_negatives

__all__ = ["mine_hard_negatives_on_ray"]


class _MiningWorker:
    def __init__(self, collection, encoder, teacher, config: MiningConfig) -> None:
        self.collection, self.encoder, self.teacher, self.config = collection, encoder, teacher, config
        manifest = hashlib.blake2b(json.dumps(collection.manifest, sort_keys=True).encode(), digest_size=8).hexdigest()
        teacher_identity = "no teacher" if teacher is None else teacher.identity
        self.identity = f"collection {manifest}|{encoder.fingerprint}|{teacher_identity}"

    def __call__(self, queries: list[JudgedQuery]) -> tuple[str, MiningReport]:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "mined.jsonl"
            report = mine_hard_negatives(self.collection, self.encoder, queries, out, self.config, self.teacher)
            return out.read_text(encoding="utf-8"), report


@dataclass(frozen=True)
class _MiningWorkerFactory:
    collection: str
    encoder: EncoderSpec
    teacher: CrossEncoderSpec | None
    config: MiningConfig
    threads: int

    def __call__(self) -> _MiningWorker:
        from bicross.index.collection import Collection

        collection = Collection.open(self.collection)
        encoder = self.encoder.load(self.threads)
        collection.check_encoder(encoder)
        teacher = None if self.teacher is None else self.teacher.load(self.threads)
        return _MiningWorker(collection, encoder, teacher, self.config)


def mine_hard_negatives_on_ray(collection: str | Path, encoder: EncoderSpec, queries: Sequence[JudgedQuery],
                               out: str | Path, config: MiningConfig | None = None,
                               teacher: CrossEncoderSpec | None = None, cluster: ClusterConfig | None = None,
                               show_progress: bool = False) -> MiningReport:
    """`mine_hard_negatives` over the collection folder `collection`, its queries in shards on Ray actors.

    `encoder` and `teacher` say how each worker loads the models; `cluster.shard_size` is rounded down to
    whole query batches (at least one).
    """
    from bicross.progress import progress_task
    from bicross.training.mining import _written_queries  # the resume rule is the single-process one

    config, cluster = config or MiningConfig(), cluster or ClusterConfig()
    out = Path(out)
    done = _written_queries(out, queries)
    todo = [query for query in queries if query.query_id not in done]
    per_shard = max(1, cluster.shard_size // config.batch_queries) * config.batch_queries
    shards = [todo[r.start:r.stop] for r in plan_shards(len(todo), per_shard)]
    examples = candidates = dropped = 0
    if shards:
        factory = _MiningWorkerFactory(for_workers(str(collection)), encoder, teacher, config, cluster.threads)
        with ShardPool(factory, cluster, len(shards)) as pool, out.open("a", encoding="utf-8") as handle, \
                progress_task("mining", len(todo), show_progress) as advance:
            for shard, (text, report) in zip(shards, pool.imap(shards), strict=True):
                handle.write(text)
                handle.flush()  # whole shards only: a kill here leaves complete queries (a cut last one is mined again)
                examples, candidates = examples + report.examples, candidates + report.candidates
                dropped += report.dropped_by_guard
                advance(len(shard))
    return MiningReport(examples, len(todo), len(done), candidates, dropped)
