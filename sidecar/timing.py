"""Per-stage timing of a scoring request: Prometheus histograms and the `Server-Timing` header.

The stages: `admission` (from arrival until admitted: reading, parsing, the admission decision),
`cache` (the score-cache lookup), `tokenize`, `queue` (until the request's last pair left the queue
for a backend call), `backend` (from then until its scores were back) and `total` (the handler).
The code on the request's path records into a context variable, so no stage is passed through the
layers between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sidecar.metrics import Metrics

STAGES = ("admission", "cache", "tokenize", "queue", "backend", "total")
TIMED_PATHS = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/v1/rerank/query-dsl"})


class _RequestStages:
    __slots__ = ("seconds", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}


_current: ContextVar[_RequestStages | None] = ContextVar("rerank_stages", default=None)


def record(stage: str, seconds: float) -> None:
    """Add `seconds` to `stage` of the request being served (nothing outside a timed request)."""
    stages = _current.get()
    if stages is not None:
        stages.seconds[stage] = stages.seconds.get(stage, 0.0) + seconds


def record_since_start(stage: str) -> None:
    """Record the time from the request's arrival until now as `stage`."""
    stages = _current.get()
    if stages is not None:
        stages.seconds[stage] = time.perf_counter() - stages.started


@contextmanager
def timed(stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - started)


def server_timing_header(stages: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={stages[name] * 1000:.3f}" for name in STAGES if name in stages)


def stage_timing(metrics: Metrics, *, send_header: bool) -> Middleware:
    """Times the scoring endpoints; observes the histograms and, if asked, sets Server-Timing."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in TIMED_PATHS:
            return await handler(request)
        stages = _RequestStages()
        token = _current.set(stages)
        try:
            response = await handler(request)
        finally:
            _current.reset(token)
            stages.seconds["total"] = time.perf_counter() - stages.started
            for name, seconds in stages.seconds.items():
                metrics.stage_seconds.labels(name).observe(seconds)
        if send_header and not response.prepared:
            response.headers["Server-Timing"] = server_timing_header(stages.seconds)
        return response

    return middleware
