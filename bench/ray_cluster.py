"""Encoding on a real two-node Ray cluster on this machine: 1 node vs 2 nodes, overhead and network bytes per document.

    sudo python bench/ray_cluster.py                 # 500 SciFact documents, all-MiniLM-L6-v2, shards of 50
    sudo python bench/ray_cluster.py --quick         # 20 documents: checks the setup and teardown only

Two network namespaces joined by a veth pair (10.77.0.1/24, 10.77.0.2/24) each hold one Ray node with 1 CPU
(`ray start --num-cpus 1`, pinned to its own core with `taskset` unless --no-pin), so the second node's
tasks, results and control traffic cross a real network device, whose byte counters are read before and
after. The driver runs in the head namespace. Measured, each in a fresh process:

- plain: one process, `BiEncoder.encode` with 1 thread (the baseline a Ray run has to beat);
- ray, 1 node: `ShardPool` of 1 actor on the head node (pool start = process + model load; then encoding);
- ray, 2 nodes: the worker node joins; 2 actors, one per node.

and the merge: concatenating the shards and committing the collection (`Collection.build` given the
embeddings), the serial part no worker count shortens. From these it fits the capacity model printed at
the end: throughput(N) = N * r_worker / (1 + overhead), plus merge seconds per document and network bytes
per document, with what they predict for N nodes.

Needs root (ip netns, veth); everything it made (namespaces, Ray processes, temp folders) is removed on exit.
Shortcut: the two "nodes" share the machine's memory bus, disk and page cache; only the network between them
is real, so r_worker is a per-core rate and the fitted overhead a lower bound for nodes across a switch.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH_DIR.parent.parent / "shared" / "data" / "scifact"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
NAMESPACES = ("bxr-head", "bxr-worker")
DEVICES = ("bxr-h", "bxr-w")  # the veth ends, in that order
ADDRESSES = ("10.77.0.1", "10.77.0.2")
PORT = 6390
RAY = Path(sys.executable).with_name("ray")


def _run(*command: str, check: bool = True, **options: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), check=check, capture_output=True, text=True, **options)


def _in(namespace: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def _pinned(core: int | None, command: list[str]) -> list[str]:
    return command if core is None else ["taskset", "-c", str(core), *command]


# ------------------------------------------------------------------------------------------------------
# The network and the nodes


def set_up_network() -> None:
    """Two namespaces, a veth pair between them, an address and loopback in each."""
    for namespace in NAMESPACES:
        _run("ip", "netns", "add", namespace)
    _run("ip", "link", "add", DEVICES[0], "type", "veth", "peer", "name", DEVICES[1])
    for namespace, device, address in zip(NAMESPACES, DEVICES, ADDRESSES, strict=True):
        _run("ip", "link", "set", device, "netns", namespace)
        _run(*_in(namespace, "ip", "addr", "add", f"{address}/24", "dev", device))
        _run(*_in(namespace, "ip", "link", "set", device, "up"))
        _run(*_in(namespace, "ip", "link", "set", "lo", "up"))
    # reachable: a closed port answers "refused" (111) at once, where a broken link would time out
    probe = f"import socket; s = socket.socket(); s.settimeout(5); print(s.connect_ex(('{ADDRESSES[1]}', 9)))"
    answer = _run(*_in(NAMESPACES[0], sys.executable, "-c", probe)).stdout.strip()
    if answer not in ("0", "111"):
        raise RuntimeError(f"{ADDRESSES[1]} is not reachable from {NAMESPACES[0]} (connect_ex: {answer})")


def start_node(index: int, temp_dir: Path, core: int | None, environment: dict[str, str]) -> None:
    """`ray start` in namespace `index` (0: the head), 1 CPU, a small object store."""
    common = ["--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", ADDRESSES[index],
              "--object-store-memory", str(400 * 1024 * 1024), "--disable-usage-stats"]
    if index == 0:
        command = [str(RAY), "start", "--head", "--port", str(PORT), "--include-dashboard", "false",
                   "--temp-dir", str(temp_dir), *common]
    else:
        command = [str(RAY), "start", "--address", f"{ADDRESSES[0]}:{PORT}", *common]
    result = _run(*_in(NAMESPACES[index], *_pinned(core, command)), check=False, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"ray start failed on node {index}:\n{result.stdout}\n{result.stderr}")


def tear_down(environment: dict[str, str]) -> None:
    """Stop the Ray nodes, end the processes left in the namespaces (all started here), delete the namespaces."""
    existing = _run("ip", "netns", "list", check=False).stdout
    for namespace in NAMESPACES:
        if namespace not in existing:
            continue
        _run(*_in(namespace, str(RAY), "stop", "--force"), check=False, env=environment)
        pids = _run("ip", "netns", "pids", namespace, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        _run("ip", "netns", "delete", namespace, check=False)  # takes its veth end, and so the pair, with it


def veth_bytes() -> int:
    """Bytes sent plus received by the head's veth end (every byte between the two nodes)."""
    result = _run("ip", "-n", NAMESPACES[0], "-s", "-j", "link", "show", DEVICES[0])
    stats = json.loads(result.stdout)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


# ------------------------------------------------------------------------------------------------------
# The measured phases (each runs as `python bench/ray_cluster.py --phase NAME`, in the head namespace)


def _texts(options: dict[str, Any]) -> list[str]:
    from bicross.corpus import load_documents

    documents = load_documents(Path(options["data"]) / "corpus.jsonl")[: options["docs"]]
    return [document.full_text for document in documents]


def phase_plain(options: dict[str, Any]) -> dict[str, Any]:
    """One process, 1 thread: load, warm up on one batch, encode."""
    from bicross.encoders import BiEncoder

    texts = _texts(options)
    started = time.perf_counter()
    encoder = BiEncoder.load(MODEL, dtype="float32", threads=1)
    loaded = time.perf_counter()
    encoder.encode(texts[:32], "document")
    warm = time.perf_counter()
    encoder.encode(texts, "document")
    return {"load_s": loaded - started, "encode_s": time.perf_counter() - warm}


def _record_node(log: str, shard: int) -> None:
    """`before_shard` hook: append "shard node-ip" to `log` (a file both nodes see), so the bench knows which
    documents crossed the network. Defined in the script, so Ray pickles it by value."""
    import ray

    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{shard} {ray.util.get_node_ip_address()}\n")


def phase_ray(options: dict[str, Any]) -> dict[str, Any]:
    """A pool of `workers` actors on the running cluster: start time, encode time, bytes, then the merge."""
    import numpy as np
    import ray

    from bicross.cluster import ClusterConfig, EncoderSpec, ShardPool
    from bicross.cluster.encoding import _DocumentWorkerFactory
    from bicross.cluster.shards import plan_shards

    texts = _texts(options)
    ray.init(address=f"{ADDRESSES[0]}:{PORT}", log_to_driver=False)
    nodes = sum(1 for node in ray.nodes() if node["Alive"])
    log = Path(options["log"])
    config = ClusterConfig(workers=options["workers"], shard_size=options["shard_size"], max_retries=0,
                           before_shard=functools.partial(_record_node, str(log)))
    shards = [texts[r.start:r.stop] for r in plan_shards(len(texts), config.shard_size)]
    bytes_before = veth_bytes()
    started = time.perf_counter()
    spec = EncoderSpec(MODEL, dtype="float32")
    with ShardPool(_DocumentWorkerFactory(spec, config.threads), config, len(shards)) as pool:
        workers = pool.workers
        ready = time.perf_counter()
        bytes_ready = veth_bytes()
        pool.map(shards[:pool.workers])  # warm-up: one shard per worker, as the plain run had one batch
        warm = time.perf_counter()
        bytes_warm = veth_bytes()
        log.write_text("")  # count the measured run's shards only
        parts = pool.map(shards)
        done = time.perf_counter()
        bytes_done = veth_bytes()
    remote = [int(line.split()[0]) for line in log.read_text().splitlines() if line.split()[1] == ADDRESSES[1]]
    merged_started = time.perf_counter()
    embeddings = np.concatenate([part.embeddings for part in parts])
    merge_s = time.perf_counter() - merged_started + _commit_seconds(options, embeddings)
    ray.shutdown()
    return {"nodes": nodes, "workers": workers, "start_s": ready - started,
            "encode_s": done - warm, "merge_s": merge_s, "start_bytes": bytes_ready - bytes_before,
            "encode_bytes": bytes_done - bytes_warm, "warmup_bytes": bytes_warm - bytes_ready,
            "remote_docs": sum(len(shards[number]) for number in remote)}


def _commit_seconds(options: dict[str, Any], embeddings: Any) -> float:
    """Seconds `Collection.build` takes once the embeddings exist: BM25, the files, the atomic commit."""
    from bicross.corpus import load_documents
    from bicross.encoders import BiEncoder
    from bicross.encoders.bi_encoder import EncodedTexts
    from bicross.index.collection import Collection

    class Precomputed(BiEncoder):
        def encode(self, texts, kind, show_progress=False):  # noqa: ANN001, ANN202 - the merge input, as gathered
            return EncodedTexts(embeddings, 0) if kind == "document" else super().encode(texts, kind, show_progress)

    local = BiEncoder.load(MODEL, dtype="float32", threads=1)
    encoder = Precomputed(local.query_tower, local.settings, local.document_tower, local.batch_size)
    documents = load_documents(Path(options["data"]) / "corpus.jsonl")[: options["docs"]]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        Collection.build(Path(folder) / "index", documents, encoder)
        return time.perf_counter() - started


PHASES = {"plain": phase_plain, "ray": phase_ray}


def run_phase(name: str, options: dict[str, Any], core: int | None, environment: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--options", json.dumps(options)]
    result = _run(*_in(NAMESPACES[0], *_pinned(core, command)), check=False, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for_nodes(count: int, environment: dict[str, str], timeout_s: float = 180.0) -> None:
    code = (f"import ray; ray.init(address='{ADDRESSES[0]}:{PORT}', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        result = _run(*_in(NAMESPACES[0], sys.executable, "-c", code), check=False, env=environment)
        if result.returncode == 0 and result.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        seen = f"{result.stdout[-500:]}\n{result.stderr[-1500:]}"
        time.sleep(2)
    raise RuntimeError(f"the cluster did not reach {count} nodes in {timeout_s:.0f} s; last check said:\n{seen}")


# ------------------------------------------------------------------------------------------------------
# The report and the capacity model


def capacity_model(docs: int, plain: dict[str, Any], one: dict[str, Any], two: dict[str, Any]) -> dict[str, float]:
    """Fit throughput(N) = N * r_worker / (1 + overhead) to the 1- and 2-node encode rates; merge s/doc; bytes/doc.

    r_worker is the 1-node Ray rate (so it carries Ray's per-task cost on one node); `overhead` is what a
    second node, across the network, costs on top: 2 * r_worker / rate(2) - 1.
    """
    rate_plain = docs / plain["encode_s"]
    r_worker = docs / one["encode_s"]
    rate_two = docs / two["encode_s"]
    return {"rate_plain": rate_plain, "r_worker": r_worker, "rate_two": rate_two,
            "ray_overhead_one_node": rate_plain / r_worker - 1, "overhead": 2 * r_worker / rate_two - 1,
            "merge_s_per_doc": (one["merge_s"] + two["merge_s"]) / 2 / docs,
            "start_s": max(one["start_s"], two["start_s"]), "bytes_per_doc": two["encode_bytes"] / docs,
            "remote_share": two["remote_docs"] / docs,
            "bytes_per_remote_doc": two["encode_bytes"] / max(1, two["remote_docs"])}


def print_report(args: argparse.Namespace, plain: dict, one: dict, two: dict) -> None:
    docs = args.docs
    model = capacity_model(docs, plain, one, two)
    print(f"\n## Ray: 1 node vs 2 nodes ({docs} SciFact documents, {MODEL}, fp32, 1 CPU per node, "
          f"shards of {args.shard_size})\n")
    print("| run | nodes | workers | start s | encode s | docs/s | vs plain | merge s | network bytes/doc |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| plain (1 process, 1 thread) | 1 | - | {plain['load_s']:.1f} | {plain['encode_s']:.2f} | "
          f"{docs / plain['encode_s']:.1f} | 1.00x | - | - |")
    for label, run in (("ray, 1 node", one), ("ray, 2 nodes", two)):
        print(f"| {label} | {run['nodes']} | {run['workers']} | {run['start_s']:.1f} | {run['encode_s']:.2f} | "
              f"{docs / run['encode_s']:.1f} | {plain['encode_s'] / run['encode_s']:.2f}x | {run['merge_s']:.2f} | "
              f"{run['encode_bytes'] / docs:,.0f} |")
    print(f"\nnetwork bytes while starting the pool (actor creation, model load is local): 1 node "
          f"{one['start_bytes']:,}, 2 nodes {two['start_bytes']:,}; during the warm-up shards: {two['warmup_bytes']:,}")
    print("\n### Capacity model (fitted to the rows above)\n")
    print(f"- r_worker = {model['r_worker']:.1f} docs/s per 1-CPU worker (plain single process: "
          f"{model['rate_plain']:.1f}; Ray's cost on one node: {model['ray_overhead_one_node']:+.1%})")
    print(f"- overhead = 2 * r_worker / rate(2) - 1 = {model['overhead']:+.3f} (rate(2) = {model['rate_two']:.1f} docs/s)")
    print(f"- merge = {model['merge_s_per_doc'] * 1e3:.3f} ms/doc (concatenate + BM25 + files + atomic commit, serial)")
    print(f"- start = {model['start_s']:.1f} s (actor process + model load, paid once per run, in parallel)")
    print(f"- network = {model['bytes_per_remote_doc']:,.0f} bytes per document encoded on a remote node (texts out, "
          f"float32 vectors back, task traffic; the remote node encoded {model['remote_share']:.0%} of the documents, "
          f"{model['bytes_per_doc']:,.0f} bytes per document overall); with the driver on one of N nodes, about "
          "(N - 1) / N of the documents cross the network")
    print("- wall(N, D) = start + D / (N * r_worker / (1 + overhead)) + D * merge\n")
    print("| N nodes | docs/s (encode) | 1M docs, wall | 1M docs, network | merge share |")
    print("|---|---|---|---|---|")
    for nodes in (1, 2, 4, 8, 16, 32):
        rate = nodes * model["r_worker"] / (1 + (model["overhead"] if nodes > 1 else 0.0))
        encode = 1e6 / rate
        merge = 1e6 * model["merge_s_per_doc"]
        wall = model["start_s"] + encode + merge
        network = model["bytes_per_remote_doc"] * 1e6 * (nodes - 1) / nodes
        print(f"| {nodes} | {rate:,.0f} | {wall / 60:,.1f} min | {network / 2**30:,.2f} GiB | "
              f"{merge / wall:.0%} |")
    ceiling = 1 / model["merge_s_per_doc"]
    print(f"\nthe serial merge caps any cluster at {ceiling:,.0f} docs/s end to end (Amdahl); a 1 Gbit/s link at "
          f"{125e6 / model['bytes_per_remote_doc']:,.0f} remote docs/s.")
    print(f"\nraw: {json.dumps({'plain': plain, 'one_node': one, 'two_nodes': two})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder (default %(default)s)")
    parser.add_argument("--docs", type=int, default=500, help="documents to encode (default %(default)s)")
    parser.add_argument("--shard-size", type=int, default=50, help="documents per task (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="20 documents, shards of 5: checks setup and teardown")
    parser.add_argument("--no-pin", action="store_true", help="do not pin each node to its own core")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:  # a measured phase, inside the head namespace
        print(json.dumps(PHASES[args.phase](json.loads(args.options))))
        return
    if args.quick:
        args.docs, args.shard_size = 20, 5
    if os.geteuid() != 0 or shutil.which("ip") is None:
        sys.exit("needs root and iproute2 (ip netns, veth)")
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"no corpus.jsonl in {args.data}: pass --data pointing at ../shared/data/scifact")
    cores = (None, None) if args.no_pin or (os.cpu_count() or 1) < 2 else (0, 1)
    temp_dir = Path(tempfile.mkdtemp(prefix="bxr-"))  # Ray's session folder for both nodes
    # token authentication, as a real cluster should run: one token for this run, handed to every process
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    options = {"data": str(args.data), "docs": args.docs, "shard_size": args.shard_size,
               "log": str(temp_dir / "shards.log")}
    tear_down(environment)  # what an earlier killed run left
    try:
        set_up_network()
        print(f"network up: {NAMESPACES[0]} {ADDRESSES[0]} <-veth-> {NAMESPACES[1]} {ADDRESSES[1]}", flush=True)
        plain = run_phase("plain", options, cores[0], environment)
        print(f"plain: {plain}", flush=True)
        start_node(0, temp_dir, cores[0], environment)
        wait_for_nodes(1, environment)
        one = run_phase("ray", {**options, "workers": 1}, cores[0], environment)
        print(f"ray, 1 node: {one}", flush=True)
        start_node(1, temp_dir, cores[1], environment)
        wait_for_nodes(2, environment)
        two = run_phase("ray", {**options, "workers": 2}, cores[0], environment)
        print(f"ray, 2 nodes: {two}", flush=True)
        print_report(args, plain, one, two)
    finally:
        tear_down(environment)
        shutil.rmtree(temp_dir, ignore_errors=True)
        print("cleaned up: namespaces, Ray processes and temp folder removed", flush=True)


if __name__ == "__main__":
    main()
