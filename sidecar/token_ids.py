"""Exact byte-level BPE ids at about a tenth of the fast tokenizer's CPU, for Qwen's tokenizer.

Qwen's vocabulary comes from tiktoken (the merge that makes each token is listed in token-id
order), so tiktoken's BPE core, given the model's own vocabulary and pre-tokenizer regex, yields
the same ids as the model's `tokenizers.Tokenizer` for text that holds no added token. What it
does not do is routed to the tokenizer itself, so every id stays the reference tokenization:

- text that contains an added token's string (`<|im_end|>`, `<think>`: the tokenizer splits
  those before BPE) or that tiktoken refuses;
- the normalizer: ASCII text is left as it is (NFC cannot change it); other text goes through the
  tokenizer's own normalizer, not Python's `unicodedata`, whose Unicode version orders some
  combining marks differently;
- long text (above `max_chars`): it is rare in a catalog, and tiktoken's regex engine recurses on
  long runs of whitespace (a million spaces overflow its stack and panic), so a bound keeps every
  call far from that.

`TokenIds` uses tiktoken only for that shape of tokenizer (BPE, byte-level, every byte a token,
every other token made by one merge listed in token-id order, one Split regex, NFC or no
normalizer, no truncation or padding); any other does all the work itself. Tests compare the
two on every vocabulary token, random merges, every code point and random text
(tests/test_token_ids.py).
"""

from __future__ import annotations

import functools
import logging
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import tiktoken
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# About 0.4 ms of tiktoken's time.
DEFAULT_MAX_CHARS = 8192
# The tokenizers library's CPU per character against tiktoken's (a 45-word listing: 120-140 us
# against 14 us): what a character sent to the slow path weighs in `cost`.
SLOW_PATH_WEIGHT = 8


def _byte_of_char() -> dict[str, str]:
    """The inverse of GPT-2's byte-to-unicode table, which byte-level BPE vocabularies are
    written in: printable bytes stand for themselves, the rest are shifted above U+0100. Each
    byte as the Latin-1 character of the same value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in printable]
    table = {chr(b): chr(b) for b in printable}
    table.update({chr(256 + i): chr(b) for i, b in enumerate(shifted)})
    return table


def _unsupported(config: dict[str, Any]) -> str | None:
    """Why tiktoken's core cannot reproduce this tokenizer's model and pre-tokenizer, or None
    if it can. Cutting and padding are the object's state, checked by TokenIds at each use."""
    model = config["model"]
    if model.get("type") != "BPE":
        return "not a BPE model"
    if (
        model.get("dropout")
        or model.get("continuing_subword_prefix")
        or model.get("end_of_word_suffix")
    ):
        return "BPE with dropout or subword affixes"
    if model.get("byte_fallback") or model.get("unk_token"):
        return "BPE with an unknown-token fallback"
    normalizer = config.get("normalizer")
    if normalizer not in (None, {"type": "NFC"}):
        return f"normalizer {normalizer}"
    pre = config.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [])
    if (
        pre.get("type") != "Sequence"
        or len(steps) != 2
        or steps[0].get("type") != "Split"
        or "Regex" not in steps[0].get("pattern", {})
        or steps[0].get("behavior") != "Isolated"
        or steps[0].get("invert")
        or steps[1]
        != {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        }
    ):
        return "pre-tokenizer is not one Split regex followed by byte-level"
    vocab: dict[str, int] = model["vocab"]
    byte_of = _byte_of_char()
    if any(token not in vocab for token in byte_of) or any(
        char not in byte_of for token in vocab for char in token
    ):
        return "the vocabulary is not byte-level (a byte missing, or a token outside the bytes)"
    # A merge is a [left, right] pair, or "left right" in older files (no byte-level token
    # holds a space: it is written as "Ġ").
    merged = ["".join(m) if isinstance(m, list) else m.replace(" ", "") for m in model["merges"]]
    merged_ids = [vocab.get(token, -1) for token in merged]
    if -1 in merged_ids or merged_ids != sorted(merged_ids):
        return "merges are not in token-id order (tiktoken ranks merges by token id)"
    # tiktoken merges any two parts that make a token; the tokenizer only the listed pair. They
    # differ where a token has no listed merge (refused here) or where rank order reaches a
    # token by another pair than its listed one (not so for Qwen's: tests/test_token_ids.py).
    if len(set(merged_ids)) != len(merged_ids) or len(vocab) != len(byte_of) + len(merged_ids):
        return "a token without exactly one merge"
    return None


class TokenIds:
    """Ids of texts: tiktoken's core where it is exact (`fast` and a supported tokenizer), the
    tokenizer everywhere else."""

    def __init__(
        self, tokenizer: Tokenizer, *, fast: bool = True, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self._tokenizer = tokenizer
        self._normalizer = tokenizer.normalizer
        self._max_chars = max_chars
        # The core is the vocabulary and regex alone, cached per tokenizer object; whether the
        # object cuts or pads (now, not when its core was built) is for this encoder to check.
        cuts = tokenizer.truncation is not None or tokenizer.padding is not None
        self._core = tiktoken_core(tokenizer) if fast and not cuts else None
        added = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
        self._added = tuple(added)
        self._added_first_chars = frozenset(token[0] for token in added if token)

    @property
    def fast(self) -> bool:
        return self._core is not None

    def encode(self, texts: Sequence[str]) -> list[array[int]]:
        """Each text's ids, as `tokenizer.encode(text, add_special_tokens=False)` gives them."""
        out = [self._fast_ids(text) for text in texts]
        slow = [i for i, ids in enumerate(out) if ids is None]
        if slow:
            # The batch call releases the GIL (encode does not: a 5 MB query froze the loop) and
            # skips character offsets, which nothing here needs.
            encodings = self._tokenizer.encode_batch_fast(
                [texts[i] for i in slow], add_special_tokens=False
            )
            for i, encoding in zip(slow, encodings, strict=True):
                out[i] = array("I", encoding.ids)
        return [ids for ids in out if ids is not None]

    def cost(self, texts: Iterable[str]) -> int:
        """The work of `encode(texts)` in characters of tiktoken's: a character the tokenizers
        library does weighs SLOW_PATH_WEIGHT (all of them when tiktoken is off)."""
        if self._core is None:
            return SLOW_PATH_WEIGHT * sum(map(len, texts))
        return sum(len(text) * (SLOW_PATH_WEIGHT if self._slow(text) else 1) for text in texts)

    def _slow(self, text: str) -> bool:
        return len(text) > self._max_chars or self._may_hold_added_token(text)

    def _fast_ids(self, text: str) -> array[int] | None:
        if self._core is None or self._slow(text):
            return None
        try:
            if not text.isascii() and self._normalizer is not None:
                # NFC can lengthen text (U+0958 is two characters after it).
                text = self._normalizer.normalize_str(text)
                if self._slow(text):
                    return None
            return array("I", self._core.encode_ordinary(text))
        except Exception:  # e.g. lone surrogates: the tokenizer decides what they are
            return None

    def _may_hold_added_token(self, text: str) -> bool:
        return any(first in text for first in self._added_first_chars) and any(
            token in text for token in self._added
        )


# Building the core takes about a second (151k tokens); encoders made from the same tokenizer
# object (a process has one; tests make many) share it. The cache holds the tokenizer, so an
# identity-keyed entry never outlives its object.
@functools.lru_cache(maxsize=4)
def tiktoken_core(tokenizer: Tokenizer) -> tiktoken.Encoding | None:
    """tiktoken's Encoding of this tokenizer's vocabulary and regex, or None if it cannot give
    the tokenizer's own ids."""
    config = orjson.loads(tokenizer.to_str())
    reason = _unsupported(config)
    if reason is None:
        to_bytes = str.maketrans(_byte_of_char())
        ranks = {
            token.translate(to_bytes).encode("latin-1"): rank
            for token, rank in config["model"]["vocab"].items()
        }
        pattern = config["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
        try:
            return tiktoken.Encoding(
                "sidecar-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={}
            )
        except ValueError as exc:  # a regex tiktoken's engine does not take
            reason = f"tiktoken refused it: {exc}"
    log.info("tokenizing with the tokenizer alone: %s", reason)
    return None
