"""Scoring backends: vLLM (Qwen3-Reranker), the embedded CPU bi-encoder, and a null backend."""

from __future__ import annotations

from sidecar.backends.base import Backend, PairEncoder
from sidecar.config import Settings


def build_backend(settings: Settings) -> tuple[PairEncoder, Backend]:
    """The pair encoder and backend the settings ask for."""
    kind = settings.backend_kind
    if kind == "embedded":
        from sidecar.backends.embedded import (
            MiniLMBackend,
            MiniLMPairEncoder,
            load_minilm_tokenizer,
        )

        return MiniLMPairEncoder(load_minilm_tokenizer()), MiniLMBackend()

    from sidecar.prompt import QwenPromptEncoder, load_tokenizer

    encoder = QwenPromptEncoder(load_tokenizer(settings.model), max_length=settings.max_length)
    if kind == "null":
        from sidecar.backends.null import NullBackend

        return encoder, NullBackend(settings.vllm_model_name)

    from sidecar.backends.vllm import VLLMBackend

    return encoder, VLLMBackend(
        settings.vllm_url,
        model_name=settings.vllm_model_name,
        timeout_s=settings.request_timeout_s,
        max_length=settings.max_length,
    )
