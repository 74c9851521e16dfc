"""The batcher on its own: token budgets, dedupe, deadlines, dropping work nobody waits for.

The backend here is a scripted coroutine so that each policy can be pinned down exactly; the same
batcher runs against a real vLLM server in test_batching_vllm.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from sidecar.batcher import Batcher, BatchPolicy
from sidecar.errors import BackendUnavailable, DeadlineExceeded
from sidecar.metrics import Metrics
from sidecar.scoring_types import PreparedPair


class ScriptedBackend:
    def __init__(self) -> None:
        self.calls: list[list[object]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.called = asyncio.Event()
        self.fail_with: Exception | None = None
        self.deadlines: list[float] = []

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        self.calls.append(list(payloads))
        self.deadlines.append(deadline)
        self.called.set()
        await self.gate.wait()
        if self.fail_with:
            raise self.fail_with
        return [float(str(p).removeprefix("doc")) for p in payloads]


def pair(n: int, tokens: int = 10) -> PreparedPair:
    return PreparedPair(key=f"doc{n}".encode(), n_tokens=tokens, payload=f"doc{n}")


def policy(**overrides: float) -> BatchPolicy:
    values = dict(
        max_batch_tokens=1000,
        max_batch_pairs=100,
        max_wait_s=0.02,
        max_inflight_batches=1,
    )
    values.update(overrides)
    return BatchPolicy(**values)  # type: ignore[arg-type]


async def started(backend: ScriptedBackend, batch_policy: BatchPolicy) -> Batcher:
    batcher = Batcher(backend.score, batch_policy, Metrics())
    await batcher.start()
    return batcher


def far() -> float:
    return time.monotonic() + 10


async def test_concurrent_requests_share_batches_and_get_their_own_scores_in_order() -> None:
    backend = ScriptedBackend()
    batcher = await started(backend, policy())
    requests = [[pair(i), pair(i + 100), pair(i + 200)] for i in range(10)]
    results = await asyncio.gather(*(batcher.score(r, deadline=far()) for r in requests))
    assert results == [[float(i), float(i + 100), float(i + 200)] for i in range(10)]
    assert len(backend.calls) < len(requests)
    await batcher.stop()


async def test_batches_are_cut_by_token_budget_and_pair_count() -> None:
    backend = ScriptedBackend()
    batcher = await started(backend, policy(max_batch_tokens=25, max_batch_pairs=100))
    await batcher.score([pair(i, tokens=10) for i in range(5)], deadline=far())
    assert [len(call) for call in backend.calls] == [2, 2, 1]

    backend.calls.clear()
    batcher2 = await started(backend, policy(max_batch_pairs=3))
    await batcher2.score([pair(i) for i in range(7)], deadline=far())
    assert [len(call) for call in backend.calls] == [3, 3, 1]
    await batcher.stop()
    await batcher2.stop()


async def test_a_pair_over_the_token_budget_still_goes_alone() -> None:
    backend = ScriptedBackend()
    batcher = await started(backend, policy(max_batch_tokens=5))
    assert await batcher.score([pair(1, tokens=50), pair(2, tokens=50)], deadline=far()) == [
        1.0,
        2.0,
    ]
    assert [len(call) for call in backend.calls] == [1, 1]
    await batcher.stop()


async def test_identical_pairs_queued_together_are_scored_once() -> None:
    backend = ScriptedBackend()
    batcher = await started(backend, policy())
    a, b = await asyncio.gather(
        batcher.score([pair(1), pair(2), pair(1)], deadline=far()),
        batcher.score([pair(2), pair(3)], deadline=far()),
    )
    assert (a, b) == ([1.0, 2.0, 1.0], [2.0, 3.0])
    assert sorted(str(p) for call in backend.calls for p in call) == ["doc1", "doc2", "doc3"]
    await batcher.stop()


async def test_a_request_that_leaves_takes_its_queued_pairs_with_it() -> None:
    backend = ScriptedBackend()
    backend.gate.clear()
    batcher = await started(backend, policy(max_wait_s=0))
    first = asyncio.create_task(batcher.score([pair(1)], deadline=far()))
    await backend.called.wait()
    leaving = asyncio.create_task(batcher.score([pair(2), pair(3)], deadline=far()))
    await asyncio.sleep(0.01)
    assert batcher.queued_pairs == 2
    leaving.cancel()
    await asyncio.sleep(0)
    assert batcher.queued_pairs == 0
    backend.gate.set()
    assert await first == [1.0]
    await asyncio.sleep(0.01)
    assert backend.calls == [["doc1"]]
    await batcher.stop()


async def test_deadline_gives_a_timeout_error_instead_of_a_hang() -> None:
    backend = ScriptedBackend()
    backend.gate.clear()
    batcher = await started(backend, policy())
    started_at = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await batcher.score([pair(1)], deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started_at < 2
    backend.gate.set()
    await batcher.stop()


async def test_backend_failure_reaches_every_waiting_request() -> None:
    backend = ScriptedBackend()
    backend.fail_with = RuntimeError("boom")
    batcher = await started(backend, policy())
    results = await asyncio.gather(
        batcher.score([pair(1)], deadline=far()),
        batcher.score([pair(1), pair(2)], deadline=far()),
        return_exceptions=True,
    )
    assert all(isinstance(r, BackendUnavailable) and "boom" in r.message for r in results)
    await batcher.stop()
