"""The errors every command can end with, each with its exit status.

Both engines (OpenSearch and Elasticsearch) raise these; the CLI turns any of them into one
line and the exit status, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3


class EsIntegrationError(Exception):
    """Base of the errors a command reports as one line."""

    exit_code = EXIT_FAILED


class UsageError(EsIntegrationError, ValueError):
    """Bad flags or values."""

    exit_code = EXIT_USAGE


class SetupError(EsIntegrationError):
    """The cluster cannot be set up as asked; the message says why and what to do."""


class Refused(EsIntegrationError):
    """A change needs confirmation (--yes) that was not given."""

    exit_code = EXIT_REFUSED


class ClusterError(EsIntegrationError):
    """The cluster could not be reached, refused a call, or answered in a way we cannot read."""


class ConnectionFailed(ClusterError):
    """The cluster could not be reached (DNS, TCP, TLS)."""


class UnexpectedAnswer(ClusterError):
    """A successful status with a body that is not what the API returns (a proxy's HTML page,
    a truncated body, another product on that port)."""

    def __init__(self, what: str, expected: str, body: Any) -> None:
        super().__init__(
            f"{what}: unexpected answer (expected {expected}), got {snippet(body)}; "
            "is --url the cluster itself, not a proxy or another service?"
        )


def snippet(body: Any, limit: int = 200) -> str:
    """A one-line, bounded rendering of an answer body for an error message."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    text = " ".join(text.split())
    if not text:
        return "an empty body"
    return repr(text if len(text) <= limit else text[:limit] + "...")
