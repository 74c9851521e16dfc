"""The text a search is about, taken from an OpenSearch/Elasticsearch query DSL object.

OpenSearch's `ml_inference` response processor hands us the request's whole `query` object
(`$._request.query`), rendered by `SearchSourceBuilder` in its full form: `{"match": {"title":
{"query": "...", "operator": "OR", ...}}}` even when the client sent `{"match": {"title": "..."}}`,
and `bool` clauses always as arrays. Both forms are accepted here.

Rules: full-text queries give their text (`match`, `match_phrase`, `match_phrase_prefix`,
`match_bool_prefix`, `multi_match`, `combined_fields`, `query_string`, `simple_query_string`,
`intervals` `match` rules, `neural`/`neural_sparse` `query_text`). Compound queries are walked:
`bool` must/should first (filter only when they hold no text; never must_not), `dis_max`,
`boosting` (positive), `constant_score`, `function_score`, `script_score`, `nested`,
`has_child`/`has_parent`, `hybrid`. Term-level queries (`term`, `range`, `exists`, ...) hold
values, not text, and are skipped. Texts are de-duplicated (case-insensitively) and joined with a
space. `query_string` syntax (field prefixes, operators, boosts, fuzziness) is stripped.
"""

from __future__ import annotations

import re
from typing import Any

MAX_QUERY_CHARS = 4096
# Deeper than any real query or document; clients cannot make us recurse without bound.
MAX_DEPTH = 64
# More texts than fit in MAX_QUERY_CHARS are not collected.
MAX_TEXTS = 256

_FULL_TEXT = frozenset({"match", "match_phrase", "match_phrase_prefix", "match_bool_prefix"})
_QUERY_KEY = frozenset({"multi_match", "combined_fields"})
_SYNTAX = frozenset({"query_string", "simple_query_string"})
_WRAPPERS = {
    "constant_score": ("filter",),
    "function_score": ("query",),
    "script_score": ("query",),
    "nested": ("query",),
    "has_child": ("query",),
    "has_parent": ("query",),
    "boosting": ("positive",),
}
_LISTS = {"dis_max": "queries", "hybrid": "queries"}

# Linear in the text: a field prefix starts only where its run starts, and no group scans past
# 256 characters (a 128 KB query_string of `@` took 15.9 s on the event loop when a match could
# start at every `@` and scan to the end).
_NEGATED = re.compile(r'(?:(?<=\s)|^)(?:NOT\s+|[-!])(?:"[^"]{0,256}"|\([^)]{0,256}\)|\S++)')
_FIELD_PREFIX = re.compile(r"(?<![\w.*@])[A-Za-z_@][\w.*@]*+:(?!//)")
_OPERATORS = re.compile(r"(?<!\S)(?:AND|OR|&&|\|\|)(?!\S)")
_SUFFIX = re.compile(r"[~^][\d.]*")
_SPECIAL = re.compile(r'[+(){}\[\]"*?|&<>=]')


def query_text(query: Any) -> str:
    """The text of a query DSL object (or of a whole search body with a `query` key); "" if the
    query has none (match_all, term, range, knn, ...). A plain string is returned as is."""
    # A search body: no query type is called "query".
    for _ in range(MAX_DEPTH):
        if not (isinstance(query, dict) and isinstance(query.get("query"), dict | str)):
            break
        query = query["query"]
    if isinstance(query, str):
        return _squash(query[: 4 * MAX_QUERY_CHARS])[:MAX_QUERY_CHARS].strip()
    texts: list[str] = []
    _walk(query, texts, depth=0)
    seen: set[str] = set()
    unique = []
    length = 0
    for text in texts:
        squashed = _squash(text)
        if squashed and squashed.lower() not in seen:
            seen.add(squashed.lower())
            unique.append(squashed)
            length += len(squashed) + 1
            if length > MAX_QUERY_CHARS:
                break
    return " ".join(unique)[:MAX_QUERY_CHARS].strip()


def _squash(text: str) -> str:
    return " ".join(text.split())


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _walk(node: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH or len(out) >= MAX_TEXTS:
        return
    if isinstance(node, list):
        for item in node:
            _walk(item, out, depth + 1)
        return
    if not isinstance(node, dict):
        return
    for kind, body in node.items():
        _one(kind, body, out, depth + 1)


def _one(kind: str, body: Any, out: list[str], depth: int) -> None:
    if kind in _QUERY_KEY or kind in _SYNTAX:
        text = _scalar_text(body.get("query")) if isinstance(body, dict) else None
        if text:
            out.append(strip_syntax(text) if kind in _SYNTAX else text)
        return
    if kind in _FULL_TEXT:
        if not isinstance(body, dict):
            return
        for field, value in body.items():
            if field in ("boost", "_name"):
                continue
            text = _scalar_text(value.get("query") if isinstance(value, dict) else value)
            if text:
                out.append(text)
        return
    if kind in ("neural", "neural_sparse") and isinstance(body, dict):
        for value in body.values():
            if isinstance(value, dict):
                text = _scalar_text(value.get("query_text"))
                if text:
                    out.append(text)
        return
    if kind == "intervals" and isinstance(body, dict):
        _intervals(body, out, depth)
        return
    if kind == "bool" and isinstance(body, dict):
        scored: list[str] = []
        for clause in ("must", "should"):
            _walk(body.get(clause), scored, depth)
        if not scored:
            _walk(body.get("filter"), scored, depth)
        out.extend(scored)
        return
    if kind in _WRAPPERS and isinstance(body, dict):
        for key in _WRAPPERS[kind]:
            _walk(body.get(key), out, depth)
        return
    if kind in _LISTS and isinstance(body, dict):
        _walk(body.get(_LISTS[kind]), out, depth)


def _intervals(node: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH or not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "match" and isinstance(value, dict):
            text = _scalar_text(value.get("query"))
            if text:
                out.append(text)
        elif isinstance(value, dict):
            _intervals(value, out, depth + 1)
        elif isinstance(value, list):
            for item in value:
                _intervals(item, out, depth + 1)


def strip_syntax(text: str) -> str:
    """Lucene/simple query syntax out, wanted words in: `title:(quick OR "brown fox")^2 -lazy~1`
    -> `quick brown fox` (negated terms are not what the user wants, so they go too)."""
    # Only as much as can end up in the query text: the rest would be cut anyway.
    text = text[: 4 * MAX_QUERY_CHARS].replace("\\", " ")
    text = _NEGATED.sub(" ", text)
    text = _FIELD_PREFIX.sub(" ", text)
    text = _OPERATORS.sub(" ", text)
    text = _SUFFIX.sub(" ", text)
    text = _SPECIAL.sub(" ", text)
    return _squash(text)


def document_text(document: Any, fields: list[str] | None = None, depth: int = 0) -> str:
    """One hit's text: strings as they are, lists joined by spaces (as neural-search joins
    multi-valued fields), objects by field (the listed ones, in order) joined by newlines.
    Values nested deeper than MAX_DEPTH are left out."""
    if document is None or isinstance(document, bool) or depth > MAX_DEPTH:
        return ""
    if isinstance(document, str):
        return document
    if isinstance(document, int | float):
        return str(document)
    if isinstance(document, list):
        return " ".join(text for item in document if (text := document_text(item, None, depth + 1)))
    if isinstance(document, dict):
        values = [_path_value(document, name) for name in fields] if fields else document.values()
        return "\n".join(
            text for value in values if (text := document_text(value, None, depth + 1))
        )
    return ""


def _path_value(source: dict[str, Any], path: str, depth: int = 0) -> Any:
    """A field by dot path; a literal dotted key wins; lists of objects are walked."""
    if path in source:
        return source[path]
    head, _, rest = path.partition(".")
    if not rest or head not in source or depth > MAX_DEPTH:
        return None
    value = source[head]
    if isinstance(value, dict):
        return _path_value(value, rest, depth + 1)
    if isinstance(value, list):
        return [_path_value(item, rest, depth + 1) for item in value if isinstance(item, dict)]
    return None


def client_sort_keys(sort: Any) -> list[str]:
    """The keys a search sorts by other than relevance (`_score` descending), in order.

    OpenSearch renders the request's `sort` as `[{"price": {"order": "desc"}}, ...]`; clients may
    also send `"price"`, `["price", "_score"]` or `{"price": "asc"}`. A search that sorts by
    anything but relevance asked for that order, so it must not be reranked.
    """
    items = sort if isinstance(sort, list) else [] if sort is None else [sort]
    keys: list[str] = []
    for item in items:
        entries = item.items() if isinstance(item, dict) else [(item, None)]
        for key, spec in entries:
            order = spec.get("order") if isinstance(spec, dict) else spec
            if key == "_score" and order in (None, "desc", "DESC"):
                continue
            keys.append(str(key))
    return keys
