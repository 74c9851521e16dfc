"""The reference Qwen3-Reranker computation (QwenLM/Qwen3-Embedding README), on a local model.

Score = softmax over the logits of "yes" and "no" at the last position. Over-long pairs are cut the
way the README's `process_inputs` does: the formatted instruction/query/document text is tokenized
and truncated to `max_length` minus the prefix and suffix tokens, then framed by their ids.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sidecar.prompt import QWEN3_PREFIX, QWEN3_SUFFIX


class ReferenceReranker:
    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.yes_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.no_id = self.tokenizer.convert_tokens_to_ids("no")
        self.prefix_ids = self.tokenizer.encode(QWEN3_PREFIX, add_special_tokens=False)
        self.suffix_ids = self.tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False)

    def input_ids(self, instruction: str, query: str, document: str, max_length: int) -> list[int]:
        pair = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        body = self.tokenizer(
            pair,
            truncation="longest_first",
            max_length=max_length - len(self.prefix_ids) - len(self.suffix_ids),
            add_special_tokens=False,
        )["input_ids"]
        return [*self.prefix_ids, *body, *self.suffix_ids]

    def score(self, instruction: str, query: str, document: str, max_length: int = 8192) -> float:
        return self.score_ids(self.input_ids(instruction, query, document, max_length))

    def head_ids(self, instruction: str, query: str) -> list[int]:
        return self.tokenizer.encode(
            f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>:", add_special_tokens=False
        )

    def frame_length(self, instruction: str, query: str) -> int:
        """Tokens of a pair that are not the document's."""
        return len(self.prefix_ids) + len(self.head_ids(instruction, query)) + len(self.suffix_ids)

    def window_ids(
        self, instruction: str, query: str, document: str, *, window: int, overlap: int
    ) -> list[list[int]]:
        """A long document's windows of `window` tokens, `overlap` shared, each framed alone."""
        head = self.head_ids(instruction, query)
        body = self.tokenizer.encode(" " + document, add_special_tokens=False)
        starts = range(0, max(1, len(body) - overlap), window - overlap)
        return [
            [*self.prefix_ids, *head, *body[start : start + window], *self.suffix_ids]
            for start in starts
        ]

    @torch.no_grad()
    def score_ids(self, ids: list[int]) -> float:
        logits = self.model(torch.tensor([ids])).logits[0, -1]
        pair = torch.stack([logits[self.no_id], logits[self.yes_id]])
        return float(torch.softmax(pair, dim=0)[1])
