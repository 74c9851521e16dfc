"""HTTP to the cluster: one small interface over opensearch-py, elasticsearch-py and a dry run.

Every call goes through `Transport.request(method, path, params, body)` so tests can record and
validate exactly what is sent, and `--dry-run` can print it instead.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from es_integration.errors import ClusterError, ConnectionFailed, UnexpectedAnswer, snippet

# Keys whose values are secrets wherever they appear in a request body.
SECRET_KEYS = frozenset({"credential", "secret_parameters"})
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None

    def redacted(self) -> dict[str, Any]:
        """The request as JSON-able data, secrets replaced, for printing."""
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.params:
            out["params"] = dict(self.params)
        if self.body is not None:
            out["body"] = redact(self.body)
        return out


@dataclass(frozen=True)
class Response:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ApiError(ClusterError):
    """The cluster answered with an error status."""

    def __init__(self, request: Request, response: Response, hint: str = "") -> None:
        self.request = request
        self.response = response
        reason = error_reason(response.body)
        message = f"{request.method} {request.path} -> HTTP {response.status}: {reason}"
        super().__init__(f"{message}. {hint}" if hint else message)


def error_reason(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            causes = error.get("root_cause")
            if isinstance(causes, list) and causes and isinstance(causes[0], dict):
                return str(causes[0].get("reason", causes[0]))
            return str(error.get("reason", error))
        return str(error)
    return snippet(body)  # an HTML error page from a proxy: one bounded line


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (_redact_all(item) if key in SECRET_KEYS else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _redact_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: REDACTED for key in value}
    return REDACTED


class Transport(Protocol):
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Response: ...


def call(
    transport: Transport,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    allow: tuple[int, ...] = (),
) -> Response:
    """A request that must succeed (2xx, or one of `allow`); raises ApiError otherwise.

    A 2xx answer must be JSON (an object or an array), else UnexpectedAnswer.
    """
    response = transport.request(method, path, params=params, body=body)
    if not response.ok and response.status not in allow:
        raise ApiError(Request(method, path, dict(params or {}), body), response)
    if response.ok and not isinstance(response.body, (dict, list)):
        raise UnexpectedAnswer(f"{method} {path}", "a JSON body", response.body)
    return response


@dataclass(frozen=True)
class ClusterAuth:
    username: str | None = None
    password: str | None = None
    api_key: str | None = None

    def header(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"ApiKey {self.api_key}"}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}


@dataclass(frozen=True)
class TlsOptions:
    verify: bool = True
    ca_certs: str | None = None


class OpenSearchTransport:
    """opensearch-py's low-level transport; HTTP errors come back as Responses."""

    def __init__(self, urls: list[str], auth: ClusterAuth, tls: TlsOptions, timeout_s: float):
        from opensearchpy import OpenSearch

        kwargs: dict[str, Any] = {
            "hosts": urls,
            "verify_certs": tls.verify,
            "ssl_show_warn": tls.verify,
            "timeout": timeout_s,
            "max_retries": 0,
            "headers": auth.header(),
        }
        if tls.ca_certs:
            kwargs["ca_certs"] = tls.ca_certs
        self._client = OpenSearch(**kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Response:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError
        from opensearchpy.exceptions import SerializationError, TransportError

        try:
            result = self._client.transport.perform_request(
                method, path, params=dict(params or {}), body=body
            )
        except OSConnectionError as exc:
            raise ConnectionFailed(f"cannot reach OpenSearch: {exc.info}") from None
        except SerializationError as exc:
            # A 2xx whose body is not JSON (an HTML page from a proxy, a truncated body).
            raise UnexpectedAnswer(f"{method} {path}", "a JSON body", str(exc)) from None
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 599
            return Response(status, exc.info)
        return Response(200, result)


class ElasticsearchTransport:
    """elasticsearch-py's node pool, below its API layer.

    The 9.x client rewrites Accept/Content-Type to `compatible-with=9`, which 8.19 rejects, so we
    send plain `application/json` through `client.transport` (and our own auth header).
    """

    def __init__(self, urls: list[str], auth: ClusterAuth, tls: TlsOptions, timeout_s: float):
        from elasticsearch import Elasticsearch

        kwargs: dict[str, Any] = {
            "hosts": urls,
            "verify_certs": tls.verify,
            "ssl_show_warn": tls.verify,
            "request_timeout": timeout_s,
            "max_retries": 0,
        }
        if tls.ca_certs:
            kwargs["ca_certs"] = tls.ca_certs
        self._client = Elasticsearch(**kwargs)
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            **auth.header(),
        }

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Response:
        from urllib.parse import urlencode

        from elastic_transport import SerializationError, TransportError

        target = f"{path}?{urlencode(dict(params))}" if params else path
        try:
            meta, result = self._client.transport.perform_request(
                method, target, headers=self._headers, body=body, max_retries=0
            )
        except SerializationError as exc:
            raise UnexpectedAnswer(f"{method} {path}", "a JSON body", exc.message) from None
        except TransportError as exc:
            raise ConnectionFailed(f"cannot reach Elasticsearch: {exc.message}") from None
        payload = getattr(result, "body", result)
        return Response(meta.status, payload)


Responder = Callable[[Request], Response]


class DryRunTransport:
    """Sends nothing: prints each request as one JSON line and answers from `responder`."""

    def __init__(self, responder: Responder, out: TextIO) -> None:
        self._responder = responder
        self._out = out
        self.requests: list[Request] = []

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Response:
        request = Request(method, path, dict(params or {}), copy.deepcopy(body))
        self.requests.append(request)
        print(json.dumps(request.redacted(), sort_keys=True), file=self._out)
        return self._responder(request)
