"""Giving memory back after multi-MB request bodies.

glibc keeps freed memory in its arenas (one per thread that allocated: the event loop, the
tokenizer threads), so a few large bodies left RSS at 1.2 GB long after they were answered.
`malloc_trim(0)` returns the free pages of every arena to the system; it runs in a thread,
after a large request, at most once per `MIN_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LARGE_BODY_BYTES = 1024 * 1024
MIN_INTERVAL_S = 1.0
# Long enough for the request, its parsed body and its pairs to be freed.
TRIM_DELAY_S = 0.2


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
        return trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        return None


_trim = _load_trim()
_lock = threading.Lock()
_last = 0.0


def trim_now() -> None:
    """Give free heap pages back to the system now (no-op off glibc or while one runs)."""
    if _trim is not None and _lock.acquire(blocking=False):
        try:
            _trim(0)
        finally:
            _lock.release()


def trim_after_large_request(body_bytes: int) -> None:
    """Call when a request is answered; trims once its body and parse are garbage."""
    global _last
    if _trim is None or body_bytes < LARGE_BODY_BYTES:
        return
    now = time.monotonic()
    if now - _last < MIN_INTERVAL_S:
        return
    _last = now
    asyncio.get_running_loop().call_later(TRIM_DELAY_S, _start_trim)


def _start_trim() -> None:
    threading.Thread(target=trim_now, name="malloc-trim", daemon=True).start()
