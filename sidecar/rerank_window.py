"""The rerank window: recall many, rerank the top W, show the page the client asked for.

OpenSearch's search pipeline cannot offset hits after reranking (`truncate_hits` keeps the first
N; `oversample` scales `size`, not `from`). So the sidecar does it in two steps of one search:

1. `plan`: the pipeline's `ml_inference` request processor sends the search body; the answer
   rewrites it to fetch the window from the top (`from` 0, `size` max(W, from + size)). A search
   that cannot be reranked (no query text, an explicit sort, `search_after`, `size` 0, a page
   past the window) is left as it is: OpenSearch returns the page it would without us.
2. `page_scores`: the response processor sends the hits with the search as the client sent it
   (OpenSearch's `$._request` is the search before any request processor ran); the same `plan`
   tells whether it was windowed. If so the first W hits are reranked, the rest keep their
   order behind them, and the scores are chosen so that sorting by them (stable, descending, as
   `rerank by_field` does) puts the page first, in order; `truncate_hits` then cuts to the
   client's `size`. Page positions are those of one ranking (window by score, then the tail),
   so pages never overlap or skip a hit.

If step 1 fails (sidecar down), the search is not rewritten, step 2 fails too, and the client
gets its usual page. Known limit: `truncate_hits` keeps `size` hits, so a page inside the window
that runs past the last hit is padded with hits of earlier pages.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sidecar.query_dsl import client_sort_keys, query_text
from sidecar.schemas import format_score

DEFAULT_SIZE = 10  # OpenSearch's, when a search sends no size
MAX_INT = 2**31 - 1  # from and size are Java ints

Skip = Literal[
    "size_0",
    "beyond_window",
    "search_after",
    "client_sort",
    "no_query_text",
    "scoring_impossible",
]


@dataclass(frozen=True)
class Page:
    """The page a windowed search asked for: hits [start, start + size) of the ranking."""

    start: int
    size: int
    window: int


@dataclass(frozen=True)
class Plan:
    from_: int
    size: int
    page: Page | None  # None: the search is not windowed
    skipped: Skip | None

    def answer(self) -> dict[str, Any]:
        return {"from": self.from_, "size": self.size, "skipped": self.skipped}


def _whole(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return default
    return int(min(value, MAX_INT)) if math.isfinite(value) else MAX_INT


def plan(search: dict[str, Any], window: int) -> Plan:
    """How to run `search` (a SearchSourceBuilder rendering) with a rerank window of `window`."""
    size = _whole(search.get("size"), DEFAULT_SIZE)
    start = _whole(search.get("from"), 0)
    skipped: Skip | None = None
    if size == 0:
        skipped = "size_0"
    elif start >= window:
        skipped = "beyond_window"  # the window's hits are all on earlier pages
    elif search.get("search_after") is not None:
        skipped = "search_after"
    elif client_sort_keys(search.get("sort")):
        skipped = "client_sort"
    elif not query_text(search.get("query")):
        skipped = "no_query_text"
    elif search.get("track_total_hits") in (False, -1) or search.get("_source") is False:
        # rerank by_field fails without a total, and ml_inference without `_source`.
        skipped = "scoring_impossible"
    if skipped is not None:
        return Plan(start, size, None, skipped)
    page = Page(start, size, window)
    return Plan(0, max(window, start + size), page, None)


def _as_sorted(scores: Sequence[float]) -> list[float]:
    # by_field compares Java floats of the numbers as written: rank by the same rounding so
    # ties fall the same way.
    return list(array("f", (float(format_score(score)) for score in scores)))


def _below(value: float) -> float:
    return value - max(1.0, abs(value))


def page_scores(window_scores: Sequence[float], total: int, page: Page) -> list[float]:
    """Scores for `total` hits (in the order OpenSearch returned them) whose descending stable
    sort starts with `page`: hits [0, W) ranked by `window_scores`, the rest in their order.

    Page hits of the window keep their own score; tail hits on the page get one score below
    the window's lowest (equal, so the stable sort keeps their order); hits off the page get a
    score below both, so `truncate_hits` drops them.
    """
    ranked = len(window_scores)
    keys = _as_sorted(window_scores)
    order = sorted(range(ranked), key=lambda i: -keys[i]) + list(range(ranked, total))
    on_page = order[page.start : page.start + page.size]
    tail = _below(min(window_scores, default=0.0))
    scores = [_below(tail)] * total
    for index in on_page:
        scores[index] = window_scores[index] if index < ranked else tail
    return scores


def keep_order_scores(total: int, page: Page) -> list[float]:
    """Page scores that keep OpenSearch's order: the page the search would have had without a
    window (used when the window's hits cannot be scored)."""
    end = page.start + page.size
    return [float(total - i) if page.start <= i < end else 0.0 for i in range(total)]
