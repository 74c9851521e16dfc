"""The HTTP connection layer under aiohttp's routing: JSON for the parser's own errors, a deadline
for a request's headers, and a maximum connection age.

aiohttp answers a request it cannot parse (bad chunk size, oversized headers, an unsupported
Content-Encoding) itself, in text/plain, before any middleware runs; and it has no deadline for
headers that trickle in. `SidecarRunner` serves the application with a request handler that adds
both. A client's pool of kept-alive connections (OpenSearch keeps dozens) stays on the pods that
existed when it opened them; `close_old_connections` answers `Connection: close` once a connection
is older than `max_connection_age_s`, so the client reconnects through the Service and new pods get
their share.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server


class _JsonErrorsRequestHandler(RequestHandler):
    header_timeout_s = 10.0
    max_age_s = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._opened_at = self._loop.time()

    @property
    def too_old(self) -> bool:
        return self.max_age_s > 0 and self._loop.time() - self._opened_at >= self.max_age_s

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parent logs and refuses when a response has started; its text/plain body is replaced.
        super().handle_error(request, status, exc, message)
        if status == 500:
            text = "the sidecar failed; see its log"
        elif isinstance(exc, ContentEncodingError):
            # aiohttp's message names a Python package to install; the client cannot.
            named = re.search(r"content-encoding: ([^.]*)", exc.message)
            encoding = named.group(1) if named else "of the body"
            text = f"Content-Encoding {encoding} is not supported: send gzip, deflate or none"
        else:
            text = f"the request could not be parsed: {message or HTTPStatus(status).phrase}"
        error_type = "internal_error" if status == 500 else "bad_request"
        body = orjson.dumps({"error": {"type": error_type, "message": text}})
        response = web.Response(body=body, status=status, content_type="application/json")
        response.force_close()
        return response

    def data_received(self, data: bytes) -> None:
        waiting = self._waiter is not None and not self._waiter.done()
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_header_deadline()
        elif waiting and self._header_deadline is None:
            # Bytes of a request's head arrived, not yet all of it: it gets header_timeout_s.
            self._header_deadline = self._loop.call_later(self.header_timeout_s, self.force_close)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)


@web.middleware
async def close_old_connections(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    protocol = request.protocol
    if isinstance(protocol, _JsonErrorsRequestHandler) and protocol.too_old:
        response.force_close()
    return response


class _Server(Server):
    def __init__(
        self, *args: Any, header_timeout_s: float, max_connection_age_s: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._max_connection_age_s = max_connection_age_s

    def __call__(self) -> RequestHandler:
        handler = _JsonErrorsRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.header_timeout_s = self._header_timeout_s
        handler.max_age_s = self._max_connection_age_s
        return handler


class SidecarRunner(web.AppRunner):
    """An AppRunner whose connections use `_JsonErrorsRequestHandler`."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout_s: float,
        max_connection_age_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._max_connection_age_s = max_connection_age_s

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            header_timeout_s=self._header_timeout_s,
            max_connection_age_s=self._max_connection_age_s,
            **server._kwargs,
        )
