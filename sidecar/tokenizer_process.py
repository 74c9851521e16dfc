"""Pairs encoded in a child process, so tokenizing runs on another core than the event loop.

Under load the sidecar is one busy Python thread. A worker thread does not help: tiktoken gives
the GIL back during each document, but taking it back beside a busy loop waits, and at c=16
tokenizing in a thread measured slower than on the loop. A child process runs the same prompt
encoder (sidecar/prompt.py, built from the same settings, with its own document token cache) and
sends back each pair's key, length, document, truncation flag and ids: the pairs the sidecar
would have built itself.

Protocol on the child's stdin and stdout, one answer per call and in order. The child writes
`READY` once its encoder is built. A call is a header `<sequence, count, text bytes,
max_tokens_per_doc (-1: none), max_windows>` (little-endian), each text's byte length (u32), then
the UTF-8 texts back to back: the instruction, the query, the documents. The answer is
`<sequence, pairs, id bytes>`, a record per pair `<16-byte key, tokens, document, truncated>`,
then the ids (u32) back to back; or `<sequence, ERROR, 0>` when the encoder refused the request
(the sidecar then encodes it itself, and raises the same error). An answer whose sequence or
documents do not match its call is a broken child.

A child that dies, does not answer the call it works on within `stall_s` (plus a microsecond a
byte), breaks the protocol, or is not ready within `ready_s` is killed and started again after a
delay that doubles with each failure in a row (1 s up to 30 s). Meanwhile, and for the requests
that were waiting on it, pairs are encoded in the sidecar as without the process: never a failed
request. Each failure is logged and counted. A request waits at most `stall_s` or until its
deadline, and no call is made while `MAX_PENDING` calls wait: a slow child sheds work back to the
sidecar, not latency. The child ignores SIGINT and SIGTERM (a signal to the whole process group
reaches it too): it ends when its input closes, and the kernel kills it if the sidecar dies
first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import struct
import sys
import time
from array import array
from collections.abc import Sequence

from sidecar.metrics import Metrics
from sidecar.prompt import QwenEncoderOptions
from sidecar.scoring_types import PreparedPair

log = logging.getLogger(__name__)

READY = b"READY\n"
_CALL = struct.Struct("<IIIiI")
_ANSWER = struct.Struct("<III")
_PAIR = struct.Struct("<16sII?")
ERROR = 0xFFFFFFFF
# No answer for this long while calls wait means a stuck child (50 documents take ~1 ms), plus
# a generous microsecond per byte of the call being worked on (the slow route takes ~0.4).
STALL_S = 2.0
STALL_S_PER_BYTE = 1e-6
# Loading the tokenizer and building its BPE core take about a second.
READY_S = 60.0
RESTART_S = 1.0
MAX_RESTART_S = 30.0
# Calls waiting on the child; beyond, requests encode in the sidecar.
MAX_PENDING = 64
_PR_SET_PDEATHSIG = 1
_INT32_MAX = 2**31 - 1


class _Call:
    __slots__ = ("allowance_s", "answer", "documents", "sequence")

    def __init__(self, sequence: int, documents: int, allowance_s: float) -> None:
        self.sequence = sequence
        self.documents = documents
        # How long the child may work on it before it counts as stuck.
        self.allowance_s = allowance_s
        self.answer: asyncio.Future[list[PreparedPair] | None] = (
            asyncio.get_running_loop().create_future()
        )


class TokenizerProcess:
    def __init__(
        self,
        options: QwenEncoderOptions,
        *,
        metrics: Metrics,
        stall_s: float = STALL_S,
        ready_s: float = READY_S,
        restart_s: float = RESTART_S,
    ) -> None:
        self._command = [
            sys.executable,
            "-m",
            "sidecar.tokenizer_process",
            *_arguments(options),
            f"--parent-pid={os.getpid()}",
        ]
        self._metrics = metrics
        self._stall_s = stall_s
        self._ready_s = ready_s
        self._restart_s = restart_s
        self._failures_in_a_row = 0
        self._child: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Answers come in call order: one entry per call, oldest first.
        self._pending: collections.deque[_Call] = collections.deque()
        self._sequence = 0
        # When the child last answered, or was given work while it had none.
        self._progress_at = 0.0
        self._start_after = 0.0
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        """Start the child and wait until it is ready to take calls; one that cannot be started
        or is not ready within `ready_s` counts as failed (started again later)."""
        self._ready.clear()
        try:
            child = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # Answers are read by length, not by line.
                limit=1 << 20,
            )
        except Exception as exc:  # e.g. no process left to fork: later, with backoff
            self._failed(None, f"could not start it: {type(exc).__name__}: {exc}")
            return
        self._child = child
        self._reader = asyncio.create_task(self._read(child), name="tokenizer-process")
        if not await self._wait_for_ready(self._ready_s):
            self._failed(child, f"not ready within {self._ready_s:g} s")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether a child is ready to take calls within `timeout_s`, one being started
        included (False at once if it failed first)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if self._starting is not None:
                    await asyncio.shield(self._starting)
        return await self._wait_for_ready(0 if self._starting else timeout_s)

    async def _wait_for_ready(self, timeout_s: float) -> bool:
        reader = self._reader
        if reader is not None and not self._ready.is_set():
            ready = asyncio.ensure_future(self._ready.wait())
            try:
                await asyncio.wait(
                    {ready, reader}, timeout=timeout_s, return_when="FIRST_COMPLETED"
                )
            finally:
                ready.cancel()
        return self._ready.is_set()

    async def close(self) -> None:
        self._closed = True
        if self._starting is not None:
            # A restart in progress ends now; a child it spawned is closed below.
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        child, self._child = self._child, None
        if self._reader is not None:
            self._reader.cancel()
        self._fail_pending()
        if child is None:
            return
        if child.stdin is not None:
            child.stdin.close()  # the child exits at the end of its input
        try:
            await asyncio.wait_for(child.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()

    async def encode(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str,
        max_tokens_per_doc: int | None,
        max_windows: int,
        deadline: float,
    ) -> list[PreparedPair] | None:
        """The pairs the sidecar's encoder would build, from the child; None when the child is
        not ready, busy, fails, or refused the request (the caller then encodes them itself)."""
        now = time.monotonic()
        child = self._child
        if child is not None and self._stalled(now):
            self._failed(child, "no answer within its allowance")
            child = None
        if not self._usable() or len(self._pending) >= MAX_PENDING or deadline <= now:
            return None
        assert child is not None
        call = self._call(
            child,
            [instruction, query, *documents],
            # Any limit over the room left is the same as none; the frame holds an int32.
            -1 if max_tokens_per_doc is None else min(max_tokens_per_doc, _INT32_MAX),
            max_windows,
        )
        if call is None:
            return None
        try:
            # A request waits at most `stall_s` here, then encodes itself.
            async with asyncio.timeout(min(self._stall_s, deadline - now)):
                pairs = await call.answer
        except TimeoutError:
            if self._stalled(time.monotonic()):
                self._failed(child, "no answer within its allowance")
            return None
        except _ChildGone:
            return None
        if pairs is not None:
            self._metrics.tokenizer_process_documents.inc(len(documents))
        return pairs

    def _stalled(self, now: float) -> bool:
        """The call being worked on (the oldest) has had longer than its allowance, and no
        answer came since it started. A child busy with earlier calls is progressing."""
        return bool(self._pending) and now - self._progress_at >= self._pending[0].allowance_s

    def _usable(self) -> bool:
        """Ready now; without a child, one is started in the background once it is due."""
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

    def _call(
        self,
        child: asyncio.subprocess.Process,
        texts: list[str],
        max_tokens_per_doc: int,
        max_windows: int,
    ) -> _Call | None:
        assert child.stdin is not None
        # JSON strings may hold lone surrogates; the child decodes them back the same way.
        encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
        lengths = array("I", map(len, encoded))
        body = b"".join(encoded)
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        header = _CALL.pack(self._sequence, len(texts), len(body), max_tokens_per_doc, max_windows)
        try:
            child.stdin.write(header + lengths.tobytes() + body)
        except Exception as exc:  # a pipe the child has just closed
            self._failed(child, f"{type(exc).__name__}: {exc}")
            return None
        if not self._pending:
            self._progress_at = time.monotonic()
        call = _Call(self._sequence, len(texts) - 2, self._stall_s + STALL_S_PER_BYTE * len(body))
        self._pending.append(call)
        return call

    async def _read(self, child: asyncio.subprocess.Process) -> None:
        assert child.stdout is not None
        stdout = child.stdout
        try:
            if await stdout.readexactly(len(READY)) != READY:
                raise ValueError("the child did not say it was ready")
            self._ready.set()
            while True:
                sequence, count, id_bytes = _ANSWER.unpack(await stdout.readexactly(_ANSWER.size))
                if not self._pending or self._pending[0].sequence != sequence:
                    raise ValueError(f"answer {sequence} does not match the oldest call")
                # Taken off the queue once whole: a child failing mid-answer fails it too.
                call = self._pending[0]
                pairs = None
                if count != ERROR:
                    records = await stdout.readexactly(_PAIR.size * count)
                    ids = await stdout.readexactly(id_bytes)
                    pairs = _pairs(records, ids, call.documents)
                self._pending.popleft()
                self._progress_at = time.monotonic()
                self._failures_in_a_row = 0
                if not call.answer.done():  # its request may have left
                    call.answer.set_result(pairs)
        except (asyncio.IncompleteReadError, ValueError, OSError) as exc:
            self._failed(child, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _failed(self, child: asyncio.subprocess.Process | None, reason: str) -> None:
        """`child` failed (None: it could not be started). One already replaced or closed is
        not failed again."""
        if child is not self._child or self._closed:
            return
        self._child = None
        self._ready.clear()
        delay = min(MAX_RESTART_S, self._restart_s * 2**self._failures_in_a_row)
        self._failures_in_a_row += 1
        self._start_after = time.monotonic() + delay
        self._metrics.tokenizer_process_failures.inc()
        log.warning(
            "tokenizer process failed (%s); tokenizing in the sidecar, starting it again in %g s",
            reason,
            delay,
        )
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()  # reaped by asyncio's child watcher
        self._fail_pending()

    def _fail_pending(self) -> None:
        while self._pending:
            answer = self._pending.popleft().answer
            if not answer.done():
                answer.set_exception(_ChildGone())
                answer.exception()  # retrieved: its request may have left


class _ChildGone(Exception):
    pass


def _pairs(records: bytes, ids: bytes, documents: int) -> list[PreparedPair]:
    pairs = []
    start = 0
    for key, tokens, document, truncated in _PAIR.iter_unpack(records):
        if document >= documents:
            raise ValueError(f"a pair of document {document} in a call of {documents}")
        token_ids = array("I")
        token_ids.frombytes(ids[start : start + 4 * tokens])
        start += 4 * tokens
        pairs.append(PreparedPair(key, tokens, token_ids, truncated, document))
    if start != len(ids):
        raise ValueError("an answer whose ids do not match its pairs")
    return pairs


def _serve(options: QwenEncoderOptions, parent_pid: int) -> None:
    # Ended by the sidecar closing its input after the requests in flight, not by a signal to
    # the whole process group (Ctrl-C, `kill -TERM -<pgid>`); killed if the sidecar dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the sidecar died before the line above
        return
    # The protocol owns the real stdout; a stray print from a library goes to stderr.
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = sys.stdin.buffer
    encoder = options.build()
    stdout.write(READY)
    stdout.flush()
    while header := stdin.read(_CALL.size):
        sequence, count, text_bytes, max_tokens_per_doc, max_windows = _CALL.unpack(header)
        lengths = array("I")
        lengths.frombytes(stdin.read(4 * count))
        body = stdin.read(text_bytes)
        try:
            texts, start = [], 0
            for length in lengths:
                texts.append(body[start : start + length].decode("utf-8", "surrogatepass"))
                start += length
            instruction, query, *documents = texts
            pairs = encoder.encode(
                query,
                documents,
                instruction=instruction,
                max_tokens_per_doc=None if max_tokens_per_doc < 0 else max_tokens_per_doc,
                max_windows=max_windows,
            )
        except Exception:  # the sidecar encodes it itself, and answers its error
            stdout.write(_ANSWER.pack(sequence, ERROR, 0))
        else:
            records = b"".join(
                _PAIR.pack(pair.key, pair.n_tokens, pair.document, pair.truncated) for pair in pairs
            )
            id_bytes = b"".join(_payload_bytes(pair) for pair in pairs)
            stdout.write(_ANSWER.pack(sequence, len(pairs), len(id_bytes)) + records + id_bytes)
        stdout.flush()


def _payload_bytes(pair: PreparedPair) -> bytes:
    assert isinstance(pair.payload, array)
    return pair.payload.tobytes()


def _arguments(options: QwenEncoderOptions) -> list[str]:
    return [
        options.model,
        f"--max-length={options.max_length}",
        f"--document-cache-bytes={options.document_cache_bytes}",
        f"--window-overlap={options.window_overlap}",
        f"--tiktoken-core={'true' if options.tiktoken_core else 'false'}",
    ]


def _main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m sidecar.tokenizer_process")
    parser.add_argument("model")
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--document-cache-bytes", type=int, required=True)
    parser.add_argument("--window-overlap", type=int, required=True)
    parser.add_argument("--tiktoken-core", choices=["true", "false"], required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    options = QwenEncoderOptions(
        model=args.model,
        max_length=args.max_length,
        document_cache_bytes=args.document_cache_bytes,
        window_overlap=args.window_overlap,
        tiktoken_core=args.tiktoken_core == "true",
    )
    _serve(options, args.parent_pid)


if __name__ == "__main__":
    _main(sys.argv[1:])
