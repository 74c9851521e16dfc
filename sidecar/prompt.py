"""Qwen3-Reranker prompt formatting and token-budget truncation (docs/contracts.md §6).

The ids sent to vLLM must equal the tokenization of the exact formatted text. It is tokenized in
three pieces that concatenate to the whole text's ids: the instruction's part (prefix,
instruction, "<Query>:"; once per instruction, cached: it is most of the head), the query's
(" " + query + "\n<Document>:", once per request) and each document's (" " + text). The Qwen
pre-tokenizer always splits between a ":" and the space after it, and the space joins the next
word (a property test checks the pieces against the whole text on random text). The suffix
starts with the special token `<|im_end|>`, split off before BPE. A document cut at the token
limit is cut in the same place as the reference code cuts the pair.

With `max_windows` > 1 a document longer than the room left by the query is not cut but split into
windows of that many tokens overlapping by `window_overlap` tokens, each framed as a pair of its
own (the service keeps the best window's score); a document that needs more windows than
`max_windows` is cut after the last one and counted as truncated.

A pair's ids are kept as a 4-byte `array`, not a `list[int]` (~36 bytes a token: a pointer and an
int object), because a full queue holds max_queue_pairs x max_length of them; the vLLM backend
writes them out as a JSON list.
"""

from __future__ import annotations

import functools
import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from sidecar.errors import ValidationFailed
from sidecar.scoring_types import PreparedPair
from sidecar.token_cache import DocumentTokenCache
from sidecar.token_ids import TokenIds
from sidecar.tokenizer import load_tokenizer

QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


# Distinct instructions whose tokens are kept (a set-up has a few; a request may send its own).
INSTRUCTION_CACHE_SIZE = 64


def format_pair(instruction: str, query: str, document: str) -> str:
    """The exact text the Qwen3-Reranker reference code scores."""
    body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    return QWEN3_PREFIX + body + QWEN3_SUFFIX


def instruction_part(instruction: str) -> str:
    """The start of format_pair's text, up to the query's space."""
    return f"{QWEN3_PREFIX}<Instruct>: {instruction}\n<Query>:"


def query_part(query: str) -> str:
    """format_pair's text from the query's space up to the document's."""
    return f" {query}\n<Document>:"


class QwenPromptEncoder:
    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        document_cache_bytes: int = 0,
        window_overlap: int = 0,
        tiktoken_core: bool = True,
    ) -> None:
        self._texts = TokenIds(tokenizer, fast=tiktoken_core)
        self._max_length = max_length
        self._window_overlap = window_overlap
        self._documents = DocumentTokenCache(document_cache_bytes)
        self._suffix_ids = self._ids(QWEN3_SUFFIX)
        self._instruction_ids = functools.lru_cache(maxsize=INSTRUCTION_CACHE_SIZE)(
            lambda instruction: self._ids(instruction_part(instruction))
        )

    def _ids(self, text: str) -> array[int]:
        return self._texts.encode([text])[0]

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
        max_windows: int = 1,
    ) -> list[PreparedPair]:
        # Read only: the cached array is shared by every request with this instruction.
        head_ids = self._instruction_ids(instruction) + self._ids(query_part(query))
        room = self._max_length - len(head_ids) - len(self._suffix_ids)
        if room < 1:
            raise ValidationFailed(
                f"query: the query and instruction take {len(head_ids) + len(self._suffix_ids)} "
                f"tokens, leaving no room for a document within max_length {self._max_length}"
            )
        limit = min(room, max_tokens_per_doc or room)
        # At most half a window shared: a small max_tokens_per_doc must not make windows of
        # near-copies (an overlap as large as the window would never advance).
        stride = limit - min(self._window_overlap, limit // 2)
        pairs: list[PreparedPair] = []

        def add(token_ids: array[int], truncated: bool, document: int) -> None:
            key = hashlib.blake2b(token_ids, digest_size=16).digest()
            pairs.append(PreparedPair(key, len(token_ids), token_ids, truncated, document))

        all_ids = self._documents.ids(documents, self._tokenize_documents)
        for document, doc_ids in enumerate(all_ids):
            if len(doc_ids) <= limit:  # most documents: one window, nothing cut
                add(head_ids + doc_ids + self._suffix_ids, False, document)
                continue
            starts = range(0, max(1, len(doc_ids) - (limit - stride)), stride)
            kept = starts[:max_windows]
            for start in kept:
                window = head_ids + doc_ids[start : start + limit] + self._suffix_ids
                add(window, kept[-1] + limit < len(doc_ids), document)
        return pairs

    def tokenizing_cost(self, query: str, documents: Sequence[str]) -> int:
        return self._texts.cost([query, *self._documents.missing(documents)])

    def _tokenize_documents(self, documents: list[str]) -> list[array[int]]:
        return self._texts.encode([" " + doc for doc in documents])


@dataclass(frozen=True)
class QwenEncoderOptions:
    """A QwenPromptEncoder's settings: the sidecar and its tokenizer process build the same one."""

    model: str
    max_length: int
    document_cache_bytes: int
    window_overlap: int
    tiktoken_core: bool

    def build(self) -> QwenPromptEncoder:
        return QwenPromptEncoder(
            load_tokenizer(self.model),
            max_length=self.max_length,
            document_cache_bytes=self.document_cache_bytes,
            window_overlap=self.window_overlap,
            tiktoken_core=self.tiktoken_core,
        )
