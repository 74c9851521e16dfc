"""Null backend: scores without a model, to measure the sidecar's own overhead (bench P1)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence, Sized


class NullBackend:
    model_kind = "null"

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        # Deterministic and varied, so the response is sorted for real.
        return [
            1.0 / (1.0 + len(payload) % 97) if isinstance(payload, Sized) else 0.5
            for payload in payloads
        ]

    def unavailable_reason(self) -> str | None:
        return None

    async def wait_unavailable(self) -> None:
        await asyncio.Event().wait()
