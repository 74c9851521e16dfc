"""All settings of the sidecar, in one typed place (flags and RERANK_* environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sidecar.backends.discovery import check_url

QWEN3_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RERANK_", extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    vllm_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="vLLM base URL(s), comma-separated; dns+http://name:port is one replica per "
        "address the name resolves to (a headless Service); empty = embedded CPU bi-encoder",
    )
    backend: Literal["auto", "vllm", "embedded", "null"] = Field(
        "auto",
        description="auto: vllm when --vllm-url is set, else embedded; null: no model (bench)",
    )
    model: str = Field(
        "Qwen/Qwen3-Reranker-0.6B",
        description="model name or directory; the tokenizer is read from it",
    )
    served_model_name: str | None = Field(
        None, description="name vLLM serves the model under (default: --model)"
    )
    max_length: int = Field(8192, ge=64, description="max tokens of one formatted pair")
    instruction: str = Field(QWEN3_DEFAULT_INSTRUCTION, min_length=1)
    long_documents: Literal["truncate", "chunk"] = Field(
        "truncate",
        description="a document longer than the room left by the query: truncate = cut it; "
        "chunk = score overlapping windows of it and keep the best (up to "
        "--max-windows-per-document)",
    )
    max_windows_per_document: int = Field(
        8,
        ge=1,
        description="windows of one long document at most (chunk mode, or a request's "
        "max_chunks_per_doc); each is a pair in the queue; the rest is cut",
    )
    window_overlap_tokens: int = Field(
        64, ge=0, description="tokens shared by consecutive windows of a long document"
    )

    max_batch_tokens: int = Field(16384, ge=1, description="token budget of one backend call")
    max_batch_pairs: int = Field(64, ge=1, description="pairs in one backend call")
    max_wait_ms: float = Field(5.0, ge=0, description="wait this long to fill a batch")
    max_inflight_batches: int = Field(4, ge=1, description="backend calls in flight")
    max_queue_pairs: int = Field(4096, ge=1, description="queued pairs before 429")
    max_documents: int = Field(1000, ge=1, description="documents in one request")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="request body limit")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of one request")
    max_concurrent_requests: int = Field(
        256, ge=1, description="rerank requests served at once; more are refused with 429"
    )
    fallback: Literal["none", "embedded"] = Field(
        "none",
        description="embedded: score with the embedded bi-encoder while vLLM is unreachable, "
        "failing or the queue is over --fallback-queue-fraction of --max-queue-pairs",
    )
    fallback_queue_fraction: float = Field(
        0.75, gt=0, le=1, description="queue high-water mark that sends new requests to fallback"
    )

    connect_timeout_s: float = Field(2.0, gt=0, description="vLLM connect timeout")
    replica_cooldown_s: float = Field(
        5.0, ge=0, description="a vLLM replica that failed is tried last for this long"
    )
    vllm_connections: int = Field(100, ge=1, description="pooled connections to each vLLM")
    health_check_interval_s: float = Field(
        1.0, gt=0, description="background health check period of each vLLM replica"
    )
    health_check_timeout_s: float = Field(
        3.0, gt=0, description="a replica that does not pass a health check in this time is down"
    )
    vllm_discovery_interval_s: float = Field(
        10.0, gt=0, description="dns+http:// vLLM names are resolved again this often"
    )
    vllm_keepalive_s: float = Field(
        0.0,
        ge=0,
        description="pooled connections to vLLM are replaced after this many seconds, so a "
        "Service or router in front of vLLM spreads them over new pods; 0 = never",
    )
    embedded_batch_size: int = Field(64, ge=1, description="texts per embedded-model forward")

    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's headers must arrive within this time"
    )
    body_timeout_s: float = Field(
        15.0, gt=0, description="a request's body must arrive within this time (408 after)"
    )
    keepalive_timeout_s: float = Field(75.0, ge=0, description="idle keep-alive connections")
    max_connection_age_s: float = Field(
        300.0,
        ge=0,
        description="a client connection older than this gets 'Connection: close' on its next "
        "response, so pooled client connections spread over sidecar pods added since; 0 = never",
    )
    drain_delay_s: float = Field(
        5.0,
        ge=0,
        description="after SIGTERM: /readyz is 503 and new requests are still served this long",
    )
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="after the drain delay: in-flight requests get this long to finish"
    )
    api_token: str | None = Field(
        None, description="when set, rerank endpoints require 'Authorization: Bearer <token>'"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    score_cache_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="in-process score cache, in bytes; 0 = off"
    )
    cache_ttl_s: float = Field(3600.0, gt=0, description="lifetime of a cached score")
    cache_url: str | None = Field(
        None, description="redis://host:6379/0: a score cache shared by all replicas"
    )
    cache_key_prefix: str = Field("rerank:", description="prefix of the sidecar's Redis keys")
    cache_timeout_ms: float = Field(
        50.0, gt=0, description="a Redis call slower than this is skipped (in-process only)"
    )
    document_cache_bytes: int = Field(
        32 * 1024 * 1024, ge=0, description="token ids of recent documents, in bytes; 0 = off"
    )
    tiktoken_core: bool = Field(
        True,
        description="Qwen's BPE ids from tiktoken's core (the same ids at about a tenth of the "
        "CPU; text with special tokens, text over 8,192 characters and any other tokenizer "
        "still go to the tokenizers library); false = the tokenizers library alone",
    )
    tokenize_inline_max_chars: int = Field(
        32768,
        ge=0,
        description="a request whose tokenizing is at most this many characters of tiktoken's "
        "work (~1.5 ms; a character the tokenizers library does counts 8) is tokenized on the "
        "event loop, where a thread's hand-overs would cost more; larger ones in a thread",
    )
    tokenizer_process: bool = Field(
        True,
        description="encode the pairs of a request in a child process (another core; the same "
        "encoder and settings, so the same pairs) while other requests are in progress or when "
        "its tokenizing is over --tokenize-inline-max-chars (Qwen backends)",
    )
    server_timing: bool = Field(True, description="Server-Timing header on rerank responses")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="the event loop of `serve`"
    )

    @field_validator("vllm_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
        if isinstance(value, list):
            return [str(url).strip().rstrip("/") for url in value if str(url).strip()]
        return value

    @field_validator("vllm_url")
    @classmethod
    def _usable_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if problem := check_url(url):
                raise ValueError(problem)
        return urls

    @model_validator(mode="after")
    def _largest_request_fits_the_queue(self) -> Settings:
        # Otherwise a request of max_documents could never be admitted: 429 forever.
        if self.max_queue_pairs < self.max_documents:
            raise ValueError(
                f"max_queue_pairs ({self.max_queue_pairs}) must be at least max_documents "
                f"({self.max_documents})"
            )
        return self

    @property
    def backend_kind(self) -> Literal["vllm", "embedded", "null"]:
        if self.backend == "auto":
            return "vllm" if self.vllm_url else "embedded"
        return self.backend

    @property
    def vllm_model_name(self) -> str:
        return self.served_model_name or self.model
