"""Cross-request batching: one queue, futures back to callers, overload decided in one place.

Pairs from concurrent requests share one FIFO queue keyed by their exact model input, so an
identical pair queued or in flight is scored once for every request that asked for it. A request
waits on one future of its own, resolved when its last pair is scored (not one future per pair:
50 futures and their callbacks per request were most of the batcher's cost). A loop cuts
the queue into backend calls by a token budget and a pair count, with a bounded number of calls in
flight; while calls are in flight it waits at most `max_wait_ms` for the next batch to fill. A
request that leaves (client gone, deadline) takes its pairs out of the queue unless another request
still wants them, and a backend call nobody waits for any more is cancelled. Each call carries the
earliest deadline of its pairs. The loop is supervised: if it fails, waiting requests fail at once,
`running` is False (readiness turns 503) until it has been restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.errors import BackendUnavailable, DeadlineExceeded, SidecarError
from sidecar.metrics import Metrics
from sidecar.scoring_types import PreparedPair
from sidecar.timing import record

log = logging.getLogger(__name__)


class ScoreBatch(Protocol):
    def __call__(
        self, payloads: Sequence[object], *, deadline: float
    ) -> Awaitable[list[float]]: ...


# After a crash of the loop, wait this long before restarting it (doubling up to the maximum).
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 5.0


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_tokens: int
    max_batch_pairs: int
    max_wait_s: float
    max_inflight_batches: int


class _Waiter:
    """One request: done when each of its pairs has a score, or failed with the first error."""

    __slots__ = ("done", "remaining")

    def __init__(self, pairs: int) -> None:
        self.remaining = pairs
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pair_scored(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, error: SidecarError) -> None:
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # retrieved: no "never retrieved" log if the request left


@dataclass(eq=False, slots=True)
class _Slot:
    pair: PreparedPair
    deadline: float
    # One entry per occurrence of the pair in a waiting request.
    waiters: list[_Waiter] = field(default_factory=list)
    score: float = math.nan
    sent_at: float = 0.0  # time.monotonic() when cut into a backend call
    # Once cut into a backend call: the call, and every slot it carries.
    call: asyncio.Task[None] | None = None
    batch: list[_Slot] | None = None


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
        self._running = False
        self.crash_reason = ""

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._supervise(), name="batcher")
        self._running = True

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._running = False
        stopping = BackendUnavailable("the sidecar is shutting down")
        for slot in list(self._in_flight.values()):
            for waiter in slot.waiters:
                waiter.fail(stopping)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_queued(BackendUnavailable("the sidecar is shutting down"))

    @property
    def running(self) -> bool:
        """False while the batch loop is down after a failure."""
        return self._running

    @property
    def queued_pairs(self) -> int:
        return len(self._queue)

    def seconds_to_drain(self, pairs: int) -> int:
        """A Retry-After for a client that finds `pairs` ahead of it."""
        return self._throughput.seconds_to_drain(pairs)

    async def score(self, pairs: Sequence[PreparedPair], *, deadline: float) -> list[float]:
        """Scores in the order of `pairs`; raises DeadlineExceeded or backend errors."""
        if not self._running:
            raise BackendUnavailable(f"the batch loop is restarting after: {self.crash_reason}")
        entered = time.monotonic()
        waiter = _Waiter(len(pairs))
        slots = [self._enqueue(pair, deadline, waiter) for pair in pairs]
        self._metrics.queue_pairs.set(len(self._queue))
        self._arrived.set()
        try:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await waiter.done
            except TimeoutError:
                raise DeadlineExceeded("the backend did not score the documents in time") from None
            return [slot.score for slot in slots]
        finally:
            self._release(slots, waiter)
            _record_stages(slots, entered)

    def _enqueue(self, pair: PreparedPair, deadline: float, waiter: _Waiter) -> _Slot:
        slot = self._queue.get(pair.key) or self._in_flight.get(pair.key)
        if slot is None:
            slot = _Slot(pair, deadline)
            self._queue[pair.key] = slot
            self._queued_tokens += pair.n_tokens
        else:
            self._metrics.deduplicated_pairs.inc()
        slot.waiters.append(waiter)
        # A queued pair is wanted until the latest of its requests' deadlines.
        slot.deadline = max(slot.deadline, deadline)
        return slot

    def _release(self, slots: Sequence[_Slot], waiter: _Waiter) -> None:
        for slot in slots:
            slot.waiters.remove(waiter)
            if slot.waiters:
                continue
            if slot.call is None and self._queue.get(slot.pair.key) is slot:
                del self._queue[slot.pair.key]
                self._queued_tokens -= slot.pair.n_tokens
                self._metrics.dropped_pairs.inc()
            elif (
                slot.call is not None
                and not slot.call.done()
                and slot.batch is not None
                and not any(s.waiters for s in slot.batch)
            ):
                # Nobody waits for this call any more: free its slot and vLLM's work. Its pairs
                # leave `_in_flight` now, so no new request joins a call that will not answer.
                slot.call.cancel()
                for sent in slot.batch:
                    self._forget_in_flight(sent)
        self._metrics.queue_pairs.set(len(self._queue))

    def _forget_in_flight(self, slot: _Slot) -> None:
        if self._in_flight.get(slot.pair.key) is slot:
            del self._in_flight[slot.pair.key]

    async def _supervise(self) -> None:
        delay = RESTART_DELAY_S
        while True:
            try:
                await self._run()
            except Exception as exc:
                log.exception("the batch loop failed; restarting it in %.1f s", delay)
                self._running = False
                self.crash_reason = f"{type(exc).__name__}: {exc}"
                self._fail_queued(BackendUnavailable(f"the batch loop failed: {self.crash_reason}"))
                self._metrics.batch_loop_restarts.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RESTART_DELAY_S)
                self._slots_free = asyncio.Semaphore(
                    self._policy.max_inflight_batches - len(self._tasks)
                )
                self._running = True

    def _fail_queued(self, error: SidecarError) -> None:
        for slot in self._queue.values():
            for waiter in slot.waiters:
                waiter.fail(error)
        self._queue.clear()
        self._queued_tokens = 0
        self._metrics.queue_pairs.set(0)

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
                for slot in batch:
                    slot.call = task
                    slot.batch = batch
                self._tasks.add(task)
                self._metrics.inflight_batches.inc()
                task.add_done_callback(functools.partial(self._call_done, batch))

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
        now = time.monotonic()
        while self._queue and len(batch) < self._policy.max_batch_pairs:
            slot = next(iter(self._queue.values()))
            # The first pair always goes, even over the budget, so no pair waits forever.
            if batch and tokens + slot.pair.n_tokens > self._policy.max_batch_tokens:
                break
            del self._queue[slot.pair.key]
            self._queued_tokens -= slot.pair.n_tokens
            if slot.deadline <= now:  # its requests are answering 503 right now
                self._metrics.dropped_pairs.inc()
                continue
            self._in_flight[slot.pair.key] = slot
            slot.sent_at = now
            batch.append(slot)
            tokens += slot.pair.n_tokens
        self._metrics.queue_pairs.set(len(self._queue))
        return batch

    async def _dispatch(self, batch: list[_Slot]) -> None:
        started = time.monotonic()
        self._metrics.batch_pairs.observe(len(batch))
        self._metrics.batch_tokens.observe(sum(slot.pair.n_tokens for slot in batch))
        try:
            scores = await self._score_batch(
                [slot.pair.payload for slot in batch],
                deadline=min(slot.deadline for slot in batch),
            )
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
                # Out of `_in_flight` first: a request arriving from now on queues the pair anew
                # (or finds it in the score cache) instead of joining a finished slot.
                self._forget_in_flight(slot)
                slot.score = score
                for waiter in slot.waiters:
                    waiter.pair_scored()

    def _call_done(self, batch: list[_Slot], task: asyncio.Task[None]) -> None:
        # A done callback, not `finally`: a call cancelled before it started runs no finally.
        self._tasks.discard(task)
        if task.cancelled():
            self._metrics.cancelled_calls.inc()
        cancelled = BackendUnavailable("the backend call was cancelled")
        for slot in batch:
            self._forget_in_flight(slot)
            # Each slot holds the batch that holds it: without this, ~200 objects a request are
            # left for the garbage collector's cycle search instead of freed at once.
            slot.batch = None
            if task.cancelled() and math.isnan(slot.score):
                for waiter in slot.waiters:
                    waiter.fail(cancelled)
        self._metrics.backend_calls.inc()
        self._metrics.inflight_batches.dec()
        self._slots_free.release()

    def _fail(self, batch: list[_Slot], error: SidecarError) -> None:
        self._metrics.backend_errors.labels(error.error_type).inc()
        for slot in batch:
            self._forget_in_flight(slot)
            for waiter in slot.waiters:
                waiter.fail(error)


def _record_stages(slots: Sequence[_Slot], entered: float) -> None:
    """A request's queue time (until its last pair was sent) and backend time (from then on)."""
    sent = max((slot.sent_at for slot in slots), default=0.0)
    if sent:
        record("queue", max(0.0, sent - entered))
        record("backend", time.monotonic() - max(sent, entered))
