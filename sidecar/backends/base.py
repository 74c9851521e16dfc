"""What the batcher needs from a backend, and the unit of work it queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PreparedPair:
    """One (instruction, query, document) pair, encoded for its backend.

    `key` identifies the exact model input, so identical pairs queued together are scored once.
    """

    key: bytes
    n_tokens: int
    payload: object
    truncated: bool = False


class PairEncoder(Protocol):
    """Turns a request's texts into backend inputs (CPU-bound: called off the event loop)."""

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
    ) -> list[PreparedPair]: ...


class Backend(Protocol):
    """Scores batches of prepared pairs; one score per pair, in order."""

    model_name: str
    model_kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def score(self, payloads: Sequence[object]) -> list[float]: ...

    async def check_ready(self) -> None:
        """Raise BackendUnavailable unless the model answers."""
        ...
