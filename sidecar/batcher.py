"""Cross-request batching: one queue, futures back to callers, overload decided in one place.

Pairs from concurrent requests share one FIFO queue keyed by their exact model input, so an
identical pair queued or in flight is scored once for every request that asked for it. A loop cuts
the queue into backend calls by a token budget and a pair count, with a bounded number of calls in
flight; while calls are in flight it waits at most `max_wait_ms` for the next batch to fill. A
request that leaves (client gone, deadline) takes its pairs out of the queue unless another request
still wants them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sidecar.backends.base import PreparedPair
from sidecar.errors import BackendUnavailable, DeadlineExceeded, Overloaded, SidecarError
from sidecar.metrics import Metrics

log = logging.getLogger(__name__)

ScoreBatch = Callable[[Sequence[object]], Awaitable[list[float]]]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_tokens: int
    max_batch_pairs: int
    max_wait_s: float
    max_inflight_batches: int
    max_queue_pairs: int


@dataclass(eq=False)
class _Slot:
    pair: PreparedPair
    future: asyncio.Future[float]
    waiters: int = 0
    in_flight: bool = False


@dataclass
class _Throughput:
    """Recent pairs per second, to tell a client when to come back."""

    pairs_per_s: float = 0.0

    def observe(self, pairs: int, seconds: float) -> None:
        rate = pairs / max(seconds, 1e-3)
        self.pairs_per_s = rate if self.pairs_per_s == 0 else 0.8 * self.pairs_per_s + 0.2 * rate

    def seconds_to_drain(self, pairs: int) -> int:
        if self.pairs_per_s <= 0:
            return 1
        return max(1, min(60, math.ceil(pairs / self.pairs_per_s)))


class Batcher:
    def __init__(self, score_batch: ScoreBatch, policy: BatchPolicy, metrics: Metrics) -> None:
        self._score_batch = score_batch
        self._policy = policy
        self._metrics = metrics
        self._queue: OrderedDict[bytes, _Slot] = OrderedDict()
        self._in_flight: dict[bytes, _Slot] = {}
        self._queued_tokens = 0
        self._arrived = asyncio.Event()
        self._slots_free = asyncio.Semaphore(policy.max_inflight_batches)
        self._throughput = _Throughput()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in [*self._queue.values(), *self._in_flight.values()]:
            if not slot.future.done():
                slot.future.set_exception(BackendUnavailable("the sidecar is shutting down"))

    @property
    def queued_pairs(self) -> int:
        return len(self._queue)

    async def score(self, pairs: Sequence[PreparedPair], *, deadline: float) -> list[float]:
        """Scores in the order of `pairs`; raises Overloaded, DeadlineExceeded or backend errors."""
        self._admit(pairs)
        slots = [self._enqueue(pair) for pair in pairs]
        self._arrived.set()
        try:
            futures = {slot.future for slot in slots}
            _, pending = await asyncio.wait(futures, timeout=deadline - time.monotonic())
            if pending:
                raise DeadlineExceeded("the backend did not score the documents in time")
            return [slot.future.result() for slot in slots]
        finally:
            self._release(slots)

    def _admit(self, pairs: Sequence[PreparedPair]) -> None:
        new_pairs = len(
            {p.key for p in pairs if p.key not in self._queue and p.key not in self._in_flight}
        )
        if new_pairs and len(self._queue) + new_pairs > self._policy.max_queue_pairs:
            self._metrics.rejected_requests.inc()
            raise Overloaded(
                f"queue full: {len(self._queue)} pairs wait, limit {self._policy.max_queue_pairs}",
                retry_after_s=self._throughput.seconds_to_drain(len(self._queue)),
            )

    def _enqueue(self, pair: PreparedPair) -> _Slot:
        slot = self._queue.get(pair.key) or self._in_flight.get(pair.key)
        if slot is None:
            future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            # Consumed here so a result nobody waits for any more is not reported as lost.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            slot = _Slot(pair, future)
            self._queue[pair.key] = slot
            self._queued_tokens += pair.n_tokens
        else:
            self._metrics.deduplicated_pairs.inc()
        slot.waiters += 1
        self._metrics.queue_pairs.set(len(self._queue))
        return slot

    def _release(self, slots: Sequence[_Slot]) -> None:
        for slot in slots:
            slot.waiters -= 1
            if slot.waiters == 0 and not slot.in_flight and slot.pair.key in self._queue:
                del self._queue[slot.pair.key]
                self._queued_tokens -= slot.pair.n_tokens
                slot.future.cancel()
                self._metrics.dropped_pairs.inc()
        self._metrics.queue_pairs.set(len(self._queue))

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._queue:
                await self._slots_free.acquire()
                await self._wait_to_fill()
                batch = self._cut_batch()
                if not batch:
                    self._slots_free.release()
                    break
                task = asyncio.create_task(self._dispatch(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _wait_to_fill(self) -> None:
        # An idle backend gets the work at once; waiting only pays while calls are in flight,
        # when pairs would queue anyway and larger batches cost less per pair.
        if not self._tasks:
            return
        deadline = time.monotonic() + self._policy.max_wait_s
        while not self._batch_is_full() and (remaining := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _batch_is_full(self) -> bool:
        return (
            len(self._queue) >= self._policy.max_batch_pairs
            or self._queued_tokens >= self._policy.max_batch_tokens
        )

    def _cut_batch(self) -> list[_Slot]:
        batch: list[_Slot] = []
        tokens = 0
        while self._queue and len(batch) < self._policy.max_batch_pairs:
            slot = next(iter(self._queue.values()))
            # The first pair always goes, even over the budget, so no pair waits forever.
            if batch and tokens + slot.pair.n_tokens > self._policy.max_batch_tokens:
                break
            del self._queue[slot.pair.key]
            self._queued_tokens -= slot.pair.n_tokens
            slot.in_flight = True
            self._in_flight[slot.pair.key] = slot
            batch.append(slot)
            tokens += slot.pair.n_tokens
        self._metrics.queue_pairs.set(len(self._queue))
        return batch

    async def _dispatch(self, batch: list[_Slot]) -> None:
        started = time.monotonic()
        self._metrics.inflight_batches.inc()
        self._metrics.batch_pairs.observe(len(batch))
        self._metrics.batch_tokens.observe(sum(slot.pair.n_tokens for slot in batch))
        try:
            scores = await self._score_batch([slot.pair.payload for slot in batch])
        except SidecarError as exc:
            self._fail(batch, exc)
        except Exception as exc:
            log.exception("backend call failed")
            self._fail(batch, BackendUnavailable(f"backend error: {type(exc).__name__}: {exc}"))
        else:
            if len(scores) != len(batch):
                self._fail(
                    batch,
                    BackendUnavailable(f"backend gave {len(scores)} scores for {len(batch)} pairs"),
                )
                return
            elapsed = time.monotonic() - started
            self._throughput.observe(len(batch), elapsed)
            self._metrics.backend_seconds.observe(elapsed)
            for slot, score in zip(batch, scores, strict=True):
                if not slot.future.done():
                    slot.future.set_result(score)
        finally:
            for slot in batch:
                self._in_flight.pop(slot.pair.key, None)
            self._metrics.backend_calls.inc()
            self._metrics.inflight_batches.dec()
            self._slots_free.release()

    def _fail(self, batch: list[_Slot], error: SidecarError) -> None:
        self._metrics.backend_errors.labels(error.error_type).inc()
        for slot in batch:
            if not slot.future.done():
                slot.future.set_exception(error)
