"""The document token cache: a cached document gives exactly the ids of tokenizing it afresh."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from sidecar.config import QWEN3_DEFAULT_INSTRUCTION
from sidecar.prompt import QwenPromptEncoder
from sidecar.token_cache import DocumentTokenCache
from tests.support.tiny_qwen import qwen_tokenizer_dir


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(qwen_tokenizer_dir() / "tokenizer.json"))


TEXT = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Cc")), max_size=60
)


@given(documents=st.lists(TEXT, min_size=1, max_size=8), limit=st.none() | st.integers(1, 20))
@settings(max_examples=60, deadline=None)
def test_cached_and_fresh_encodings_are_identical(
    tokenizer: Tokenizer, documents: list[str], limit: int | None
) -> None:
    fresh = QwenPromptEncoder(tokenizer, max_length=512)
    cached = QwenPromptEncoder(tokenizer, max_length=512, document_cache_bytes=1 << 20)
    # Twice through the cached encoder: the second pass is served from the cache.
    for _ in range(2):
        got = cached.encode(
            "query?", documents, instruction=QWEN3_DEFAULT_INSTRUCTION, max_tokens_per_doc=limit
        )
        want = fresh.encode(
            "query?", documents, instruction=QWEN3_DEFAULT_INSTRUCTION, max_tokens_per_doc=limit
        )
        assert got == want


def test_only_documents_not_cached_are_tokenized() -> None:
    cache = DocumentTokenCache(1 << 20)
    calls: list[list[str]] = []

    def tokenize(texts: list[str]) -> list[array[int]]:
        calls.append(texts)
        return [array("I", [len(text)] * len(text)) for text in texts]

    def ids(texts: list[str]) -> list[list[int]]:
        return [found.tolist() for found in cache.ids(texts, tokenize)]

    assert ids(["ab", "c"]) == [[2, 2], [1]]
    assert ids(["c", "dddd", "ab"]) == [[1], [4, 4, 4, 4], [2, 2]]
    assert calls == [["ab", "c"], ["dddd"]]


def test_the_byte_bound_holds() -> None:
    cache = DocumentTokenCache(2000)
    texts = [f"document {i} " * 20 for i in range(50)]
    cache.ids(texts, lambda batch: [array("I", range(40)) for _ in batch])
    calls: list[list[str]] = []

    def tokenize(batch: list[str]) -> list[array[int]]:
        calls.append(batch)
        return [array("I", range(40)) for _ in batch]

    cache.ids(texts, tokenize)
    # Most of the 50 were evicted and tokenized again; the last few were still there.
    assert 0 < len(texts) - len(calls[0]) < 10
