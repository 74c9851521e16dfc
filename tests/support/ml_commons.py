"""What ML Commons does around a remote rerank call, re-implemented from CONTRACTS.md §1-§2.

No OpenSearch cluster can run here, so the contract tests use this stand-in. It follows:
- request filling (`ConnectorUtils`/`HttpConnector.createPayload`): a string parameter is escaped
  with commons-text `escapeJson` (`"` `\\` `/` and control characters escaped, non-ASCII as
  `\\uXXXX`) but not quoted; a JSON array parameter is inserted raw;
- `connector.pre_process.cohere.rerank`: parameters `query`, `documents`, `top_n` = len(documents);
- `connector.post_process.cohere.rerank`: `$.results[*]`, `index` cast to Integer and
  `relevance_score` to Double, as json-smart (permissive) parses numbers: an integer literal is an
  Integer, a float literal over 18 characters a BigDecimal; either fails the Double cast;
- the neural-search rerank processor: one score per hit or "scores and hits are not the same
  length", then hits sorted by score, descending.
"""

from __future__ import annotations

import json
import re
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


def cohere_rerank_parameters(query: str, documents: list[str], model: str) -> dict[str, str]:
    """connector.pre_process.cohere.rerank, with the connector's own `model` parameter."""
    return {
        "query": escape_json(query),
        "documents": json.dumps(documents),
        "top_n": str(len(documents)),
        "model": escape_json(model),
    }


def fill_request_body(template: str, parameters: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in parameters:
            raise MLCommonsError(f"Some parameter placeholder not filled in payload: {name}")
        return parameters[name]

    body = re.sub(r"\$\{parameters\.([A-Za-z0-9_.]+)\}", substitute, template)
    json.loads(body)  # ML Commons refuses a payload that is not valid JSON
    return body


def _json_smart_float(literal: str) -> float | Decimal:
    return Decimal(literal) if len(literal) > 18 else float(literal)


def cohere_rerank_post_process(raw_body: bytes, n_documents: int) -> list[float]:
    """connector.post_process.cohere.rerank: scores placed back by index, as Doubles."""
    if not raw_body:
        raise MLCommonsError("empty response body (502)")
    data = json.loads(raw_body, parse_float=_json_smart_float, parse_int=int)
    results = data.get("results")
    if not isinstance(results, list):
        raise MLCommonsError("$.results is not a list")
    scores: list[float | None] = [None] * n_documents
    for item in results:
        index, score = item.get("index"), item.get("relevance_score")
        if not isinstance(index, int) or isinstance(index, bool):
            raise MLCommonsError(f"index {index!r} cannot be cast to Integer")
        if not isinstance(score, float):
            raise MLCommonsError(f"relevance_score {score!r} cannot be cast to Double")
        scores[index] = score
    return [score for score in scores if score is not None]


def rerank_hits(hits: list[dict[str, Any]], scores: list[float]) -> list[dict[str, Any]]:
    """The neural-search rescoring rules: one score per hit, then sort by score, descending."""
    if len(scores) != len(hits):
        raise MLCommonsError("scores and hits are not the same length")
    rescored = [{**hit, "_score": score} for hit, score in zip(hits, scores, strict=True)]
    return sorted(rescored, key=lambda hit: -hit["_score"])
