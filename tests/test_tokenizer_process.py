"""The tokenizer child process: the sidecar's own ids, no request lost to a child that dies or
stalls, and no child left behind by a sidecar that stops. Real child processes and signals."""

from __future__ import annotations

import asyncio
import os
import select
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from sidecar.backends.factory import build_tokenizer_process
from sidecar.config import Settings
from sidecar.metrics import Metrics
from sidecar.prompt import QwenPromptEncoder
from sidecar.tokenizer import load_tokenizer
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


def encoder(model_dir: Path, *, tiktoken_core: bool = True) -> QwenPromptEncoder:
    return QwenPromptEncoder(
        load_tokenizer(str(model_dir)),
        max_length=4096,
        document_cache_bytes=1 << 22,
        tiktoken_core=tiktoken_core,
    )


@dataclass
class Child:
    process: TokenizerProcess
    encoder: QwenPromptEncoder
    metrics: Metrics


async def started(model_dir: Path, *, tiktoken_core: bool = True, stall_s: float = 2.0) -> Child:
    metrics = Metrics()
    pair_encoder = encoder(model_dir, tiktoken_core=tiktoken_core)
    process = TokenizerProcess(
        pair_encoder,
        str(model_dir),
        tiktoken_core=tiktoken_core,
        metrics=metrics,
        stall_s=stall_s,
        restart_s=0,
    )
    await process.start()
    assert await process.wait_ready(60)
    return Child(process, pair_encoder, metrics)


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


@pytest.mark.parametrize("tiktoken_core", [True, False])
async def test_pairs_from_the_childs_ids_equal_the_sidecars_own(
    tiny_model_dir: Path, tiktoken_core: bool
) -> None:
    child = await started(tiny_model_dir, tiktoken_core=tiktoken_core)
    try:
        await child.process.prefill(TEXTS, deadline=FAR)
    finally:
        await child.process.close()
    assert child.encoder.uncached_documents(TEXTS) == []
    assert child.metrics.tokenizer_process_documents._value.get() == len(TEXTS)
    own = encoder(tiny_model_dir, tiktoken_core=tiktoken_core)
    for query in ("hiking backpack", "防水背包"):
        from_child = child.encoder.encode(
            query, TEXTS, instruction=INSTRUCTION, max_tokens_per_doc=None
        )
        assert from_child == own.encode(
            query, TEXTS, instruction=INSTRUCTION, max_tokens_per_doc=None
        )


async def test_a_child_killed_during_a_call_costs_no_request(child: Child) -> None:
    first = child.process.pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # it cannot answer before it is killed
    call = asyncio.create_task(child.process.prefill(TEXTS[:2], deadline=FAR))
    # Callbacks run in order: the call is written before the kill.
    asyncio.get_running_loop().call_soon(os.kill, first, signal.SIGKILL)
    async with asyncio.timeout(30):  # a regression fails here instead of hanging
        await call  # returns, does not raise: the encoder tokenizes these itself
    assert child.encoder.uncached_documents(TEXTS[:2]) == TEXTS[:2]
    assert failures(child.metrics) == 1
    assert process_gone(first, 10)
    # The next call starts a new child (restart_s=0); until it is ready, calls pass.
    await child.process.prefill(TEXTS[:2], deadline=FAR)
    assert await child.process.wait_ready(60)
    assert child.process.pid not in (None, first)
    await child.process.prefill(TEXTS[:2], deadline=FAR)
    assert child.encoder.uncached_documents(TEXTS[:2]) == []


async def test_a_stalled_child_is_replaced_after_the_stall_bound(tiny_model_dir: Path) -> None:
    child = await started(tiny_model_dir, stall_s=0.3)
    try:
        stalled = child.process.pid
        assert stalled is not None
        os.kill(stalled, signal.SIGSTOP)
        async with asyncio.timeout(30):
            await child.process.prefill(TEXTS[:2], deadline=FAR)
        assert child.encoder.uncached_documents(TEXTS[:2]) == TEXTS[:2]
        assert failures(child.metrics) == 1
        assert process_gone(stalled, 10)  # killed, not left stopped
    finally:
        await child.process.close()


async def test_a_call_past_its_deadline_does_not_count_as_a_failure(child: Child) -> None:
    pid = child.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await child.process.prefill(TEXTS[:2], deadline=0.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert failures(child.metrics) == 0
    assert child.process.pid == pid
    # Its late answer goes to nobody; the next call gets its own.
    await child.process.prefill(TEXTS[2:4], deadline=FAR)
    assert child.encoder.uncached_documents(TEXTS[2:4]) == []


def test_only_a_qwen_encoder_with_a_document_cache_gets_a_child(tiny_model_dir: Path) -> None:
    settings = Settings(backend="null", model=str(tiny_model_dir))
    metrics = Metrics()
    assert build_tokenizer_process(settings, encoder(tiny_model_dir), metrics) is not None
    off = settings.model_copy(update={"tokenizer_process": False})
    assert build_tokenizer_process(off, encoder(tiny_model_dir), metrics) is None
    no_cache = QwenPromptEncoder(
        load_tokenizer(str(tiny_model_dir)), max_length=4096, document_cache_bytes=0
    )
    assert build_tokenizer_process(settings, no_cache, metrics) is None


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


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_the_child_ends_with_the_sidecar(
    tiny_model_dir: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    with sidecar_process(
        tmp_path / "sidecar.log", "--backend", "null", "--model", str(tiny_model_dir)
    ) as sidecar:
        tokenizer_child = child_of(sidecar.pid)
        os.kill(sidecar.pid, stop)
        # Stopped by SIGTERM, the sidecar closes the child's input; killed, the kernel does.
        assert process_gone(sidecar.pid, 30)
        assert process_gone(tokenizer_child, 30)
