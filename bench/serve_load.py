"""Load bench of `bicross serve` over loopback: errors, latency, throughput, RSS, batching and overload.

    bicross index ../shared/data/scifact/corpus.jsonl --index /tmp/scifact-index
    python bench/serve_load.py /tmp/scifact-index --queries ../shared/data/scifact/queries.jsonl \
        --clients 50 --seconds 300

(issue 13's "done when": 50 clients for 5 minutes against the default pipeline; a smoke run:
`--clients 4 --seconds 3 --part-seconds 3 --no-rerank --threads 1`.) The server runs in a child process (this
script with `--serve`: `create_app` + uvicorn on 127.0.0.1, a free port), so its RSS is its own and the
clients (asyncio + httpx here) do not share its cores' Python interpreter. Every part is bounded by
`--seconds` (plus the requests in flight at its end, each bounded by the request timeout).

Parts (`--parts`, comma-separated, default all):
- load: `--clients` closed-loop clients on /search for `--seconds`, each request the next query of the
  file (they repeat only when the file runs out; the score cache hit rate is printed, `--no-cache` turns
  the cache off): status counts (anything but 200 and 429 is an error), p50/p99 latency, throughput, server
  RSS at the start and end and its growth.
- batch: /search from 16 clients vs /search/batch of 16 queries from one client (queries/s, ratio; issue
  13 asks >= 0.9: no loss to concurrency).
- embed: single-text /v1/embeddings from 16 clients vs one client (texts/s, ratio; >= 2: micro-batching).
- overload: open-loop /search at 4x the sustainable rate (the 16-client throughput, measured first if
  `batch` did not run) with `--max-queue`: p99 latency of the 429s (< 50 ms asked) and the share of
  admitted requests answered within their `--timeout` (all asked).

Shortcut: one client process drives every request; at 50 clients on 2 cores it shares the CPU with the
server, so absolute throughput is lower than a remote client would see (the ratios compare like with like).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_QUERIES = BENCH_DIR.parent.parent / "shared" / "data" / "scifact" / "queries.jsonl"
PARTS = ("load", "batch", "embed", "overload")


@dataclass
class Tally:
    """What one part's requests came back with."""

    latencies: dict[int, list[float]] = field(default_factory=dict)  # status -> seconds
    items: int = 0  # queries or texts answered with 200
    seconds: float = 0.0
    client_cpu: float = 0.0  # this (client) process's CPU seconds over the part: near `seconds` = client-bound

    def add(self, status: int, seconds: float, items: int = 1) -> None:
        self.latencies.setdefault(status, []).append(seconds)
        if status == 200:
            self.items += items

    def count(self, status: int) -> int:
        return len(self.latencies.get(status, []))

    @property
    def errors(self) -> dict[int, int]:
        return {status: len(times) for status, times in self.latencies.items() if status not in (200, 429)}

    def percentile_ms(self, status: int, q: float) -> float:
        times = sorted(self.latencies.get(status, []))
        if not times:
            return float("nan")
        return 1000 * times[min(len(times) - 1, int(q * len(times)))]

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class Queries:
    """The next query on every call, in file order, wrapping when the file runs out (counted)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.position = 0

    def next(self) -> str:
        text = self.texts[self.position % len(self.texts)]
        self.position += 1
        return text

    @property
    def repeated(self) -> int:
        return max(0, self.position - len(self.texts))


def read_queries(path: Path) -> list[str]:
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        sys.exit(f"no queries in {path}")
    return texts


# --------------------------------------------------------------------------------------------------------
# The server (child process)


def serve(args: argparse.Namespace) -> None:
    """Child process: serve the collection on 127.0.0.1:args.port until terminated."""
    import torch
    import uvicorn

    from bicross.service import ServiceSettings, create_app

    torch.set_num_threads(args.threads)

    settings = ServiceSettings(reranker=None if args.no_rerank else ServiceSettings().reranker, max_queue=args.max_queue,
                               timeout_seconds=args.timeout, score_cache_entries=0 if args.no_cache else 100_000,
                               port=args.port)
    uvicorn.run(create_app(args.index, settings), host="127.0.0.1", port=args.port, log_level="warning")


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, __file__, str(args.index), "--serve", "--port", str(port), "--max-queue",
               str(args.max_queue), "--timeout", str(args.timeout), "--threads", str(args.threads),
               *["--no-rerank"] * args.no_rerank, *["--no-cache"] * args.no_cache]
    threads = str(args.threads)  # onnxruntime and BLAS read these too
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + args.startup_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    sys.exit(f"the server was not ready within {args.startup_seconds} s")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, samples: list[float], every: float) -> None:
    """Append the server's RSS every `every` s until cancelled: growth that levels off vs growth for ever."""
    while True:
        await asyncio.sleep(every)
        samples.append(rss_mib(pid))


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------------------------------------
# Clients


async def closed_loop(client, clients: int, seconds: float, request) -> Tally:
    """`clients` tasks, each sending `request(client)` back to back for `seconds`.

    A 429 is honoured as HTTP clients should: the client waits its Retry-After before the next request
    (a client that ignores it only burns the shared CPU on 429s; the overload part measures those).
    """
    tally = Tally()
    stop = time.perf_counter() + seconds

    async def one() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status, items, retry_after = await request(client)
            tally.add(status, time.perf_counter() - started, items)
            if status == 429:
                await asyncio.sleep(max(0.0, min(retry_after, stop - time.perf_counter())))

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(clients)))
    tally.seconds, tally.client_cpu = time.perf_counter() - started, time.process_time() - cpu
    return tally


async def open_loop(client, rate: float, seconds: float, request) -> Tally:
    """Requests started at `rate` per second for `seconds`, whatever comes back (an overload generator)."""
    tally = Tally()
    tasks = []

    async def one() -> None:
        started = time.perf_counter()
        status, items, _ = await request(client)
        tally.add(status, time.perf_counter() - started, items)

    started = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        while sent < elapsed * rate:
            tasks.append(asyncio.ensure_future(one()))
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)
    tally.seconds = time.perf_counter() - started
    return tally


def post(path: str, body_of, items: int = 1, timeout: float | None = None):
    """A request function; `timeout` (s) overrides the client's for requests that carry a longer one."""
    options = {} if timeout is None else {"timeout": timeout}

    async def request(client) -> tuple[int, int, float]:
        """(status, items answered, Retry-After seconds or 0)."""
        try:
            response = await client.post(path, json=body_of(), **options)
        except Exception:  # noqa: BLE001 - a connection failure is an error, counted as status 0
            return 0, 0, 0.0
        return response.status_code, items, float(response.headers.get("retry-after", 0))
    return request


# --------------------------------------------------------------------------------------------------------
# Parts


async def run_parts(args: argparse.Namespace, url: str, pid: int) -> list[tuple[str, str, str]]:
    import httpx

    queries = Queries(read_queries(args.queries))
    rows: list[tuple[str, str, str]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout + 30, limits=limits) as client:
        search = post("/search", lambda: {"query": queries.next()})
        await closed_loop(client, 2, min(2.0, args.seconds), search)  # warm-up: first calls allocate
        sustainable = None

        if "load" in args.parts:
            rss_start = rss_mib(pid)
            samples: list[float] = []
            sampler = asyncio.ensure_future(sample_rss(pid, samples, every=args.seconds / 10))
            tally = await closed_loop(client, args.clients, args.seconds, search)
            sampler.cancel()
            rss_end = rss_mib(pid)
            text = (await client.get("/metrics")).text
            hits, misses = metric(text, "bicross_score_cache_hits"), metric(text, "bicross_score_cache_misses")
            rows += [
                ("load", f"requests ({args.clients} clients, {tally.seconds:.0f} s)",
                 f"{sum(len(t) for t in tally.latencies.values())}: 200 x {tally.count(200)}, 429 x {tally.count(429)}"),
                ("load", "errors other than 429", f"{sum(tally.errors.values())} {tally.errors or ''}".strip()),
                ("load", "latency p50 / p99 (200s)", f"{tally.percentile_ms(200, 0.5):.0f} / "
                                                      f"{tally.percentile_ms(200, 0.99):.0f} ms"),
                ("load", "throughput", f"{tally.rate:.2f} queries/s (client CPU {tally.client_cpu / tally.seconds:.0%})"),
                ("load", "server RSS start -> end", f"{rss_start:.0f} -> {rss_end:.0f} MiB "
                                                    f"({100 * (rss_end / rss_start - 1):+.1f}%)"),
                ("load", "server RSS every tenth of the run", " ".join(f"{mib:.0f}" for mib in samples) + " MiB"),
                ("load", "queries repeated / score cache hit rate",
                 f"{queries.repeated} / {hits / (hits + misses) if hits + misses else 0:.1%}"
                 + (" (cache off)" if args.no_cache else "")),
            ]

        if "batch" in args.parts:
            single = await closed_loop(client, 16, args.part_seconds, search)
            batch = await closed_loop(client, 1, args.part_seconds,
                                      post("/search/batch", lambda: {"queries": [queries.next() for _ in range(16)],
                                                            "timeout": 300}, 16, timeout=330))  # 16 queries' time
            sustainable = single.rate
            rows += [("batch", "/search, 16 clients", f"{single.rate:.2f} queries/s (client CPU "
                                                      f"{single.client_cpu / single.seconds:.0%})"),
                     ("batch", "/search/batch of 16, 1 client", f"{batch.rate:.2f} queries/s"),
                     ("batch", "ratio (>= 0.9 asked)", f"{single.rate / batch.rate if batch.rate else float('nan'):.2f}")]

        if "embed" in args.parts:
            embed = post("/v1/embeddings", lambda: {"input": queries.next(), "input_type": "query"})
            before = (await client.get("/metrics")).text
            many = await closed_loop(client, 16, args.part_seconds, embed)
            after = (await client.get("/metrics")).text
            one = await closed_loop(client, 1, args.part_seconds, embed)
            calls = [metric(after, f'bicross_batch_size_{s}{{kind="embeddings"}}') -
                     metric(before, f'bicross_batch_size_{s}{{kind="embeddings"}}') for s in ("sum", "count")]
            rows += [("embed", "single-text, 16 clients", f"{many.rate:.1f} texts/s (mean micro-batch "
                                                          f"{calls[0] / calls[1] if calls[1] else 0:.1f}, client CPU "
                                                          f"{many.client_cpu / many.seconds:.0%})"),
                     ("embed", "single-text, 1 client", f"{one.rate:.1f} texts/s"),
                     ("embed", "ratio (>= 2 asked)", f"{many.rate / one.rate if one.rate else float('nan'):.2f}")]

        if "overload" in args.parts:
            if sustainable is None:
                sustainable = (await closed_loop(client, 16, args.part_seconds, search)).rate
            rate = 4 * max(sustainable, 0.1)
            timed = post("/search", lambda: {"query": queries.next(), "timeout": args.timeout})
            over = await open_loop(client, rate, args.part_seconds, timed)
            admitted = over.latencies.get(200, []) + over.latencies.get(504, [])
            in_time = sum(1 for s in over.latencies.get(200, []) if s <= args.timeout)
            rows += [("overload", "offered rate (4x sustainable)", f"{rate:.2f} requests/s"),
                     ("overload", "answered", f"200 x {over.count(200)}, 429 x {over.count(429)}, "
                                              f"504 x {over.count(504)}, other {sum(over.errors.values()) - over.count(504)}"),
                     ("overload", "429 latency p99 (< 50 ms asked)", f"{over.percentile_ms(429, 0.99):.1f} ms"),
                     ("overload", f"admitted answered within --timeout {args.timeout:g} s",
                      f"{in_time} of {len(admitted)}" + (f" ({in_time / len(admitted):.1%})" if admitted else "")),
                     ("overload", "admitted latency p99", f"{over.percentile_ms(200, 0.99):.0f} ms")]
    return rows


def print_table(rows: list[tuple[str, str, str]], args: argparse.Namespace) -> None:
    print(f"\nbicross serve load bench: {args.index} ({'no rerank' if args.no_rerank else 'default pipeline'}), "
          f"{os.cpu_count()} CPUs, {args.threads} server threads, max_queue {args.max_queue}, timeout {args.timeout:g} s\n")
    print("| part | measure | value |\n|---|---|---|")
    for part, measure, value in rows:
        print(f"| {part} | {measure} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="collection folder (bicross index ...)")
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES, help="BEIR queries.jsonl (default %(default)s)")
    parser.add_argument("--clients", type=int, default=50, help="closed-loop clients of the load part")
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the load part")
    parser.add_argument("--part-seconds", type=float, default=None,
                        help="length of each measurement of the batch, embed and overload parts (default: "
                             "--seconds / 5, at least 3)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--max-queue", type=int, default=64, help="server's admission queue (429 beyond)")
    parser.add_argument("--timeout", type=float, default=30.0, help="server's default request timeout, seconds")
    parser.add_argument("--no-rerank", action="store_true", help="serve without a cross-encoder")
    parser.add_argument("--no-cache", action="store_true", help="turn the cross-encoder score cache off")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="server's model threads (default: all cores; fewer when another job shares them, or "
                             "threads waiting on each other cost more than the model)")
    parser.add_argument("--startup-seconds", type=float, default=300.0, help="most to wait for the models to load")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    args.parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    unknown = args.parts - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    args.part_seconds = args.part_seconds or max(3.0, args.seconds / 5)
    process, url = start_server(args)
    try:
        rows = asyncio.run(run_parts(args, url, process.pid))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    print_table(rows, args)


if __name__ == "__main__":
    main()
