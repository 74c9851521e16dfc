"""What ML Commons does around a remote rerank call, re-implemented from docs/contracts.md §1-§2.

No OpenSearch cluster can run here, so the contract tests use this stand-in, and the cluster
simulator (`tests/es_integration/mlcommons_sim.py`) builds its `_predict` on the same functions.
It follows the ml-commons sources docs/contracts.md §2 names (@950f056), plus `StringUtils`:
- request filling (`ConnectorUtils.escapeRemoteInferenceInputData`, `HttpConnector.createPayload`):
  a parameter that is a JSON object or array (`StringUtils.isJson`) is inserted raw; any other
  string is escaped with commons-text `escapeJson` (`"` `\\` `/` and control characters escaped,
  non-ASCII as `\\uXXXX`) but not quoted; `${parameters.x:-default}` takes the default when `x` is
  not given (commons-text `StringSubstitutor`); an unfilled placeholder, or a payload that is not
  valid JSON, fails before anything is sent;
- JSON written by ML Commons: gson with HTML escaping off and nulls serialised;
- `connector.pre_process.cohere.rerank`: parameters `query`, `documents` (the gson JSON array),
  `top_n` = len(documents), then escaped as above;
- `connector.post_process.cohere.rerank`: `$.results[*]`, `index` cast to Integer and
  `relevance_score` to Double, scores placed back by `index` into an array as long as the results,
  as json-smart (permissive) parses numbers: an integer literal is an Integer, a float literal over
  18 characters a BigDecimal; either fails the Double cast;
- the neural-search rerank processor: one score per hit or "scores and hits are not the same
  length", then hits sorted by score, descending.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

COHERE_BLUEPRINT_BODY = (
    '{ "documents": ${parameters.documents}, "query": "${parameters.query}", '
    '"model": "${parameters.model}", "top_n": ${parameters.top_n} }'
)

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


class MLCommonsError(Exception):
    pass


# --- JSON as ML Commons writes and reads it ----------------------------------------------------


def escape_json(text: str) -> str:
    """commons-text StringEscapeUtils.escapeJson."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) > 0x7F:
            out.extend(f"\\u{unit:04X}" for unit in _utf16_units(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def gson(value: Any) -> str:
    """gson.toJson with disableHtmlEscaping and serializeNulls."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def is_json(text: str | None) -> bool:
    """StringUtils.isJson: an object or an array (a bare number or string is not JSON here)."""
    if text is None or not text.strip():
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _json_smart(raw: bytes) -> Any:
    """json-smart (permissive) as JsonPath parses responses for the built-in post-process."""

    def parse_float(literal: str) -> float | Decimal:
        return Decimal(literal) if len(literal) > 18 else float(literal)

    return json.loads(raw, parse_float=parse_float, parse_int=int)


# --- the request -------------------------------------------------------------------------------


def escape_parameters(parameters: dict[str, str]) -> dict[str, str]:
    """ConnectorUtils.escapeRemoteInferenceInputData."""
    return {k: v if v is None or is_json(v) else escape_json(v) for k, v in parameters.items()}


def cohere_rerank_pre_process(query: str, documents: list[str]) -> dict[str, str]:
    """connector.pre_process.cohere.rerank, escaped as the input parameters are."""
    return escape_parameters(
        {"query": query, "documents": gson(documents), "top_n": gson(len(documents))}
    )


def cohere_rerank_parameters(query: str, documents: list[str], model: str) -> dict[str, str]:
    """connector.pre_process.cohere.rerank, with the connector's own `model` parameter."""
    return {**cohere_rerank_pre_process(query, documents), "model": escape_json(model)}


_PLACEHOLDER = re.compile(r"\$\{parameters\.([A-Za-z0-9_.\-]+?)(?::-([^}]*))?\}")


def create_payload(template: str, parameters: dict[str, str]) -> str:
    """HttpConnector.createPayload (StringSubstitutor with `:-` defaults) + validatePayload."""

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in parameters and parameters[name] is not None:
            return parameters[name]
        return default if default is not None else match.group(0)

    payload = _PLACEHOLDER.sub(substitute, template)
    leftover = re.findall(r"\$\{parameters\.([^}]+)\}", payload)
    if leftover:
        raise MLCommonsError(
            f"Some parameter placeholder not filled in payload: {', '.join(leftover)}"
        )
    try:
        json.loads(payload)
    except ValueError as exc:
        raise MLCommonsError(f"Invalid payload: {payload}") from exc
    return payload


# --- the response ------------------------------------------------------------------------------


def cohere_rerank_post_process(raw_body: bytes) -> list[float | None]:
    """connector.post_process.cohere.rerank: the scores placed back by index, as Doubles, in an
    array as long as `$.results` (None where no result names an index, as Java leaves null)."""
    if not raw_body:
        raise MLCommonsError("empty response body (502)")
    results = _json_smart(raw_body).get("results")
    if not isinstance(results, list):
        raise MLCommonsError("$.results is not a list")
    scores: list[float | None] = [None] * len(results)
    for item in results:
        index, score = item.get("index"), item.get("relevance_score")
        if not isinstance(index, int) or isinstance(index, bool):
            raise MLCommonsError(f"index {index!r} cannot be cast to Integer")
        if not isinstance(score, float):
            raise MLCommonsError(f"relevance_score {score!r} cannot be cast to Double")
        scores[index] = score
    return scores


def rerank_hits(hits: list[dict[str, Any]], scores: Sequence[float | None]) -> list[dict[str, Any]]:
    """The neural-search rescoring rules: one score per hit, then sort by score, descending."""
    if len(scores) != len(hits):
        raise MLCommonsError("scores and hits are not the same length")
    rescored = [{**hit, "_score": score} for hit, score in zip(hits, scores, strict=True)]
    return sorted(rescored, key=lambda hit: -hit["_score"])
