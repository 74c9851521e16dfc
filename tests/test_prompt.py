"""Qwen3-Reranker prompt formatting and token truncation, with the real Qwen tokenizer."""

from __future__ import annotations

import random
from array import array
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from sidecar.config import QWEN3_DEFAULT_INSTRUCTION
from sidecar.errors import ValidationFailed
from sidecar.prompt import (
    QWEN3_PREFIX,
    QWEN3_SUFFIX,
    QwenPromptEncoder,
    format_pair,
    instruction_part,
    query_part,
)
from sidecar.scoring_types import PreparedPair
from sidecar.tokenizer import load_tokenizer
from tests.support.tiny_qwen import qwen_tokenizer_dir

INSTRUCTION = QWEN3_DEFAULT_INSTRUCTION


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(qwen_tokenizer_dir() / "tokenizer.json"))


def ids_of(pair: PreparedPair) -> list[int]:
    # Queued ids take 4 bytes a token, not a Python list's ~36 (a full queue is 33 M tokens).
    assert isinstance(pair.payload, array) and pair.payload.itemsize == 4
    return pair.payload.tolist()


def test_format_pair_is_the_readme_text() -> None:
    # Text from the Qwen3-Embedding README (docs/contracts.md §6), written out in full on purpose.
    expected = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n"
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
        "<Query>: what is panda?\n<Document>: The giant panda is a bear."
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert format_pair(INSTRUCTION, "what is panda?", "The giant panda is a bear.") == expected


@pytest.mark.parametrize(
    "document",
    [
        "The capital of China is Beijing.",
        "北京是中国的首都",
        "mixed 中文 and English 🐼🎉",
        "",
        " x",
    ],
)
def test_untruncated_ids_equal_tokenizing_the_whole_text(
    tokenizer: Tokenizer, document: str
) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=8192)
    [pair] = encoder.encode(
        "capital?", [document], instruction=INSTRUCTION, max_tokens_per_doc=None
    )
    whole = tokenizer.encode(
        format_pair(INSTRUCTION, "capital?", document), add_special_tokens=False
    )
    assert ids_of(pair) == whole.ids
    assert pair.n_tokens == len(whole.ids)
    assert not pair.truncated


def test_long_document_is_cut_to_max_length_keeping_frame_and_query(tokenizer: Tokenizer) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=128)
    document = "pandas eat bamboo all day long. " * 100
    [pair] = encoder.encode(
        "what do pandas eat?", [document], instruction=INSTRUCTION, max_tokens_per_doc=None
    )
    assert pair.truncated and pair.n_tokens == 128
    ids = ids_of(pair)
    suffix = tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False).ids
    assert ids[-len(suffix) :] == suffix
    text = tokenizer.decode(ids[: -len(suffix)], skip_special_tokens=False)
    assert text.startswith(QWEN3_PREFIX)
    assert "<Query>: what do pandas eat?\n<Document>: pandas eat bamboo" in text
    # What is kept is a prefix of the whole text's tokenization: the reference cuts the same way.
    whole = tokenizer.encode(
        format_pair(INSTRUCTION, "what do pandas eat?", document), add_special_tokens=False
    )
    assert ids[: -len(suffix)] == whole.ids[: 128 - len(suffix)]


def test_max_tokens_per_doc_cuts_the_document_only(tokenizer: Tokenizer) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=8192)
    document = "one two three four five six seven eight nine ten"
    [full] = encoder.encode("q", [document], instruction=INSTRUCTION, max_tokens_per_doc=None)
    [cut] = encoder.encode("q", [document], instruction=INSTRUCTION, max_tokens_per_doc=3)
    assert cut.truncated and full.n_tokens - cut.n_tokens == 10 - 3
    assert cut.key != full.key
    decoded = tokenizer.decode(ids_of(cut), skip_special_tokens=False)
    assert "<Document>: one two three<|im_end|>" in decoded


def test_query_too_long_for_max_length_is_a_client_error_naming_the_query(
    tokenizer: Tokenizer,
) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=100)
    with pytest.raises(ValidationFailed, match=r"^query: .*max_length 100"):
        encoder.encode("word " * 200, ["doc"], instruction=INSTRUCTION, max_tokens_per_doc=None)


def test_identical_inputs_share_a_key_and_different_ones_do_not(tokenizer: Tokenizer) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=8192)
    a, b, c = encoder.encode(
        "q", ["same", "same", "other"], instruction=INSTRUCTION, max_tokens_per_doc=None
    )
    [d] = encoder.encode("q", ["same"], instruction="another instruction", max_tokens_per_doc=None)
    assert a.key == b.key
    assert len({a.key, c.key, d.key}) == 3


def random_text(rng: random.Random, length: int) -> str:
    alphabet = (
        "abcXYZ  \n\t\r0123456789.,:;!?'\"()<>[]{}/\\-_=+*&^%$#@~`|"
        "éüßçñ北京中国的首都東京ひらがなカタカナ한국어Ελληνικάкириллица"
        "\u0301\u200b\u2028\u00a0🐼🎉👍🏽🏔️"
    )
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_ids_equal_whole_text_tokenization_on_random_text(tokenizer: Tokenizer) -> None:
    """The instruction/query/document split never changes the ids: checked on 1,500 random
    pairs, with instructions drawn from a pool so that their cached tokens are reused."""
    rng = random.Random(20261122)
    encoder = QwenPromptEncoder(tokenizer, max_length=8192)
    instructions = [random_text(rng, rng.randint(1, 20)) for _ in range(40)]
    for _ in range(300):
        query = random_text(rng, rng.randint(0, 40))
        instruction = rng.choice(instructions)
        head = format_pair(instruction, query, "").removesuffix(" " + QWEN3_SUFFIX)
        assert instruction_part(instruction) + query_part(query) == head
        documents = [random_text(rng, rng.randint(0, 60)) for _ in range(5)]
        pairs = encoder.encode(query, documents, instruction=instruction, max_tokens_per_doc=None)
        for document, pair in zip(documents, pairs, strict=True):
            whole = tokenizer.encode(
                format_pair(instruction, query, document), add_special_tokens=False
            ).ids
            assert ids_of(pair) == whole, (query, instruction, document)


def test_truncation_and_padding_saved_in_tokenizer_json_are_switched_off(
    tokenizer: Tokenizer, tmp_path: Path
) -> None:
    saved = Tokenizer.from_str(tokenizer.to_str())
    saved.enable_truncation(16)
    saved.enable_padding(length=16)
    saved.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(str(tmp_path))
    long_text = "word " * 50
    expected = tokenizer.encode(long_text, add_special_tokens=False).ids
    assert len(expected) > 16
    assert loaded.encode(long_text, add_special_tokens=False).ids == expected
    assert len(loaded.encode("word", add_special_tokens=False).ids) == 1


def test_a_long_document_is_split_into_overlapping_windows_each_framed_alone(
    tokenizer: Tokenizer,
) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=128, window_overlap=8)
    document = "pandas eat bamboo all day long. " * 40
    pairs = encoder.encode(
        "what do pandas eat?",
        [document, "short"],
        instruction=INSTRUCTION,
        max_tokens_per_doc=None,
        max_windows=50,
    )
    windows = [pair for pair in pairs if pair.document == 0]
    assert len(windows) > 2 and [pair.document for pair in pairs[len(windows) :]] == [1]
    assert not any(pair.truncated for pair in pairs)
    [short] = encoder.encode(
        "what do pandas eat?", ["x"], instruction=INSTRUCTION, max_tokens_per_doc=None
    )
    suffix = tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False).ids
    head = ids_of(short)[: -len(suffix) - 1]  # the frame before the document's one token
    body = tokenizer.encode(" " + document, add_special_tokens=False).ids
    stride = 128 - len(head) - len(suffix) - 8
    for number, window in enumerate(windows):
        ids = ids_of(window)
        assert len(ids) <= 128 and ids[: len(head)] == head and ids[-len(suffix) :] == suffix
        start = number * stride
        assert ids[len(head) : -len(suffix)] == body[start : start + stride + 8]
    # Together the windows cover the whole document.
    assert number * stride + stride + 8 >= len(body)


def test_a_document_needing_more_windows_than_allowed_is_cut_and_marked(
    tokenizer: Tokenizer,
) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=128, window_overlap=8)
    pairs = encoder.encode(
        "q",
        ["pandas eat bamboo all day long. " * 40],
        instruction=INSTRUCTION,
        max_tokens_per_doc=None,
        max_windows=2,
    )
    assert len(pairs) == 2 and all(pair.truncated for pair in pairs)


def test_a_small_token_limit_shares_at_most_half_a_window(tokenizer: Tokenizer) -> None:
    encoder = QwenPromptEncoder(tokenizer, max_length=8192, window_overlap=64)
    pairs = encoder.encode(
        "q",
        ["pandas eat bamboo all day long. " * 40],
        instruction=INSTRUCTION,
        max_tokens_per_doc=10,
        max_windows=3,
    )
    first, second, _ = (ids_of(pair) for pair in pairs)
    suffix = len(tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False).ids)
    # Windows of 10 tokens advance by 5, not by 1 (10 - 64 would not advance at all).
    assert first[-suffix - 5 : -suffix] == second[-suffix - 10 : -suffix - 5]
