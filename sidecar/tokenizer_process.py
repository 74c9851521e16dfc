"""Documents tokenized in a child process, so BPE runs on another core than the event loop.

Under load the sidecar is one busy Python thread. A worker thread does not help: tiktoken gives
the GIL back during each document, but taking it back beside a busy loop waits, and at c=16
tokenizing in a thread measured slower than on the loop. A child process with the same tokenizer
(sidecar/token_ids.py, so the same ids) takes the uncached documents of a busy or large request;
their ids go into the encoder's document token cache, where its `encode` finds them.

Protocol on the child's stdin and stdout, one answer per call and in order: the child writes
`READY` once its tokenizer is loaded; a call is `<count, text bytes>` (two little-endian u32),
each text's byte length (u32 each), then the UTF-8 texts back to back; the answer is `<count, id
bytes>`, each text's id count (u32 each), then the ids (u32 each) back to back.

A child that dies, stalls for `stall_s`, or answers out of protocol is killed and started again
after `restart_s`. Until then, and for the requests that were waiting on it, documents are
tokenized in the sidecar as without the process: never a failed request. Logged once per
failure, counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import struct
import sys
import time
from array import array
from collections.abc import Sequence

from sidecar.metrics import Metrics
from sidecar.prompt import QwenPromptEncoder

log = logging.getLogger(__name__)

READY = b"READY\n"
_HEADER = struct.Struct("<II")
# A call whose answer takes this long means a stuck child (50 documents take ~1 ms).
STALL_S = 2.0
RESTART_S = 1.0


class TokenizerProcess:
    def __init__(
        self,
        encoder: QwenPromptEncoder,
        model: str,
        *,
        tiktoken_core: bool,
        metrics: Metrics,
        stall_s: float = STALL_S,
        restart_s: float = RESTART_S,
    ) -> None:
        self._encoder = encoder
        self._command = [
            sys.executable,
            "-m",
            "sidecar.tokenizer_process",
            model,
            "--tiktoken-core" if tiktoken_core else "--no-tiktoken-core",
        ]
        self._metrics = metrics
        self._stall_s = stall_s
        self._restart_s = restart_s
        self._child: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Answers come in call order: one future per call, oldest first.
        self._pending: collections.deque[asyncio.Future[list[bytes]]] = collections.deque()
        self._start_after = 0.0
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    async def start(self) -> None:
        """Start the child; calls are taken once it says it is ready. A child that cannot be
        started is logged and tried again after `restart_s`."""
        self._ready.clear()
        try:
            self._child = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # A request's texts are at most the body size; the answer is read by length.
                limit=1 << 20,
            )
        except OSError as exc:
            self._start_after = time.monotonic() + self._restart_s
            log.warning("could not start the tokenizer process: %s; tokenizing in the sidecar", exc)
            return
        self._reader = asyncio.create_task(self._read(self._child), name="tokenizer-process")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether the child is ready to take calls within `timeout_s` (False at once if it
        failed first)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if self._starting is not None:
                    await asyncio.shield(self._starting)
                if self._reader is not None and not self._ready.is_set():
                    ready = asyncio.ensure_future(self._ready.wait())
                    try:
                        await asyncio.wait({ready, self._reader}, return_when="FIRST_COMPLETED")
                    finally:
                        ready.cancel()
        return self._ready.is_set()

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            await self._starting
        child, self._child = self._child, None
        if self._reader is not None:
            self._reader.cancel()
        if child is None:
            return
        self._fail_pending()
        if child.stdin is not None:
            child.stdin.close()  # the child exits at the end of its input
        try:
            await asyncio.wait_for(child.wait(), 5)
        except TimeoutError:
            child.kill()
            await child.wait()

    async def prefill(self, documents: Sequence[str], deadline: float) -> None:
        """Put the ids of the encoder's uncached `documents` into its cache, from the child.
        Does nothing when the child is not ready or fails: the encoder then tokenizes them."""
        missing = self._encoder.uncached_documents(documents)
        if not missing or not self._usable():
            return
        texts = self._encoder.document_texts(missing)
        answer = self._call(texts)
        started = time.monotonic()
        try:
            async with asyncio.timeout(min(self._stall_s, deadline - started)):
                ids = await answer
        except TimeoutError:
            if time.monotonic() - started >= self._stall_s:
                self._failed(f"no answer within {self._stall_s:g} s")
            return
        except _ChildGone:
            return
        self._encoder.cache_document_ids(missing, ids)
        self._metrics.tokenizer_process_documents.inc(len(missing))

    def _usable(self) -> bool:
        """Ready now; if there is no child, one is started in the background when it is time."""
        if (
            self._child is None
            and self._starting is None
            and not self._closed
            and time.monotonic() >= self._start_after
        ):
            self._starting = asyncio.create_task(self._restart())
        return self._child is not None and self._ready.is_set()

    async def _restart(self) -> None:
        try:
            await self.start()
        finally:
            self._starting = None

    def _call(self, texts: list[str]) -> asyncio.Future[list[bytes]]:
        assert self._child is not None and self._child.stdin is not None
        encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
        lengths = array("I", map(len, encoded))
        body = b"".join(encoded)
        self._child.stdin.write(_HEADER.pack(len(texts), len(body)) + lengths.tobytes() + body)
        answer: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append(answer)
        return answer

    async def _read(self, child: asyncio.subprocess.Process) -> None:
        assert child.stdout is not None
        stdout = child.stdout
        try:
            if await stdout.readexactly(len(READY)) != READY:
                raise ValueError("the child did not say it was ready")
            self._ready.set()
            while True:
                count, id_bytes = _HEADER.unpack(await stdout.readexactly(_HEADER.size))
                counts = array("I")
                counts.frombytes(await stdout.readexactly(4 * count))
                body = await stdout.readexactly(id_bytes)
                if 4 * sum(counts) != id_bytes or not self._pending:
                    raise ValueError("an answer that does not match a call")
                # Each text's ids as the bytes the document cache keeps.
                out, start = [], 0
                for n in counts:
                    out.append(body[start : start + 4 * n])
                    start += 4 * n
                answer = self._pending.popleft()
                if not answer.done():  # its request may have left
                    answer.set_result(out)
        except (asyncio.IncompleteReadError, ValueError, OSError) as exc:
            if child is self._child:
                self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _failed(self, reason: str) -> None:
        child, self._child = self._child, None
        self._ready.clear()
        self._start_after = time.monotonic() + self._restart_s
        self._metrics.tokenizer_process_failures.inc()
        log.warning(
            "tokenizer process failed (%s); tokenizing in the sidecar, restarting it in %g s",
            reason,
            self._restart_s,
        )
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if child is not None and child.returncode is None:
            child.kill()  # reaped by asyncio's child watcher
        self._fail_pending()

    def _fail_pending(self) -> None:
        while self._pending:
            answer = self._pending.popleft()
            if not answer.done():
                answer.set_exception(_ChildGone())
                answer.exception()  # retrieved: its request may have left


class _ChildGone(Exception):
    pass


def _serve(model: str, tiktoken_core: bool) -> None:
    from sidecar.token_ids import TokenIds
    from sidecar.tokenizer import load_tokenizer

    # Ctrl-C in a terminal reaches the whole process group; the sidecar ends this process by
    # closing its input, after the requests in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    token_ids = TokenIds(load_tokenizer(model), fast=tiktoken_core)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(READY)
    stdout.flush()
    while header := stdin.read(_HEADER.size):
        count, text_bytes = _HEADER.unpack(header)
        lengths = array("I")
        lengths.frombytes(stdin.read(4 * count))
        body = stdin.read(text_bytes)
        texts, start = [], 0
        for length in lengths:
            texts.append(body[start : start + length].decode("utf-8", "surrogatepass"))
            start += length
        ids = token_ids.encode(texts)
        counts = array("I", map(len, ids))
        id_bytes = b"".join(each.tobytes() for each in ids)
        stdout.write(_HEADER.pack(count, len(id_bytes)) + counts.tobytes() + id_bytes)
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], tiktoken_core=sys.argv[2] == "--tiktoken-core")
