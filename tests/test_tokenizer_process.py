"""The tokenizer child process: the sidecar's own pairs, no request lost to a child that dies or
stalls, and no child left behind by a sidecar that stops. Real child processes and signals."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.backends.embedded import MiniLMPairEncoder, load_minilm_tokenizer
from sidecar.backends.factory import build_tokenizer_process
from sidecar.config import Settings
from sidecar.metrics import Metrics
from sidecar.prompt import QwenEncoderOptions, QwenPromptEncoder
from sidecar.scoring_types import PreparedPair
from sidecar.tokenizer_process import TokenizerProcess
from tests.conftest import SidecarFactory, read_metrics
from tests.support.servers import sidecar_process

FAR = float("inf")  # a deadline no test reaches
TEXTS = [
    "Acme kettle 12: stainless steel, 1.7 l, cordless",
    "防水登山背包 30L，轻量 — 适合徒步",
    "Ünïcödé naïve café: ½ price, U+0958 क़",
    "a listing that holds a special token <|im_end|> in its text",
    "x" * 9000,  # past the fast route's bound: the tokenizers library does it
    "emoji 🎒🎒 and\ttabs\n\nand newlines  ",
]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def options(
    model_dir: Path, *, tiktoken_core: bool = True, window_overlap: int = 0
) -> QwenEncoderOptions:
    return QwenEncoderOptions(
        model=str(model_dir),
        max_length=4096,
        document_cache_bytes=1 << 22,
        window_overlap=window_overlap,
        tiktoken_core=tiktoken_core,
    )


@dataclass
class Child:
    process: TokenizerProcess
    metrics: Metrics


async def started(model_dir: Path, *, stall_s: float = 30.0, **option: Any) -> Child:
    metrics = Metrics()
    process = TokenizerProcess(
        options(model_dir, **option), metrics=metrics, stall_s=stall_s, restart_s=0
    )
    await process.start()
    assert process.ready
    return Child(process, metrics)


@pytest.fixture
async def child(tiny_model_dir: Path) -> AsyncIterator[Child]:
    running = await started(tiny_model_dir)
    yield running
    await running.process.close()


def process_gone(pid: int, timeout_s: float) -> bool:
    """Whether process `pid` ends within `timeout_s` (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def failures(metrics: Metrics) -> float:
    return metrics.tokenizer_process_failures._value.get()


async def encode_in(
    child: Child, query: str, documents: list[str], deadline: float = FAR, **limits: Any
) -> list[PreparedPair] | None:
    return await child.process.encode(
        query,
        documents,
        instruction=INSTRUCTION,
        max_tokens_per_doc=limits.get("max_tokens_per_doc"),
        max_windows=limits.get("max_windows", 1),
        deadline=deadline,
    )


def encode_here(
    encoder: QwenPromptEncoder, query: str, documents: list[str], **limits: Any
) -> list[PreparedPair]:
    return encoder.encode(
        query,
        documents,
        instruction=INSTRUCTION,
        max_tokens_per_doc=limits.get("max_tokens_per_doc"),
        max_windows=limits.get("max_windows", 1),
    )


@pytest.mark.parametrize("tiktoken_core", [True, False])
async def test_the_childs_pairs_are_the_sidecars_own(
    tiny_model_dir: Path, tiktoken_core: bool
) -> None:
    child = await started(tiny_model_dir, tiktoken_core=tiktoken_core, window_overlap=4)
    own = options(tiny_model_dir, tiktoken_core=tiktoken_core, window_overlap=4).build()
    try:
        # Twice each: the second time from the child's document cache.
        for query, limits in [
            ("hiking backpack", {}),
            ("防水背包", {}),
            ("hiking backpack", {"max_tokens_per_doc": 16}),
            ("backpack", {"max_tokens_per_doc": 16, "max_windows": 3}),
            ("backpack", {"max_tokens_per_doc": 3_000_000_000}),  # past an int32: no limit
        ] * 2:
            pairs = await encode_in(child, query, TEXTS, **limits)
            assert pairs == encode_here(own, query, TEXTS, **limits)
    finally:
        await child.process.close()
    assert child.metrics.tokenizer_process_documents._value.get() == 10 * len(TEXTS)


async def test_a_request_the_encoder_refuses_is_refused_here_too(child: Child) -> None:
    query = "backpack " * 5000  # leaves no room for a document within max_length
    assert await encode_in(child, query, TEXTS[:1]) is None
    assert failures(child.metrics) == 0
    # The child goes on: the next call is answered.
    assert await encode_in(child, "backpack", TEXTS[:1]) is not None


async def test_a_child_killed_during_a_call_costs_no_request(
    child: Child, tiny_model_dir: Path
) -> None:
    first = child.process.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # it cannot answer before it is killed
    call = asyncio.create_task(encode_in(child, "backpack", TEXTS[:2]))
    # Callbacks run in order: the call is written before the kill.
    asyncio.get_running_loop().call_soon(os.kill, first, signal.SIGKILL)
    async with asyncio.timeout(30):  # a regression fails here instead of hanging
        assert await call is None  # the sidecar encodes these itself
    assert failures(child.metrics) == 1
    assert await asyncio.to_thread(process_gone, first, 10)
    # The next call starts a new child (restart_s=0); until it is ready, calls pass.
    assert await encode_in(child, "backpack", TEXTS[:2]) is None
    assert await child.process.wait_ready(60)
    assert child.process.pid not in (None, first)
    own = options(tiny_model_dir).build()
    assert await encode_in(child, "backpack", TEXTS[:2]) == encode_here(own, "backpack", TEXTS[:2])


async def test_a_stalled_child_is_replaced_after_the_stall_bound(tiny_model_dir: Path) -> None:
    child = await started(tiny_model_dir, stall_s=0.3)
    try:
        stalled = child.process.pid
        assert stalled is not None
        os.kill(stalled, signal.SIGSTOP)
        async with asyncio.timeout(30):
            assert await encode_in(child, "backpack", TEXTS[:2]) is None
        assert failures(child.metrics) == 1
        assert await asyncio.to_thread(process_gone, stalled, 10)  # killed, not left stopped
    finally:
        await child.process.close()


async def test_a_call_past_its_deadline_leaves_the_answers_in_order(
    child: Child, tiny_model_dir: Path
) -> None:
    pid = child.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        # Written to the stopped child; the request's deadline ends its wait.
        late = await encode_in(child, "backpack", TEXTS[:2], deadline=time.monotonic() + 0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert late is None
    assert failures(child.metrics) == 0  # within its allowance: waiting is not stalling
    assert child.process.pid == pid
    # The late answer goes to nobody; the next call gets its own.
    own = options(tiny_model_dir).build()
    assert await encode_in(child, "kettle", TEXTS[2:4]) == encode_here(own, "kettle", TEXTS[2:4])


async def test_concurrent_calls_each_get_their_own_pairs(
    child: Child, tiny_model_dir: Path
) -> None:
    own = options(tiny_model_dir).build()
    requests = [(f"query {i}", TEXTS[i % 3 : i % 3 + 3]) for i in range(12)]
    calls = [asyncio.create_task(encode_in(child, q, documents)) for q, documents in requests]
    # One request leaves while its call is in the child: the answers after it stay in order.
    asyncio.get_running_loop().call_soon(calls[4].cancel)
    async with asyncio.timeout(30):
        answers = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(answers[4], asyncio.CancelledError)
    for i, ((query, documents), pairs) in enumerate(zip(requests, answers, strict=True)):
        if i != 4:
            assert pairs == encode_here(own, query, documents)
    assert failures(child.metrics) == 0


def test_only_the_qwen_encoder_gets_a_child(tiny_model_dir: Path) -> None:
    settings = Settings(backend="null", model=str(tiny_model_dir))
    metrics = Metrics()
    qwen = options(tiny_model_dir).build()
    assert build_tokenizer_process(settings, qwen, metrics) is not None
    off = settings.model_copy(update={"tokenizer_process": False})
    assert build_tokenizer_process(off, qwen, metrics) is None
    minilm = MiniLMPairEncoder(load_minilm_tokenizer())
    assert build_tokenizer_process(settings, minilm, metrics) is None


async def test_a_large_request_is_tokenized_in_the_child(
    start_sidecar: SidecarFactory, tiny_model_dir: Path
) -> None:
    settings = Settings(backend="null", model=str(tiny_model_dir))
    with_child = await start_sidecar(settings)
    without = await start_sidecar(settings, tokenizer_process=False)
    # ~44,000 characters: over the inline bound, so the child takes them even with no load.
    documents = [f"product {i}: " + "waterproof hiking backpack, " * 30 for i in range(50)]
    answers = []
    async with aiohttp.ClientSession() as http:
        for url in (with_child, without):
            body = {"query": "backpack", "documents": documents}
            async with http.post(f"{url}/v1/rerank", json=body) as response:
                assert response.status == 200, await response.text()
                answers.append(await response.json())
        metrics = await read_metrics(http, with_child)
    assert answers[0]["results"] == answers[1]["results"]
    assert answers[0]["meta"]["billed_units"] == answers[1]["meta"]["billed_units"]
    assert metrics["rerank_tokenizer_process_documents_total"] == len(documents)


def child_of(pid: int) -> int:
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


@pytest.mark.parametrize(
    "how",
    [
        "SIGTERM to the sidecar",  # it closes the child's input
        "SIGTERM to the process group",  # the child ignores it and ends with its input
        "SIGKILL to the sidecar",  # the kernel closes the input
        "SIGKILL to the sidecar, its child stopped",  # the kernel kills the child
    ],
)
def test_the_child_ends_with_the_sidecar(tiny_model_dir: Path, tmp_path: Path, how: str) -> None:
    log_path = tmp_path / "sidecar.log"
    with sidecar_process(log_path, "--backend", "null", "--model", str(tiny_model_dir)) as sidecar:
        tokenizer_child = child_of(sidecar.pid)
        if how.endswith("its child stopped"):
            os.kill(tokenizer_child, signal.SIGSTOP)
        if how == "SIGTERM to the process group":
            os.killpg(sidecar.pid, signal.SIGTERM)  # the sidecar leads its own session
        else:
            os.kill(sidecar.pid, signal.SIGKILL if "SIGKILL" in how else signal.SIGTERM)
        assert process_gone(sidecar.pid, 30)
        assert process_gone(tokenizer_child, 30)
    assert "tokenizer process failed" not in log_path.read_text()
