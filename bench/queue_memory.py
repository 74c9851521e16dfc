"""`python -m bench.queue_memory`: what a full queue costs in RSS, token ids as the sidecar keeps
them (4-byte arrays) beside the `list[int]` it kept before.

    .venv/bin/python -m bench.queue_memory [--pairs 4096] [--tokens 8192]

A full queue is `--pairs` (max_queue_pairs) pairs of `--tokens` (max_length) tokens. Each layout
runs in a fresh process: the real Qwen tokenizer and prompt encoder (no document cache) build that
many pairs from distinct documents, 64 per request, and keep them as the batcher does; `list`
converts each pair's ids with `tolist()`. RSS comes from /proc after the garbage is given back
(gc, malloc_trim), so the growth is what the queued pairs hold. The chart sizes the sidecar's
memory from these bytes per token (docs/deploy.md, "Sizing arithmetic").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
from array import array

from bench.memory import rss_mb
from sidecar.config import QWEN3_DEFAULT_INSTRUCTION
from sidecar.memory import trim_now
from sidecar.prompt import QwenPromptEncoder
from sidecar.scoring_types import PreparedPair
from sidecar.tokenizer import load_tokenizer
from tests.support.tiny_qwen import qwen_tokenizer_dir

REQUEST_DOCUMENTS = 64
LAYOUTS = ("array", "list")


def settle() -> float:
    """RSS in bytes once the garbage is given back."""
    gc.collect()
    trim_now()
    return rss_mb(os.getpid()) * 2**20


def fill_queue(layout: str, pairs: int, tokens: int) -> dict[str, float]:
    encoder = QwenPromptEncoder(load_tokenizer(str(qwen_tokenizer_dir())), max_length=tokens)
    rng = random.Random(11)
    # Made-up lowercase words: like product text, mostly ids above 256 (Python caches smaller ints).
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(3, 9))) for _ in range(20000)]

    def request(count: int) -> list[PreparedPair]:
        # Over a token a word: every document is cut at the token limit, as in a full queue.
        documents = [" ".join(rng.choices(words, k=tokens)) for _ in range(count)]
        return encoder.encode(
            "waterproof hiking backpack",
            documents,
            instruction=QWEN3_DEFAULT_INSTRUCTION,
            max_tokens_per_doc=None,
        )

    request(REQUEST_DOCUMENTS)  # the tokenizer's own buffers and caches are not the queue's
    queue: list[PreparedPair] = []
    before = settle()
    started = time.monotonic()
    while len(queue) < pairs:
        for pair in request(min(REQUEST_DOCUMENTS, pairs - len(queue))):
            assert isinstance(pair.payload, array)
            ids = pair.payload if layout == "array" else pair.payload.tolist()
            queue.append(pair._replace(payload=ids))
    seconds = time.monotonic() - started
    grown = settle() - before
    queued_tokens = sum(pair.n_tokens for pair in queue)
    return {
        "pairs": len(queue),
        "tokens": queued_tokens,
        "rss_mib": grown / 2**20,
        "bytes_per_token": grown / queued_tokens,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4096, help="max_queue_pairs")
    parser.add_argument("--tokens", type=int, default=8192, help="max_length")
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layout:  # one layout, in this fresh process
        print(json.dumps(fill_queue(args.layout, args.pairs, args.tokens)))
        return
    print(f"queue memory: {args.pairs:,} pairs x {args.tokens:,} tokens (a full queue)")
    for layout in LAYOUTS:
        out = subprocess.run(
            [sys.executable, "-m", "bench.queue_memory", "--layout", layout,
             "--pairs", str(args.pairs), "--tokens", str(args.tokens)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        result = json.loads(out)
        print(
            f"  {layout:5}: RSS +{result['rss_mib']:,.0f} MiB for {result['tokens']:,} queued "
            f"tokens = {result['bytes_per_token']:.1f} bytes a token "
            f"(built in {result['seconds']:.0f} s)"
        )


if __name__ == "__main__":
    main()
