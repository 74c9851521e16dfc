"""Errors a client can cause or must be told about; the error middleware renders them as JSON."""

from __future__ import annotations


class SidecarError(Exception):
    status = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidJSON(SidecarError):
    status = 400
    error_type = "invalid_json"


class ValidationFailed(SidecarError):
    status = 422
    error_type = "validation_error"


class Unauthorized(SidecarError):
    status = 401
    error_type = "unauthorized"


class PayloadTooLarge(SidecarError):
    status = 413
    error_type = "payload_too_large"


# ML Commons 2.15-3.7 retries only on this header (docs/contracts.md §2), so it goes with 429
# and 503.
THROTTLING_HEADERS = {"x-amzn-ErrorType": "ThrottlingException"}


class Overloaded(SidecarError):
    status = 429
    error_type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s), **THROTTLING_HEADERS})


class BackendUnavailable(SidecarError):
    status = 503
    error_type = "backend_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1", **THROTTLING_HEADERS})


class DeadlineExceeded(SidecarError):
    """The request's own deadline passed. Not a throttle: a retry would only add load."""

    status = 503
    error_type = "timeout"


class BadRequest(SidecarError):
    """The HTTP layer could not read the request (encoding, framing, headers)."""

    status = 400
    error_type = "bad_request"


class RequestTimeout(SidecarError):
    status = 408
    error_type = "request_timeout"
