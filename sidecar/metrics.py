"""Prometheus metrics, in a registry per application (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144)


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
        self.deduplicated_pairs = Counter(
            "rerank_deduplicated_pairs", "Pairs answered by an identical queued pair", registry=r
        )
        self.dropped_pairs = Counter(
            "rerank_dropped_pairs", "Queued pairs dropped because no request waits", registry=r
        )
        self.rejected_requests = Counter(
            "rerank_rejected_requests", "Requests refused because the queue is full", registry=r
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
