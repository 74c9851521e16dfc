"""All settings of the sidecar, in one typed place (flags and RERANK_* environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

QWEN3_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RERANK_", extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    vllm_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="vLLM base URL(s), comma-separated; empty = embedded CPU bi-encoder",
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

    max_batch_tokens: int = Field(16384, ge=1, description="token budget of one backend call")
    max_batch_pairs: int = Field(64, ge=1, description="pairs in one backend call")
    max_wait_ms: float = Field(5.0, ge=0, description="wait this long to fill a batch")
    max_inflight_batches: int = Field(4, ge=1, description="backend calls in flight")
    max_queue_pairs: int = Field(4096, ge=1, description="queued pairs before 429")
    max_documents: int = Field(1000, ge=1, description="documents in one request")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="request body limit")
    request_timeout_s: float = Field(30.0, gt=0, description="deadline of one request")
    api_token: str | None = Field(
        None, description="when set, rerank endpoints require 'Authorization: Bearer <token>'"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("vllm_url", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
        if isinstance(value, list):
            return [str(url).strip().rstrip("/") for url in value if str(url).strip()]
        return value

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
