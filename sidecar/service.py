"""Scoring as the HTTP layer sees it: texts in, one score per document out, in document order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.backends.base import Backend, PairEncoder
from sidecar.batcher import Batcher
from sidecar.errors import PayloadTooLarge, ValidationFailed
from sidecar.metrics import Metrics


@dataclass(frozen=True)
class ScoreResult:
    scores: list[float]
    input_tokens: int
    truncated_documents: int


class RerankService:
    def __init__(
        self,
        *,
        encoder: PairEncoder,
        backend: Backend,
        batcher: Batcher,
        metrics: Metrics,
        default_instruction: str,
        max_documents: int,
        timeout_s: float,
    ) -> None:
        self._encoder = encoder
        self._backend = backend
        self._batcher = batcher
        self._metrics = metrics
        self._default_instruction = default_instruction
        self._max_documents = max_documents
        self._timeout_s = timeout_s

    @property
    def model_name(self) -> str:
        return self._backend.model_name

    @property
    def model_kind(self) -> str:
        return self._backend.model_kind

    async def check_ready(self) -> None:
        await self._backend.check_ready()

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> list[float]:
        result = await self.score_detailed(
            query, documents, instruction=instruction, max_tokens_per_doc=max_tokens_per_doc
        )
        return result.scores

    async def score_detailed(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> ScoreResult:
        deadline = time.monotonic() + self._timeout_s
        if not documents:
            raise ValidationFailed("documents: at least one document is required")
        if len(documents) > self._max_documents:
            raise PayloadTooLarge(
                f"documents: {len(documents)} documents, the limit is {self._max_documents}"
            )
        # Tokenizing is CPU work; the Rust tokenizer releases the GIL, so a thread frees the loop.
        pairs = await asyncio.to_thread(
            self._encoder.encode,
            query,
            documents,
            instruction=instruction or self._default_instruction,
            max_tokens_per_doc=max_tokens_per_doc,
        )
        truncated = sum(pair.truncated for pair in pairs)
        self._metrics.pairs.inc(len(pairs))
        self._metrics.truncated_documents.inc(truncated)
        scores = await self._batcher.score(pairs, deadline=deadline)
        return ScoreResult(
            scores=scores,
            input_tokens=sum(pair.n_tokens for pair in pairs),
            truncated_documents=truncated,
        )
