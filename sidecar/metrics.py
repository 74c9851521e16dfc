"""Prometheus metrics, in a registry per application (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144)
# Stages of one request run from microseconds (a cache hit) to the deadline.
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, *_LATENCY_BUCKETS[1:])


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rerank_requests", "HTTP requests", ["endpoint", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "rerank_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pairs = Counter("rerank_pairs", "Pairs (query, document) received", registry=r)
        self.truncated_documents = Counter(
            "rerank_truncated_documents", "Documents cut to fit the token limits", registry=r
        )
        self.query_languages = Counter(
            "rerank_query_languages",
            "Query-DSL requests by the query language that picked the fields ('default': none)",
            ["language"],
            registry=r,
        )
        self.window_plans = Counter(
            "rerank_window_plans",
            "Searches the rerank window rewrote ('windowed') or left alone (why)",
            ["decision"],
            registry=r,
        )
        self.window_fallbacks = Counter(
            "rerank_window_fallbacks",
            "Windowed searches answered in their own order because scoring failed",
            ["error"],
            registry=r,
        )
        self.deduplicated_pairs = Counter(
            "rerank_deduplicated_pairs",
            "Pairs answered by an identical pair another request was scoring",
            registry=r,
        )
        self.dropped_pairs = Counter(
            "rerank_dropped_pairs", "Queued pairs dropped because no request waits", registry=r
        )
        self.rejected_requests = Counter(
            "rerank_rejected_requests",
            "Requests refused before any work: queue full or too many requests at once",
            registry=r,
        )
        self.requests_in_progress = Gauge(
            "rerank_requests_in_progress", "Admitted rerank requests not yet answered", registry=r
        )
        self.degraded_requests = Counter(
            "rerank_degraded_requests",
            "Requests scored by the fallback bi-encoder instead of vLLM",
            ["reason"],
            registry=r,
        )
        self.batch_loop_restarts = Counter(
            "rerank_batch_loop_restarts", "Restarts of the batch loop after a failure", registry=r
        )
        self.cancelled_calls = Counter(
            "rerank_cancelled_backend_calls",
            "Backend calls cancelled because no request waited for them any more",
            registry=r,
        )
        self.queue_pairs = Gauge("rerank_queue_pairs", "Pairs waiting for a batch", registry=r)
        self.inflight_batches = Gauge(
            "rerank_inflight_batches", "Backend calls in flight", registry=r
        )
        self.batch_pairs = Histogram(
            "rerank_batch_pairs", "Pairs per backend call", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "rerank_batch_tokens", "Tokens per backend call", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.backend_calls = Counter("rerank_backend_calls", "Backend calls", registry=r)
        self.backend_errors = Counter(
            "rerank_backend_errors", "Failed backend calls", ["type"], registry=r
        )
        self.backend_seconds = Histogram(
            "rerank_backend_seconds", "Backend call latency", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "rerank_stage_seconds",
            "Time of a scoring request in each stage (admission, cache, tokenize, queue, "
            "backend, total)",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.score_cache_hits = Counter(
            "rerank_score_cache_hits", "Pairs answered by the score cache", ["tier"], registry=r
        )
        self.score_cache_misses = Counter(
            "rerank_score_cache_misses", "Pairs not in the score cache", registry=r
        )
        self.score_cache_evictions = Counter(
            "rerank_score_cache_evictions",
            "Scores evicted from the in-process cache to stay within its size",
            registry=r,
        )
        self.tokenizer_process_documents = Counter(
            "rerank_tokenizer_process_documents",
            "Documents whose pairs the tokenizer child process encoded",
            registry=r,
        )
        self.tokenizer_process_failures = Counter(
            "rerank_tokenizer_process_failures",
            "Tokenizer child processes that died, stalled or broke the protocol (restarted)",
            registry=r,
        )
        self.score_cache_redis_errors = Counter(
            "rerank_score_cache_redis_errors",
            "Redis calls of the score cache that failed or timed out",
            registry=r,
        )
