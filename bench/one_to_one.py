"""Measure what `--one-to-one` costs and what the sidecar's cross-request batching saves.

    .venv/bin/python -m bench.one_to_one [--hits 10 50] [--rounds 20]

Starts the sidecar (embedded CPU model) twice: with its default batching, then with
RERANK_MAX_BATCH_PAIRS=1 (every pair its own backend call). For each page size it times, per
search: one call with every hit (one_to_one=false), and one call per hit sent concurrently (what
ML Commons does with one_to_one=true). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from tests.es_integration.mlcommons_sim import urllib_post
from tests.support.servers import sidecar_process

REPO = Path(__file__).resolve().parents[1]
QUERY = {"match": {"body": "how tall is the eiffel tower"}}
DOC = {"title": "Eiffel Tower", "body": "The tower is 330 metres tall and was built in 1889 " * 4}


@contextmanager
def sidecar(env: dict[str, str]) -> Iterator[str]:
    log = Path(tempfile.mkdtemp(prefix="rerank-one-to-one-")) / "sidecar.log"
    with sidecar_process(log, env=env) as server:
        yield f"{server.url}/v1/rerank/query-dsl"


def call(url: str, documents: list[dict[str, str]]) -> None:
    body = json.dumps({"query": QUERY, "documents": documents, "fields": ["title", "body"]})
    status, raw = urllib_post(url, {"Content-Type": "application/json"}, body.encode())
    assert status == 200, raw


def fan_out(pool: ThreadPoolExecutor, url: str, documents: list[dict[str, str]]) -> None:
    """one_to_one: ML Commons sends one call per hit, all at once."""
    list(pool.map(lambda doc: call(url, [doc]), documents))


def timed(rounds: int, fn: Callable[[], None]) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows = []
    for label, env in (("batching on", {}), ("batching off", {"RERANK_MAX_BATCH_PAIRS": "1"})):
        with sidecar(env) as url:
            call(url, [DOC])  # warm up
            for n in args.hits:
                # Distinct texts: the sidecar answers identical queued pairs once.
                docs = [
                    {"title": f"{DOC['title']} {i}", "body": f"{i} {DOC['body']}"} for i in range(n)
                ]
                with ThreadPoolExecutor(max_workers=n) as pool:
                    batch = timed(args.rounds, partial(call, url, docs))
                    per_hit = timed(args.rounds, partial(fan_out, pool, url, docs))
                rows.append((label, n, batch, per_hit))
    print(f"{'sidecar':<13} {'hits':>4} {'one call (ms)':>14} {'one per hit (ms)':>17}")
    for label, n, batch, per_hit in rows:
        print(f"{label:<13} {n:>4} {batch:>14.1f} {per_hit:>17.1f}")


if __name__ == "__main__":
    main()
