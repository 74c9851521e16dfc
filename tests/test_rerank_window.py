"""The rerank window (sidecar/rerank_window.py and its two routes), with a scoring stand-in.

What OpenSearch does around it (oversample, the rewrite, by_field's stable sort, truncate_hits)
is reproduced here as the sort and cut the pipeline applies; tests/cluster/test_window.py runs
the real pipeline on the real node.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from sidecar.app import METRICS, RERANK_SERVICE, SETTINGS, errors_as_json
from sidecar.config import Settings
from sidecar.errors import BackendUnavailable, Overloaded
from sidecar.metrics import Metrics
from sidecar.rerank_window import Page, keep_order_scores, page_scores, plan
from sidecar.routes_query_dsl import QUERY_DSL_PATH, WINDOW_PATH, add_routes
from sidecar.scoring_types import ScoreResult

QUERY = {"match": {"title": {"query": "hiking boots", "operator": "OR"}}}


def shown(scores: Sequence[float], size: int) -> list[int]:
    """What by_field (stable sort on Java floats, descending) then truncate_hits keep."""
    keys = array("f", scores)
    return sorted(range(len(scores)), key=lambda i: -keys[i])[:size]


def ranking(window_scores: Sequence[float], total: int) -> list[int]:
    keys = array("f", window_scores)
    ranked = sorted(range(len(window_scores)), key=lambda i: -keys[i])
    return ranked + list(range(len(window_scores), total))


def test_plan_fetches_the_window_from_the_top() -> None:
    assert plan({"query": QUERY, "from": 20, "size": 10}, 50).answer() == {
        "from": 0,
        "size": 50,
        "skipped": None,
    }
    # No size or from: OpenSearch's defaults (10 from 0).
    assert plan({"query": QUERY}, 50).page == Page(0, 10, 50)
    # A page that runs past the window's end fetches up to its own end.
    late = plan({"query": QUERY, "from": 45, "size": 10}, 50)
    assert (late.from_, late.size, late.page) == (0, 55, Page(45, 10, 50))


@pytest.mark.parametrize(
    ("search", "skipped"),
    [
        ({"query": QUERY, "size": 0}, "size_0"),
        ({"query": QUERY, "from": 50, "size": 10}, "beyond_window"),
        ({"query": QUERY, "search_after": [1.5, "id-9"]}, "search_after"),
        ({"query": QUERY, "sort": [{"price": {"order": "desc"}}]}, "client_sort"),
        ({"query": {"match_all": {}}}, "no_query_text"),
        ({"size": 5}, "no_query_text"),
        # rerank by_field fails without a total, ml_inference without _source.
        ({"query": QUERY, "track_total_hits": False}, "scoring_impossible"),
        ({"query": QUERY, "track_total_hits": -1}, "scoring_impossible"),
        ({"query": QUERY, "_source": False}, "scoring_impossible"),
    ],
)
def test_plan_leaves_searches_it_cannot_rerank_as_they_are(
    search: dict[str, Any], skipped: str
) -> None:
    result = plan({**search, "from": search.get("from", 3)}, 50)
    assert result.page is None and result.skipped == skipped
    assert (result.from_, result.size) == (search.get("from", 3), search.get("size", 10))


def test_numbers_beyond_a_java_int_are_clamped_not_a_500() -> None:
    huge = plan({"query": QUERY, "from": 1e20, "size": float("inf")}, 50)
    assert huge.answer() == {"from": 2**31 - 1, "size": 2**31 - 1, "skipped": "beyond_window"}


@given(
    window_scores=st.lists(
        st.floats(min_value=-20, max_value=20, allow_nan=False) | st.sampled_from([0.5, 0.25]),
        min_size=1,
        max_size=60,
    ),
    tail=st.integers(min_value=0, max_value=20),
    start=st.integers(min_value=0, max_value=59),
    size=st.integers(min_value=1, max_value=15),
)
def test_page_scores_show_exactly_the_page_of_one_ranking(
    window_scores: list[float], tail: int, start: int, size: int
) -> None:
    total = len(window_scores) + tail
    page = Page(start, size, len(window_scores))
    scores = page_scores(window_scores, total, page)
    expected = ranking(window_scores, total)[start : start + size]
    assert shown(scores, size)[: len(expected)] == expected
    # Reranked hits show their own score; tail hits on the page rank below every one of them.
    for index in expected:
        if index < len(window_scores):
            assert scores[index] == window_scores[index]
        else:
            assert scores[index] < min(window_scores)


def test_pages_never_overlap_or_skip_a_hit() -> None:
    window_scores = [((i * 37) % 50) / 50 for i in range(50)]  # ties included
    total = 63
    seen: list[int] = []
    for start in range(0, 60, 10):
        seen += shown(page_scores(window_scores, total, Page(start, 10, 50)), 10)[
            : max(0, min(10, total - start))
        ]
    assert seen == ranking(window_scores, total)[:60]
    assert len(set(seen)) == len(seen)


def test_keep_order_scores_show_the_page_in_its_own_order() -> None:
    assert shown(keep_order_scores(30, Page(10, 5, 30)), 5) == [10, 11, 12, 13, 14]


class Scorer:
    """Scores by document text (`doc-<n>` scores n), or raises `error`."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls: list[list[str]] = []

    async def score_detailed(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> ScoreResult:
        self.calls.append(list(documents))
        if self.error is not None:
            raise self.error
        return ScoreResult(
            scores=[float(doc.split("-")[1]) for doc in documents],
            input_tokens=0,
            truncated_documents=0,
            model_name="stand-in",
            model_kind="cross-encoder",
        )


@pytest_asyncio.fixture
async def app() -> AsyncIterator[tuple[TestServer, Scorer, Metrics]]:
    application = web.Application(middlewares=[errors_as_json])
    scorer, metrics = Scorer(), Metrics()
    application[RERANK_SERVICE] = scorer  # type: ignore[assignment]
    application[SETTINGS] = Settings()
    application[METRICS] = metrics
    add_routes(application)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    yield server, scorer, metrics
    await server.close()


async def post(server: TestServer, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url(path), json=body) as response,
    ):
        return response.status, json.loads(await response.text())


def hits_body(count: int, page: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # Hits in OpenSearch's order: doc-0 is BM25's best but scores lowest here.
    return {
        "query": QUERY,
        "documents": [{"title": f"doc-{i}"} for i in range(count)],
        "fields": ["title"],
        "page": {**page, "window": 50},
        **extra,
    }


async def test_window_route_answers_the_rewrite_and_counts_it(
    app: tuple[TestServer, Scorer, Metrics],
) -> None:
    server, scorer, metrics = app
    status, answer = await post(
        server, WINDOW_PATH, {"search": {"query": QUERY, "from": 20, "size": 10}, "window": 50}
    )
    assert status == 200 and answer == {"from": 0, "size": 50, "skipped": None}
    status, answer = await post(
        server, WINDOW_PATH, {"search": {"query": {"match_all": {}}}, "window": 50}
    )
    assert answer == {"from": 0, "size": 10, "skipped": "no_query_text"}
    assert metrics.window_plans.labels("windowed")._value.get() == 1
    assert metrics.window_plans.labels("no_query_text")._value.get() == 1
    assert scorer.calls == []
    for bad, field in (({"window": 50}, "search"), ({"search": {}, "window": 0}, "window")):
        status, answer = await post(server, WINDOW_PATH, bad)
        assert status == 422 and field in answer["error"]["message"]


async def test_a_windowed_search_gets_the_page_of_the_reranked_window(
    app: tuple[TestServer, Scorer, Metrics],
) -> None:
    server, scorer, _ = app
    # ML Commons sends the client's numbers back as doubles.
    status, answer = await post(server, QUERY_DSL_PATH, hits_body(55, {"from": 10.0, "size": 10.0}))
    assert status == 200, answer
    assert len(scorer.calls[0]) == 50  # the window only; hits 50-54 are the tail
    # Reranked: doc-49 first, so the second page is doc-39 ... doc-30.
    assert shown(answer["scores"], 10) == list(range(39, 29, -1))
    assert [answer["scores"][i] for i in range(39, 29, -1)] == [float(i) for i in range(39, 29, -1)]


async def test_searches_outside_the_window_keep_the_plain_behaviour(
    app: tuple[TestServer, Scorer, Metrics],
) -> None:
    server, scorer, _ = app
    status, answer = await post(server, QUERY_DSL_PATH, hits_body(10, {"from": 50, "size": 10}))
    assert status == 422 and answer["error"]["type"] == "beyond_window"
    # No more hits than the page: its own hits (the rewrite did not happen), reranked as a page.
    status, answer = await post(server, QUERY_DSL_PATH, hits_body(10, {"from": 20, "size": 10}))
    assert status == 200 and answer["scores"] == [float(i) for i in range(10)]
    sort = [{"price": {"order": "asc"}}]
    body = hits_body(50, {"from": 10, "size": 10}, sort=sort)
    status, answer = await post(server, QUERY_DSL_PATH, body)
    assert status == 422 and answer["error"]["type"] == "client_sort"
    assert len(scorer.calls) == 1


async def test_a_windowed_search_is_answered_before_the_connector_gives_up(
    app: tuple[TestServer, Scorer, Metrics],
) -> None:
    server, scorer, metrics = app
    never = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> ScoreResult:
        await never.wait()
        raise AssertionError("unreachable")

    scorer.score_detailed = stuck  # type: ignore[method-assign]
    # budget_s 1: the sidecar answers after max(0.5, 1 - 1) s, in the search's own order.
    status, answer = await post(
        server, QUERY_DSL_PATH, hits_body(50, {"from": 20, "size": 10, "budget_s": 1})
    )
    assert status == 200 and answer["degraded"] is True
    assert shown(answer["scores"], 10) == list(range(20, 30))
    assert metrics.window_fallbacks.labels("timeout")._value.get() == 1


@pytest.mark.parametrize(
    "error",
    [Overloaded("queue full", retry_after_s=1), BackendUnavailable("vLLM is down")],
)
async def test_a_windowed_search_that_cannot_be_scored_gets_its_own_page(
    app: tuple[TestServer, Scorer, Metrics], error: Exception
) -> None:
    server, scorer, metrics = app
    scorer.error = error
    status, answer = await post(server, QUERY_DSL_PATH, hits_body(50, {"from": 20, "size": 10}))
    # An error would let the first 10 hits through: the wrong page.
    assert status == 200 and answer["degraded"] is True
    assert shown(answer["scores"], 10) == list(range(20, 30))
    error_type = "overloaded" if isinstance(error, Overloaded) else "backend_unavailable"
    assert metrics.window_fallbacks.labels(error_type)._value.get() == 1
