"""vLLM backend: one-logit classification of prompts the sidecar formatted itself.

vLLM runs with `--runner pooling` and the `is_original_qwen3_reranker` overrides, so `/classify` on
the formatted prompt returns sigmoid(logit_yes - logit_no) = p(yes), the reference score. Sending
token ids spares vLLM a second tokenization and applies no chat template (docs/contracts.md §6).

Replicas are checked in the background (model listed, context long enough, a probe text scored),
so readiness and the choice of replica never wait on a call. Replicas come from
`sidecar.backends.discovery`: a `dns+http://` name is re-resolved every `discovery_interval_s`, one
replica per address, and a new one is checked at once. Pooled connections are replaced every
`keepalive_s` when set, so a Service or router in front of vLLM spreads them over new pods.

A call that never reached vLLM (connection refused, or closed or reset before any response byte) is
tried once more, on another replica or a fresh connection; a call vLLM accepted is never repeated.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from sidecar.backends.discovery import Discovery, Resolve, resolve_with_system
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
    discovery_interval_s: float = 10.0
    keepalive_s: float = 0.0  # 0: a pooled connection is kept as long as vLLM keeps it


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


class PooledSessions:
    """The pooled connections to vLLM. With `max_age_s`, the pool is replaced once it is that old
    (kept-alive connections would otherwise stay on the pods that existed when they opened); a
    replaced pool is closed when its last call ends."""

    def __init__(self, connections: int, max_age_s: float) -> None:
        self._connections = connections
        self._max_age_s = max_age_s
        self._calls: dict[aiohttp.ClientSession, int] = {}
        self._current = self._new()
        self._born = time.monotonic()
        self._closing: set[asyncio.Task[None]] = set()
        self.replaced = 0

    def _new(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=self._connections),
            json_serialize=_json_dumps,
        )
        self._calls[session] = 0
        return session

    def take(self) -> aiohttp.ClientSession:
        if self._max_age_s and time.monotonic() - self._born >= self._max_age_s:
            old, self._current, self._born = self._current, self._new(), time.monotonic()
            self.replaced += 1
            if not self._calls[old]:
                self._close(old)
        self._calls[self._current] += 1
        return self._current

    def give_back(self, session: aiohttp.ClientSession) -> None:
        self._calls[session] -= 1
        if session is not self._current and not self._calls[session]:
            self._close(session)

    def _close(self, session: aiohttp.ClientSession) -> None:
        del self._calls[session]
        task = asyncio.create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for session in list(self._calls):
            await session.close()
        self._calls.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)


class VLLMBackend:
    model_kind = "cross-encoder"

    def __init__(
        self, urls: Sequence[str], options: VLLMOptions, resolve: Resolve = resolve_with_system
    ) -> None:
        if not urls:
            raise ValueError("VLLMBackend needs at least one URL")
        self.model_name = options.model_name
        self._options = options
        self._discovery = Discovery(urls, resolve)
        self._replicas: dict[str, _Replica] = {}
        self._all_down = asyncio.Event()
        self._all_down.set()
        self._pool: PooledSessions | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def replica_urls(self) -> list[str]:
        return list(self._replicas)

    async def start(self) -> None:
        self._pool = PooledSessions(self._options.connections, self._options.keepalive_s)
        # Retries go on a connection of their own: the pooled one may be what failed.
        self._fresh = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), json_serialize=_json_dumps
        )
        await self._discover()
        await self._check_all()
        self._tasks.append(asyncio.create_task(self._health_loop(), name="vllm-health"))
        if self._discovery.dynamic:
            self._tasks.append(asyncio.create_task(self._discovery_loop(), name="vllm-discovery"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        if self._fresh is not None:
            await self._fresh.close()

    def unavailable_reason(self) -> str | None:
        if not self._replicas:
            return f"no vLLM replica found at {self._discovery.describe()}"
        problems = [f"{r.url}: {r.problem}" for r in self._replicas.values() if r.problem]
        return "; ".join(problems) if len(problems) == len(self._replicas) else None

    async def wait_unavailable(self) -> None:
        await self._all_down.wait()

    def _set_problem(self, replica: _Replica, problem: str | None) -> None:
        if problem != replica.problem:
            log.warning("vLLM at %s: %s", replica.url, problem or "healthy")
        replica.problem = problem
        self._update_all_down()

    def _update_all_down(self) -> None:
        if any(r.problem is None for r in self._replicas.values()):
            self._all_down.clear()
        else:
            self._all_down.set()

    async def _discover(self) -> list[_Replica]:
        """Take the current replica set; returns the replicas that are new."""
        urls = await self._discovery.refresh()
        # A replica that left keeps serving the calls it has; it is only no longer chosen.
        kept = {url: self._replicas[url] for url in urls if url in self._replicas}
        new = [_Replica(url) for url in urls if url not in kept]
        self._replicas = {**kept, **{replica.url: replica for replica in new}}
        self._update_all_down()
        return new

    async def _discovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.discovery_interval_s)
            new = await self._discover()
            await asyncio.gather(*(self._check(replica) for replica in new))

    def _replicas_in_order(self) -> list[_Replica]:
        """Healthy before unhealthy, recently failed last, then the least loaded first."""
        now = time.monotonic()
        return sorted(
            self._replicas.values(),
            key=lambda r: (r.problem is not None, r.failed_until > now, r.inflight),
        )

    async def score(self, payloads: Sequence[object], *, deadline: float) -> list[float]:
        body = {"model": self.model_name, "input": list(payloads)}
        order = self._replicas_in_order()
        if not order:
            raise BackendUnavailable(self.unavailable_reason() or "no vLLM replica")
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
        assert self._pool is not None and self._fresh is not None, "start() the backend first"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before vLLM was called")
        if fresh:
            return await self._call_on(self._fresh, method, url, body, remaining)
        session = self._pool.take()
        try:
            return await self._call_on(session, method, url, body, remaining)
        finally:
            self._pool.give_back(session)

    async def _call_on(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        remaining: float,
    ) -> Any:
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
        await asyncio.gather(*(self._check(replica) for replica in self._replicas.values()))

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
    return orjson.dumps(obj, default=_jsonable).decode()


def _jsonable(obj: Any) -> Any:
    # Queued token ids are 4-byte arrays (sidecar/prompt.py); vLLM takes them as a JSON list.
    if isinstance(obj, array):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _scores_from(data: Any, *, expected: int) -> list[float]:
    try:
        items = sorted(data["data"], key=lambda item: item["index"])
        scores = [float(item["probs"][0]) for item in items]
    except (KeyError, TypeError, IndexError, ValueError):
        raise BackendUnavailable("vLLM's /classify answer has no probs per input") from None
    if len(scores) != expected or not all(math.isfinite(score) for score in scores):
        raise BackendUnavailable(f"vLLM returned {len(scores)} scores for {expected} inputs")
    return scores
