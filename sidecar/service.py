"""Scoring as the HTTP layer sees it: texts in, one score per document out, in document order.

A request is admitted (or refused) by its size first, then tokenized and queued. With a fallback
(the embedded bi-encoder), a request is scored by it instead when the primary backend is known to be
down, its batch loop is restarting, or the queue is over the high-water mark; and a request whose
primary call fails, or whose backend goes down while it waits, is rescored by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from sidecar.admission import Admission
from sidecar.batcher import Batcher
from sidecar.errors import BackendUnavailable, PayloadTooLarge, SidecarError, ValidationFailed
from sidecar.metrics import Metrics
from sidecar.score_cache import ScoreCache, ScoredPair
from sidecar.scoring_types import Backend, PairEncoder, ScoreResult
from sidecar.timing import record_since_start, timed
from sidecar.tokenizer_process import TokenizerProcess


@dataclass(frozen=True)
class Scorer:
    """One model: how pairs are encoded for it, the queue in front of it, and its backend."""

    encoder: PairEncoder
    backend: Backend
    batcher: Batcher
    # Encodes pairs as `encoder` does, in a child process (Qwen encoders only).
    tokenizer_process: TokenizerProcess | None = None

    def unavailable_reason(self) -> str | None:
        if not self.batcher.running:
            return f"the batch loop is restarting after: {self.batcher.crash_reason}"
        return self.backend.unavailable_reason()


@dataclass(frozen=True)
class ServicePolicy:
    default_instruction: str
    max_documents: int
    timeout_s: float
    fallback_queue_fraction: float
    # Below this many characters, tokenizing on the loop costs less than handing it to a thread.
    tokenize_inline_max_chars: int = 0
    # Windows a long document is split into when a request does not say (1: cut it), and the
    # most a request may ask for.
    default_windows: int = 1
    max_windows: int = 1
    # Windows are cut so a request's pairs fit the queue: never a 429 on an idle sidecar.
    max_queue_pairs: int = 1 << 30
    # What else changes a score (max_length, window overlap): part of the score-cache key.
    cache_scope: str = ""


class RerankService:
    def __init__(
        self,
        *,
        primary: Scorer,
        fallback: Scorer | None,
        admission: Admission,
        metrics: Metrics,
        policy: ServicePolicy,
        score_cache: ScoreCache | None = None,
    ) -> None:
        self._score_cache = score_cache
        self._primary = primary
        self._fallback = fallback
        self._admission = admission
        self._metrics = metrics
        self._policy = policy

    @property
    def model_name(self) -> str:
        return self._primary.backend.model_name

    @property
    def model_kind(self) -> str:
        return self._primary.backend.model_kind

    def readiness(self) -> tuple[str | None, str | None]:
        """(why not ready, why degraded): from cached state only, so it answers at once."""
        problem = self._primary.unavailable_reason()
        if problem is None:
            return None, None
        if self._fallback is not None and self._fallback.unavailable_reason() is None:
            return None, problem
        return problem, None

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
        max_windows: int | None = None,
    ) -> list[float]:
        result = await self.score_detailed(
            query,
            documents,
            instruction=instruction,
            max_tokens_per_doc=max_tokens_per_doc,
            max_windows=max_windows,
        )
        return result.scores

    async def score_detailed(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
        max_windows: int | None = None,
    ) -> ScoreResult:
        deadline = time.monotonic() + self._policy.timeout_s
        if not documents:
            raise ValidationFailed("documents: at least one document is required")
        if len(documents) > self._policy.max_documents:
            raise PayloadTooLarge(
                f"documents: {len(documents)} documents, the limit is {self._policy.max_documents}"
            )
        windows = min(
            max_windows or self._policy.default_windows,
            self._policy.max_windows,
            max(1, self._policy.max_queue_pairs // len(documents)),
        )
        texts = _Texts(
            query,
            documents,
            instruction or self._policy.default_instruction,
            _Limits(max_tokens_per_doc, windows, self._policy.cache_scope),
        )
        with self._admission.admit(len(documents)):
            record_since_start("admission")
            if self._fallback is None:
                return await self._run(self._primary, texts, deadline)
            if reason := self._degrade_reason():
                return await self._degraded(reason, texts, deadline)
            primary = asyncio.create_task(self._run(self._primary, texts, deadline))
            went_down = asyncio.create_task(self._primary.backend.wait_unavailable())
            try:
                await asyncio.wait({primary, went_down}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                went_down.cancel()
                if not primary.done():
                    primary.cancel()
                    with contextlib.suppress(asyncio.CancelledError, SidecarError):
                        await primary
            if primary.cancelled():
                return await self._degraded("backend_unavailable", texts, deadline)
            try:
                return primary.result()
            except BackendUnavailable:
                return await self._degraded("backend_failed", texts, deadline)

    def _degrade_reason(self) -> str | None:
        if self._primary.unavailable_reason() is not None:
            return "backend_unavailable"
        if self._admission.would_exceed(self._policy.fallback_queue_fraction, 0):
            return "overloaded"
        return None

    async def _degraded(self, reason: str, texts: _Texts, deadline: float) -> ScoreResult:
        assert self._fallback is not None
        self._metrics.degraded_requests.labels(reason).inc()
        result = await self._run(self._fallback, texts, deadline)
        return ScoreResult(
            scores=result.scores,
            input_tokens=result.input_tokens,
            truncated_documents=result.truncated_documents,
            model_name=result.model_name,
            model_kind=result.model_kind,
            degraded=reason,
        )

    async def _run(self, scorer: Scorer, texts: _Texts, deadline: float) -> ScoreResult:
        def score_documents(indices: list[int]) -> Awaitable[list[ScoredPair]]:
            documents = [texts.documents[i] for i in indices]
            return self._score_pairs(scorer, texts, documents, deadline)

        self._metrics.pairs.inc(len(texts.documents))
        if self._score_cache is None:
            scored = await score_documents(list(range(len(texts.documents))))
        else:
            keys = self._score_cache.keys(
                scorer.backend.model_name,
                texts.instruction,
                texts.query,
                texts.limits.cache_part,
                texts.documents,
            )
            scored = await self._score_cache.score(keys, score_documents, deadline=deadline)
        truncated = sum(pair.truncated for pair in scored)
        self._metrics.truncated_documents.inc(truncated)
        return ScoreResult(
            scores=[pair.score for pair in scored],
            input_tokens=sum(pair.n_tokens for pair in scored),
            truncated_documents=truncated,
            model_name=scorer.backend.model_name,
            model_kind=scorer.backend.model_kind,
        )

    async def _score_pairs(
        self,
        scorer: Scorer,
        texts: _Texts,
        documents: Sequence[str],
        deadline: float,
    ) -> list[ScoredPair]:
        encode = functools.partial(
            scorer.encoder.encode,
            texts.query,
            documents,
            instruction=texts.instruction,
            max_tokens_per_doc=texts.limits.max_tokens_per_doc,
            max_windows=texts.limits.windows,
        )
        inline_max = self._policy.tokenize_inline_max_chars
        process = scorer.tokenizer_process
        # Under load the tokenizer process takes the request whatever its cost: not counted then.
        under_load = process is not None and self._admission.in_progress > 1
        cost = None if under_load else scorer.encoder.tokenizing_cost(texts.query, documents)
        with timed("tokenize"):
            pairs = None
            # With other requests in progress, or much to do, in the tokenizer process (another
            # core; at c=1 its round trip would only add latency).
            if process is not None and (cost is None or cost > inline_max):
                pairs = await process.encode(
                    texts.query,
                    documents,
                    instruction=texts.instruction,
                    max_tokens_per_doc=texts.limits.max_tokens_per_doc,
                    max_windows=texts.limits.windows,
                    deadline=deadline,
                )
            if pairs is None:
                # Small work on the loop, even under load: a thread's hand-overs cost more (at
                # c=16, fresh documents: 226 req/s in a thread, 320 on the loop). Larger work in
                # a thread, so no request holds the loop for long.
                if cost is None:
                    cost = scorer.encoder.tokenizing_cost(texts.query, documents)
                pairs = encode() if cost <= inline_max else await asyncio.to_thread(encode)
        # Windows beyond one per document take room in the queue like any pair.
        with self._admission.admit_more(len(pairs) - len(documents)):
            scores = await scorer.batcher.score(pairs, deadline=deadline)
        scored: list[ScoredPair | None] = [None] * len(documents)
        for pair, score in zip(pairs, scores, strict=True):
            best = scored[pair.document]
            if best is None:
                scored[pair.document] = ScoredPair(score, pair.n_tokens, pair.truncated)
            else:  # another window of the same document: keep the best, bill every one
                scored[pair.document] = ScoredPair(
                    max(best.score, score), best.n_tokens + pair.n_tokens, best.truncated
                )
        return [pair for pair in scored if pair is not None]


@dataclass(frozen=True)
class _Limits:
    max_tokens_per_doc: int | None
    windows: int
    scope: str

    @property
    def cache_part(self) -> str:
        """What of the limits changes a score: part of the score-cache key."""
        return f"{self.scope}/{self.max_tokens_per_doc}/{self.windows}"


@dataclass(frozen=True)
class _Texts:
    query: str
    documents: Sequence[str]
    instruction: str
    limits: _Limits
