"""Index the demo catalog, run each demo query with and without reranking, print them side by side.

Both searches send the same client body (a `multi_match` over `title^2` and `description`, size
5): once with `search_pipeline=_none`, which is plain BM25, and once as it is, which runs the
index's default search pipeline (the rerank pipeline `es_integration opensearch setup` attached).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException
from opensearchpy.helpers import bulk
from rich import box
from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.table import Table
from rich.text import Text

from demo.catalog import LANGUAGES, DemoData, Query, load_demo_data

SIZE = 5
FIELDS = ("title^2", "description")
WARMUP_RUNS = 1
TIMED_RUNS = 5
BM25_PARAMS = {"search_pipeline": "_none"}  # no pipeline at all: plain BM25
TITLE_COLUMNS = 40
HIT_COLUMNS = len("p123 [3] ") + TITLE_COLUMNS
TABLE_COLUMNS = 120
# Marks an index this module created, so that a re-run may replace it and nothing else.
CREATED_BY = "rerank-sidecar demo"
ENGLISH_CENTRIC_NOTE = (
    "The default embedded model, all-MiniLM-L6-v2, is an English-centric bi-encoder: its "
    "rerankings of the Chinese and Spanish queries are weak. "
    "`make demo VLLM_URL=http://<host>:8000` runs this same demo against a real "
    "Qwen3-Reranker (a multilingual cross-encoder) on vLLM."
)

_TEXT = {"type": "text", "analyzer": "standard"}
_KEYWORD = {"type": "keyword"}
INDEX_BODY: dict[str, Any] = {
    # One shard: every document's BM25 statistics come from the same place.
    "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
    "mappings": {
        "_meta": {"created_by": CREATED_BY},
        "dynamic": "strict",
        "properties": {
            "id": _KEYWORD,
            "lang": _KEYWORD,
            "title": _TEXT,
            "description": _TEXT,
            "title_en": _TEXT,
            "description_en": _TEXT,
            "category": _KEYWORD,
            "brand": _KEYWORD,
            "price": {"type": "float"},
            "released": {"type": "date"},
            "rating": {"type": "float"},
            "tags": _KEYWORD,
            "variants": {
                "type": "nested",
                "properties": {"color": _KEYWORD, "size": _KEYWORD, "stock": {"type": "integer"}},
            },
        },
    },
}


class DemoError(Exception):
    """The cluster refused what the demo needs; the message says what and why."""


@dataclass(frozen=True)
class Hit:
    id: str
    title: str
    score: float | None


@dataclass(frozen=True)
class QueryRow:
    query: Query
    bm25: list[Hit]
    reranked: list[Hit]
    bm25_ms: list[float]  # the timed runs, client-side wall clock
    reranked_ms: list[float]

    @property
    def bm25_median_ms(self) -> float:
        return statistics.median(self.bm25_ms)

    @property
    def reranked_median_ms(self) -> float:
        return statistics.median(self.reranked_ms)


@dataclass(frozen=True)
class DemoResult:
    index: str
    pipeline: str  # the index's default search pipeline: the reranked side
    backend_label: str
    rows: list[QueryRow]


def query_body(text: str) -> dict[str, Any]:
    """The one client query of the demo, sent unchanged with and without the pipeline."""
    return {"query": {"multi_match": {"query": text, "fields": list(FIELDS)}}, "size": SIZE}


@contextmanager
def _cluster_errors(what: str) -> Iterator[None]:
    """A one-line DemoError instead of an opensearch-py traceback."""
    try:
        yield
    except OpenSearchException as exc:
        raise DemoError(f"{what}: {exc}") from None


def _client(opensearch_url: str) -> OpenSearch:
    # A reranked search waits for the model: allow more than opensearch-py's 10 s default.
    return OpenSearch(hosts=[opensearch_url], timeout=120)


def index_catalog(opensearch_url: str, index: str) -> int:
    """(Re)create `index` with the demo mapping, bulk-index the catalog, refresh; the count.

    An existing index is replaced only if this module created it (its `_meta` says so).
    """
    client = _client(opensearch_url)
    data = load_demo_data()
    with _cluster_errors(f"indexing the demo catalog into {index!r} at {opensearch_url}"):
        if client.indices.exists(index=index):
            mapping = client.indices.get_mapping(index=index)[index]["mappings"]
            if mapping.get("_meta", {}).get("created_by") != CREATED_BY:
                raise DemoError(
                    f"index {index!r} exists and was not created by the demo: "
                    "choose another --index or delete it yourself"
                )
            client.indices.delete(index=index)
        client.indices.create(index=index, body=INDEX_BODY)
        actions = (
            {"_index": index, "_id": pid, "_source": product.model_dump(mode="json")}
            for pid, product in data.products.items()
        )
        indexed, _ = bulk(client, actions)  # raises BulkIndexError naming the failed documents
        client.indices.refresh(index=index)
    return int(indexed)


def default_pipeline(client: OpenSearch, index: str) -> str:
    """The index's default search pipeline; without one nothing would be reranked."""
    settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
    name = settings.get("search", {}).get("default_pipeline")
    if not name or name == "_none":
        raise DemoError(
            f"index {index!r} has no default search pipeline, so nothing would be reranked: "
            f"run `python -m es_integration opensearch setup --index {index}` first"
        )
    return str(name)


def _hits(answer: Mapping[str, Any]) -> list[Hit]:
    return [
        Hit(str(hit["_id"]), str(hit["_source"]["title"]), hit.get("_score"))
        for hit in answer["hits"]["hits"]
    ]


def _search(
    client: OpenSearch, index: str, body: dict[str, Any], params: dict[str, str]
) -> tuple[list[Hit], float]:
    """The hits and the call's wall-clock milliseconds."""
    started = time.perf_counter()
    answer = client.search(index=index, body=body, params=params)
    return _hits(answer), (time.perf_counter() - started) * 1000


def _compare(client: OpenSearch, index: str, query: Query) -> QueryRow:
    """BM25 and reranked, alternately: a load spike on this shared machine hits both alike."""
    body = query_body(query.text)
    modes: tuple[dict[str, str], dict[str, str]] = (BM25_PARAMS, {})
    for _ in range(WARMUP_RUNS):
        for params in modes:
            _search(client, index, body, params)
    hits: list[list[Hit]] = [[], []]
    timings: list[list[float]] = [[], []]
    for _ in range(TIMED_RUNS):
        for mode, params in enumerate(modes):
            hits[mode], elapsed_ms = _search(client, index, body, params)
            timings[mode].append(elapsed_ms)
    return QueryRow(query, hits[0], hits[1], timings[0], timings[1])


def run_demo(
    opensearch_url: str,
    index: str,
    *,
    backend_label: str,
    out: TextIO,
    english_centric_model: bool = True,
) -> DemoResult:
    """Run every demo query both ways and print the side-by-side report to `out`.

    `english_centric_model`: the backend is the embedded all-MiniLM-L6-v2 (the default), so
    the report warns at the Chinese and Spanish queries.
    """
    client = _client(opensearch_url)
    data = load_demo_data()
    with _cluster_errors(f"searching {index!r} at {opensearch_url}"):
        pipeline = default_pipeline(client, index)
        rows = [_compare(client, index, query) for query in data.queries]
    result = DemoResult(index, pipeline, backend_label, rows)
    write_report(result, data, out, english_centric_model=english_centric_model)
    return result


def cut(title: str, columns: int = TITLE_COLUMNS) -> str:
    """`title` cut to `columns` display columns (a CJK character takes two), with an ellipsis."""
    if cell_len(title) <= columns:
        return title
    # set_cell_size pads with a space where a wide character would straddle the cut.
    return set_cell_size(title, columns - 1).rstrip() + "…"


def _cell(hit: Hit | None, grades: Mapping[str, int]) -> Text:
    if hit is None:
        return Text()
    grade = grades.get(hit.id)
    # Text, not str: a product title is not rich markup.
    return Text(f"{hit.id} [{'?' if grade is None else grade}] {cut(hit.title)}")


def _moved(hit: Hit | None, bm25: Sequence[Hit]) -> Text:
    if hit is None:
        return Text()
    ids = [h.id for h in bm25]
    return Text(f"#{ids.index(hit.id) + 1}" if hit.id in ids else "new")


def query_table(row: QueryRow, grades: Mapping[str, int]) -> Table:
    """Rank, the BM25 top 5, the reranked top 5 (with each hit's BM25 rank), the latencies."""
    table = Table(
        title=Text(f"{row.query.qid} ({row.query.lang}): {row.query.text}"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption=Text(
            f"latency, median of {len(row.bm25_ms)}: BM25 {row.bm25_median_ms:.1f} ms, "
            f"reranked {row.reranked_median_ms:.1f} ms "
            f"({row.reranked_median_ms - row.bm25_median_ms:+.1f} ms)"
        ),
        caption_justify="left",
    )
    table.add_column("#", justify="right", no_wrap=True)
    # A fixed width, so that every query's table lines up: "p123 [3] " and the cut title.
    table.add_column("BM25 (search_pipeline=_none)", width=HIT_COLUMNS, no_wrap=True)
    table.add_column("reranked (default pipeline)", width=HIT_COLUMNS, no_wrap=True)
    table.add_column("was", no_wrap=True)
    for rank in range(max(len(row.bm25), len(row.reranked))):
        old = row.bm25[rank] if rank < len(row.bm25) else None
        new = row.reranked[rank] if rank < len(row.reranked) else None
        table.add_row(
            Text(str(rank + 1)), _cell(old, grades), _cell(new, grades), _moved(new, row.bm25)
        )
    return table


def latency_table(rows: Sequence[QueryRow]) -> Table:
    table = Table(title="Search latency (ms, client side)", title_justify="left", box=box.SIMPLE)
    for name in ("query", "BM25", "reranked", "added"):
        table.add_column(name, justify="left" if name == "query" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(f"{row.query.qid} {cut(row.query.text, 30)}"),
            f"{row.bm25_median_ms:.1f}",
            f"{row.reranked_median_ms:.1f}",
            f"{row.reranked_median_ms - row.bm25_median_ms:+.1f}",
        )
    bm25 = statistics.median(row.bm25_median_ms for row in rows)
    reranked = statistics.median(row.reranked_median_ms for row in rows)
    table.add_section()
    table.add_row(
        "median of the queries", f"{bm25:.1f}", f"{reranked:.1f}", f"{reranked - bm25:+.1f}"
    )
    return table


def write_report(
    result: DemoResult, data: DemoData, out: TextIO, *, english_centric_model: bool
) -> None:
    console = Console(file=out, width=TABLE_COLUMNS, highlight=False, emoji=False)
    counts = data.languages()
    languages = ", ".join(f"{lang} {counts[lang]}" for lang in LANGUAGES)
    console.print(
        f"Rerank demo on index {result.index!r}: {len(data.products)} products ({languages}), "
        f"{len(result.rows)} queries.\nBackend: {result.backend_label}.\n"
        f"Each query sends the same client body twice:\n  {json.dumps(query_body('<text>'))}\nwith "
        "search_pipeline=_none (plain BM25) and as it is (the index's default pipeline, "
        f"{result.pipeline!r}: reranked). [n] is the product's judged relevance, 0-3 "
        "(demo/data/qrels.tsv); 'was' is its BM25 rank. "
        f"Latency: median of {TIMED_RUNS} searches after {WARMUP_RUNS} warm-up, "
        "BM25 and reranked alternately.",
        markup=False,
    )
    if english_centric_model:
        console.print(f"\nNote: {ENGLISH_CENTRIC_NOTE}", markup=False)
    for row in result.rows:
        console.print()
        console.print(query_table(row, data.judgments.get(row.query.qid, {})))
        if english_centric_model and row.query.lang != "en":
            console.print(
                f"  ({row.query.lang} query: all-MiniLM-L6-v2 is English-centric, so this "
                "reranking is weak; a Qwen3-Reranker via VLLM_URL handles it)",
                markup=False,
            )
    console.print()
    console.print(latency_table(result.rows))
