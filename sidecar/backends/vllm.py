"""vLLM backend: one-logit classification of prompts the sidecar formatted itself.

vLLM runs with `--runner pooling` and the `is_original_qwen3_reranker` overrides, so `/classify` on
the formatted prompt returns sigmoid(logit_yes - logit_no) = p(yes), the reference score. Sending
token ids spares vLLM a second tokenization and applies no chat template (docs/contracts.md §6).

Replicas are checked in the background (model listed, context long enough, a probe text scored),
so readiness and the choice of replica never wait on a call. A call that never reached vLLM
(connection refused, or closed or reset before any response byte) is tried once more, on another
replica or a fresh connection; a call vLLM accepted is never repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sidecar.errors import BackendUnavailable, DeadlineExceeded

log = logging.getLogger(__name__)

READINESS_TEXT = "readiness probe"

# Failures that happen before vLLM has the request: safe to send again.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


@dataclass(frozen=True)
class VLLMOptions:
    model_name: str
    max_length: int
    connect_timeout_s: float
    replica_cooldown_s: float
    connections: int
    health_check_interval_s: float
    health_check_timeout_s: float


@dataclass
class _Replica:
    url: str
    inflight: int = 0
    failed_until: float = 0.0
    # None: passed its last health check; otherwise why not.
    problem: str | None = "not checked yet"


class _NotSent(Exception):
    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"vLLM at {url} is unreachable: {cause or type(cause).__name__}")


class VLLMBackend:
    model_kind = "cross-encoder"

    def __init__(self, urls: Sequence[str], options: VLLMOptions) -> None:
        if not urls:
            raise ValueError("VLLMBackend needs at least one URL")
        self.model_name = options.model_name
        self._options = options
        self._replicas = [_Replica(url) for url in urls]
        self._all_down = asyncio.Event()
        self._all_down.set()
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=self._options.connections),
            json_serialize=_json_dumps,
        )
        # Retries go on a connection of their own: the pooled one may be what failed.
        self._fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), json_serialize=_json_dumps
        )
        await self._check_all()
        self._health_task = asyncio.create_task(self._health_loop(), name="vllm-health")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()

    def unavailable_reason(self) -> str | None:
        problems = [f"{r.url}: {r.problem}" for r in self._replicas if r.problem is not None]
        return "; ".join(problems) if len(problems) == len(self._replicas) else None

    async def wait_unavailable(self) -> None:
        await self._all_down.wait()

    def _set_problem(self, replica: _Replica, problem: str | None) -> None:
        if problem != replica.problem:
            log.warning("vLLM at %s: %s", replica.url, problem or "healthy")
        replica.problem = problem
        if any(r.problem is None for r in self._replicas):
            self._all_down.clear()
        else:
            self._all_down.set()

    def _replicas_in_order(self) -> list[_Replica]:
        """Healthy before unhealthy, recently failed last, then the least loaded first."""
        now = time.monotonic()
        return sorted(
            self._replicas,
            key=lambda r: (r.problem is not None, r.failed_until > now, r.inflight),
        )

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        body = {"model": self.model_name, "input": list(payloads)}
        order = self._replicas_in_order()
        # One retry: on the next replica, or on a fresh connection to the only one.
        attempts = [(order[0], False), (order[1] if len(order) > 1 else order[0], True)]
        error: _NotSent | None = None
        for replica, fresh in attempts:
            replica.inflight += 1
            try:
                data = await self._call(
                    "POST", f"{replica.url}/classify", body, deadline=deadline, fresh=fresh
                )
            except _NotSent as exc:
                replica.failed_until = time.monotonic() + self._options.replica_cooldown_s
                error = exc
                continue
            finally:
                replica.inflight -= 1
            return _scores_from(data, expected=len(payloads))
        assert error is not None
        # Both tries failed before reaching vLLM: it is down, whatever the last check said.
        for replica, _ in attempts:
            self._set_problem(replica, str(error))
        raise BackendUnavailable(str(error))

    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        deadline: float,
        fresh: bool = False,
    ) -> Any:
        session = self._fresh if fresh else self._session
        assert session is not None, "start() the backend first"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before vLLM was called")
        timeout = aiohttp.ClientTimeout(
            total=remaining, sock_connect=min(remaining, self._options.connect_timeout_s)
        )
        try:
            response = await session.request(method, url, json=body, timeout=timeout)
        except _NOT_SENT as exc:
            raise _NotSent(url, exc) from None
        except TimeoutError:
            raise DeadlineExceeded(f"vLLM at {url} did not answer in time") from None
        try:
            async with response:
                raw = await response.read()
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"vLLM at {url} failed mid-request: {exc!r}") from None
        except TimeoutError:
            raise DeadlineExceeded(f"vLLM at {url} did not answer in time") from None
        if response.status != 200:
            raise BackendUnavailable(
                f"vLLM answered {response.status}: {raw[:300].decode(errors='replace')}"
            )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BackendUnavailable(f"vLLM at {url} sent a body that is not JSON") from None

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.health_check_interval_s)
            await self._check_all()

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(replica) for replica in self._replicas))

    async def _check(self, replica: _Replica) -> None:
        deadline = time.monotonic() + self._options.health_check_timeout_s
        try:
            problem = await self._problem_of(replica.url, deadline)
        except (_NotSent, BackendUnavailable, DeadlineExceeded) as exc:
            problem = str(exc)
        except aiohttp.ClientError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        self._set_problem(replica, problem)

    async def _problem_of(self, url: str, deadline: float) -> str | None:
        data = await self._call("GET", f"{url}/v1/models", deadline=deadline)
        listed = data.get("data", []) if isinstance(data, dict) else []
        models = {model.get("id"): model for model in listed if isinstance(model, dict)}
        if self.model_name not in models:
            return f"serves {list(models)}, not {self.model_name!r}"
        # A pair longer than vLLM's context would fail every long document: say so up front.
        max_model_len = models[self.model_name].get("max_model_len")
        if isinstance(max_model_len, int) and max_model_len < self._options.max_length:
            return (
                f"max_model_len {max_model_len} < the sidecar's max_length "
                f"{self._options.max_length}: lower --max-length or raise vLLM's --max-model-len"
            )
        # Listed is not answering: score one short text for real.
        probe = await self._call(
            "POST",
            f"{url}/classify",
            {"model": self.model_name, "input": [READINESS_TEXT]},
            deadline=deadline,
        )
        try:
            _scores_from(probe, expected=1)
        except BackendUnavailable as exc:
            return f"lists the model but does not score: {exc}"
        return None


def _json_dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _scores_from(data: Any, *, expected: int) -> list[float]:
    try:
        items = sorted(data["data"], key=lambda item: item["index"])
        scores = [float(item["probs"][0]) for item in items]
    except (KeyError, TypeError, IndexError, ValueError):
        raise BackendUnavailable("vLLM's /classify answer has no probs per input") from None
    if len(scores) != expected or not all(math.isfinite(score) for score in scores):
        raise BackendUnavailable(f"vLLM returned {len(scores)} scores for {expected} inputs")
    return scores
