"""vLLM backend: one-logit classification of prompts the sidecar formatted itself.

vLLM runs with `--runner pooling` and the `is_original_qwen3_reranker` overrides, so `/classify` on
the formatted prompt returns sigmoid(logit_yes - logit_no) = p(yes), the reference score. Sending
token ids spares vLLM a second tokenization and applies no chat template (CONTRACTS.md §6).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from sidecar.errors import BackendUnavailable, DeadlineExceeded

CONNECT_TIMEOUT_S = 2.0
REPLICA_COOLDOWN_S = 5.0
READINESS_TEXT = "readiness probe"
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=3)


class VLLMBackend:
    model_kind = "cross-encoder"

    def __init__(
        self, urls: Sequence[str], *, model_name: str, timeout_s: float, max_length: int
    ) -> None:
        if not urls:
            raise ValueError("VLLMBackend needs at least one URL")
        self.model_name = model_name
        self._max_length = max_length
        self._urls = list(urls)
        self._inflight = dict.fromkeys(self._urls, 0)
        self._down_until = dict.fromkeys(self._urls, 0.0)
        # A replica that does not accept the connection fails fast, not at the request deadline.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout, json_serialize=lambda obj: orjson.dumps(obj).decode()
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _replicas_in_order(self) -> list[str]:
        """Replicas that failed to connect lately go last; the rest least loaded first."""
        now = time.monotonic()
        return sorted(
            self._urls, key=lambda url: (self._down_until[url] > now, self._inflight[url])
        )

    async def score(self, payloads: Sequence[object]) -> list[float]:
        body = {"model": self.model_name, "input": list(payloads)}
        last_error = "no vLLM replica answered"
        # A replica that refuses connections is skipped; one that accepted the work is not retried,
        # so a slow replica cannot double the load.
        for url in self._replicas_in_order():
            self._inflight[url] += 1
            try:
                data = await self._call("POST", f"{url}/classify", body)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                self._down_until[url] = time.monotonic() + REPLICA_COOLDOWN_S
                last_error = f"vLLM at {url} is unreachable: {exc}"
                continue
            finally:
                self._inflight[url] -= 1
            return _scores_from(data, expected=len(payloads))
        raise BackendUnavailable(last_error)

    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        assert self._session is not None, "start() the backend first"
        # Never pass timeout=None: to aiohttp that means no timeout at all.
        timeout = client_timeout or self._timeout
        try:
            async with self._session.request(method, url, json=body, timeout=timeout) as response:
                raw = await response.read()
                if response.status != 200:
                    raise BackendUnavailable(
                        f"vLLM answered {response.status}: {raw[:300].decode(errors='replace')}"
                    )
                return orjson.loads(raw)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise  # never reached the replica: score() tries the next one
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"vLLM at {url} failed mid-request: {exc!r}") from None
        except TimeoutError:
            raise DeadlineExceeded(f"vLLM at {url} did not answer in time") from None
        except orjson.JSONDecodeError:
            raise BackendUnavailable(f"vLLM at {url} sent a body that is not JSON") from None

    async def check_ready(self) -> None:
        errors = []
        for url in self._urls:
            try:
                data = await self._call("GET", f"{url}/v1/models", client_timeout=PROBE_TIMEOUT)
            except (aiohttp.ClientError, BackendUnavailable) as exc:
                errors.append(f"{url}: {exc or type(exc).__name__}")
                continue
            listed = data.get("data", []) if isinstance(data, dict) else []
            models = {model.get("id"): model for model in listed if isinstance(model, dict)}
            if self.model_name not in models:
                errors.append(f"{url} serves {list(models)}, not {self.model_name!r}")
                continue
            # A pair longer than vLLM's context would fail every long document: say so up front.
            max_model_len = models[self.model_name].get("max_model_len")
            if isinstance(max_model_len, int) and max_model_len < self._max_length:
                errors.append(
                    f"{url} has max_model_len {max_model_len} < the sidecar's max_length "
                    f"{self._max_length}: lower --max-length or raise vLLM's --max-model-len"
                )
                continue
            # Listed is not answering: score one short text for real.
            try:
                probe = await self._call(
                    "POST",
                    f"{url}/classify",
                    {"model": self.model_name, "input": [READINESS_TEXT]},
                    client_timeout=PROBE_TIMEOUT,
                )
                _scores_from(probe, expected=1)
            except (aiohttp.ClientError, BackendUnavailable) as exc:
                errors.append(f"{url} lists the model but does not score: {exc}")
                continue
            return
        raise BackendUnavailable("; ".join(errors))


def _scores_from(data: Any, *, expected: int) -> list[float]:
    try:
        items = sorted(data["data"], key=lambda item: item["index"])
        scores = [float(item["probs"][0]) for item in items]
    except (KeyError, TypeError, IndexError, ValueError):
        raise BackendUnavailable("vLLM's /classify answer has no probs per input") from None
    if len(scores) != expected or not all(math.isfinite(score) for score in scores):
        raise BackendUnavailable(f"vLLM returned {len(scores)} scores for {expected} inputs")
    return scores
