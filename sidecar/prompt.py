"""Qwen3-Reranker prompt formatting and token-budget truncation (CONTRACTS.md §6).

The ids sent to vLLM are always a prefix of the tokenization of the exact formatted text, followed
by the suffix ids. The suffix starts with the special token `<|im_end|>`, which the tokenizer splits
on before BPE, so untruncated ids equal the tokenization of the whole text, and truncated ids equal
what the reference code produces when it cuts the pair at the token limit.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from sidecar.backends.base import PreparedPair
from sidecar.errors import ValidationFailed

QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_pair(instruction: str, query: str, document: str) -> str:
    """The exact text the Qwen3-Reranker reference code scores."""
    body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    return QWEN3_PREFIX + body + QWEN3_SUFFIX


def load_tokenizer(model: str) -> Tokenizer:
    """The model's own fast tokenizer, from a directory or a Hugging Face model name."""
    path = Path(model)
    if path.is_dir():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    return Tokenizer.from_pretrained(model)


class QwenPromptEncoder:
    def __init__(self, tokenizer: Tokenizer, *, max_length: int) -> None:
        self._tokenizer = tokenizer
        self._max_length = max_length
        self._suffix_ids = tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False).ids

    def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
    ) -> list[PreparedPair]:
        head = format_pair(instruction, query, "").removesuffix(QWEN3_SUFFIX)
        encodings = self._tokenizer.encode_batch(
            [head + doc for doc in documents], add_special_tokens=False
        )
        room = self._max_length - len(self._suffix_ids)
        pairs = []
        for encoding in encodings:
            ids, offsets = encoding.ids, encoding.offsets
            # The first token reaching into the document (the space after "<Document>:" merges
            # with the document's first word, so that token starts just before it).
            doc_start = next((i for i, (_, end) in enumerate(offsets) if end > len(head)), len(ids))
            if doc_start >= room:
                raise ValidationFailed(
                    f"query: the query and instruction take {doc_start + len(self._suffix_ids)} "
                    f"tokens, leaving no room for a document within max_length {self._max_length}"
                )
            keep = len(ids)
            if max_tokens_per_doc is not None:
                keep = min(keep, doc_start + max_tokens_per_doc)
            keep = min(keep, room)
            token_ids = ids[:keep] + self._suffix_ids
            pairs.append(
                PreparedPair(
                    key=hashlib.blake2b(_pack(token_ids), digest_size=16).digest(),
                    n_tokens=len(token_ids),
                    payload=token_ids,
                    truncated=keep < len(ids),
                )
            )
        return pairs


def _pack(token_ids: list[int]) -> bytes:
    return array("I", token_ids).tobytes()
