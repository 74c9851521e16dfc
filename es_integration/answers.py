"""Reading cluster answers: each accessor checks the shape it expects and names the call.

A 2xx answer with a body of the wrong shape becomes `UnexpectedAnswer` (one clear line), not a
KeyError or TypeError deep in a command.
"""

from __future__ import annotations

from typing import Any, TypeVar

from es_integration.errors import UnexpectedAnswer

T = TypeVar("T")

_KIND_NAMES: dict[type, str] = {
    dict: "a JSON object",
    list: "a JSON array",
    str: "a string",
    bool: "true or false",
}


def as_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UnexpectedAnswer(what, "a JSON object", body)
    return body


def as_list(body: Any, what: str) -> list[Any]:
    if not isinstance(body, list):
        raise UnexpectedAnswer(what, "a JSON array", body)
    return body


def member(body: Any, key: str, kind: type[T], what: str) -> T:
    """`body[key]`, which must exist and be a `kind`."""
    value = as_object(body, what).get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise UnexpectedAnswer(what, f"{_KIND_NAMES.get(kind, kind.__name__)} at {key!r}", body)
    return value


def optional_member(body: Any, key: str, kind: type[T], what: str) -> T | None:
    """`body[key]` if present (None if absent or null); a `kind` when present."""
    value = as_object(body, what).get(key)
    if value is None:
        return None
    return member(body, key, kind, what)


def text_id(body: Any, key: str, what: str) -> str:
    """An id the cluster returned (`connector_id`, `model_id`, ...): a non-empty string."""
    value = member(body, key, str, what)
    if not value:
        raise UnexpectedAnswer(what, f"a non-empty {key!r}", body)
    return value
