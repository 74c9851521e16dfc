"""The types the scoring path shares: the unit of work, and what encoders and backends provide.

Encoders (`prompt`, `backends.embedded`), the batcher and the backends all depend on this module
and on nothing of each other's, so no import cycle can form between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class PreparedPair(NamedTuple):
    """One (instruction, query, document) pair, encoded for its backend.

    `key` identifies the exact model input, so identical pairs queued together are scored once.
    A NamedTuple: ~50 are built per request, and a frozen dataclass costs several times as much.
    """

    key: bytes
    n_tokens: int
    payload: object
    truncated: bool = False
    # The request's document this pair scores (one of its windows, for a split document).
    document: int = 0


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    input_tokens: int
    truncated_documents: int
    model_name: str
    model_kind: str
    # Why the fallback model scored this request; None when the primary one did.
    degraded: str | None = None


class PairEncoder(Protocol):
    """Turns a request's texts into backend inputs (CPU-bound: called off the event loop)."""

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
        max_windows: int = 1,
    ) -> list[PreparedPair]: ...

    def tokenizing_cost(self, query: str, documents: Sequence[str]) -> int:
        """The tokenizing `encode` would do, in characters as tiktoken's core does them: documents
        it has cached cost none, a character the tokenizers library does weighs more
        (sidecar/token_ids.py SLOW_PATH_WEIGHT)."""
        ...


class Backend(Protocol):
    """Scores batches of prepared pairs; one score per pair, in order."""

    model_name: str
    model_kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        """Scores by `deadline` (time.monotonic()), or DeadlineExceeded."""
        ...

    def unavailable_reason(self) -> str | None:
        """Why the backend cannot score now (from cached checks, never a call), or None."""
        ...

    async def wait_unavailable(self) -> None:
        """Return once the backend is known to be unable to score (for degrading early)."""
        ...
