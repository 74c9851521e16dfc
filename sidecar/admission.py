"""Admission: a request is let in or refused (429) by its size, before any work is done on it.

Pairs count from admission to answer, so the bound covers pairs being tokenized, queued and in
flight alike; a second bound caps the requests served at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sidecar.errors import Overloaded
from sidecar.metrics import Metrics


class Admission:
    def __init__(
        self,
        *,
        max_pairs: int,
        max_requests: int,
        metrics: Metrics,
        retry_after_s: Callable[[int], int],
    ) -> None:
        self._max_pairs = max_pairs
        self._max_requests = max_requests
        self._metrics = metrics
        self._retry_after_s = retry_after_s
        self.pairs = 0
        self._in_progress = 0

    @property
    def in_progress(self) -> int:
        """Requests admitted and not yet answered."""
        return self._in_progress

    def would_exceed(self, fraction: float, pairs: int) -> bool:
        """Whether `pairs` more would fill more than `fraction` of the pair bound."""
        return self.pairs + pairs > fraction * self._max_pairs

    @contextmanager
    def admit(self, pairs: int) -> Iterator[None]:
        if self._in_progress >= self._max_requests:
            self._refuse(
                f"too many requests at once: {self._in_progress}, limit {self._max_requests}"
            )
        with self._holding(pairs, "more asked"):
            self._in_progress += 1
            self._metrics.requests_in_progress.set(self._in_progress)
            try:
                yield
            finally:
                self._in_progress -= 1
                self._metrics.requests_in_progress.set(self._in_progress)

    @contextmanager
    def admit_more(self, pairs: int) -> Iterator[None]:
        """More pairs for a request already admitted (a long document's extra windows)."""
        if pairs <= 0:
            yield
            return
        with self._holding(pairs, "more windows of long documents asked"):
            yield

    @contextmanager
    def _holding(self, pairs: int, asked: str) -> Iterator[None]:
        """`pairs` counted against the bound while the block runs, or a 429 now."""
        if self.would_exceed(1.0, pairs):
            self._refuse(
                f"queue full: {self.pairs} pairs queued or in flight, {pairs} {asked}, "
                f"limit {self._max_pairs}"
            )
        self.pairs += pairs
        try:
            yield
        finally:
            self.pairs -= pairs

    def _refuse(self, message: str) -> None:
        self._metrics.rejected_requests.inc()
        raise Overloaded(message, retry_after_s=self._retry_after_s(self.pairs))
