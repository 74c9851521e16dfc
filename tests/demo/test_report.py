"""The demo report on fixed rows (CJK display widths, truncation, notes) and its index mapping.

Widths are measured here with the standard library's East Asian Width table, independently of
the rich library that lays the tables out.
"""

from __future__ import annotations

import io
import unicodedata

import pytest
from rich.console import Console

from demo.catalog import DemoData, Product, Query, Variant, load_demo_data
from demo.report import (
    ENGLISH_CENTRIC_NOTE,
    INDEX_BODY,
    TITLE_COLUMNS,
    DemoResult,
    Hit,
    QueryRow,
    cut,
    query_table,
    write_report,
)

LONG_CHINESE = "疾风男款网面透气跑步鞋夏季轻便运动鞋适合日常慢跑健身房训练和通勤穿着"
LONG_SPANISH = "Zapatillas de carretera ligeras para maratón con placa de carbono"


def width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


@pytest.fixture(scope="module")
def data() -> DemoData:
    return load_demo_data()


@pytest.mark.parametrize(
    "title",
    [LONG_CHINESE, LONG_SPANISH, "Mixed 中文 and English title that runs on and on and on"],
)
def test_a_long_title_is_cut_to_the_column_budget_with_an_ellipsis(title: str) -> None:
    shown = cut(title)
    assert shown.endswith("…")
    assert TITLE_COLUMNS - 1 <= width(shown) <= TITLE_COLUMNS
    assert title.startswith(shown[:-1])


def test_a_short_title_is_kept_whole() -> None:
    assert cut("降噪蓝牙耳机") == "降噪蓝牙耳机"
    assert cut("Cast iron skillet") == "Cast iron skillet"


def _row(query: Query) -> QueryRow:
    bm25 = [
        Hit("p079", LONG_CHINESE, 12.5),
        Hit("p014", "夏天防晒衣 冰丝透气 UPF50+", 11.0),
        Hit("p118", LONG_SPANISH, 9.1),
        Hit("p999", "[bold]not markup[/bold]", 8.0),
        Hit("p012", "女款飞织运动鞋 透气轻盈 一脚蹬", 7.5),
    ]
    reranked = [bm25[4], bm25[0], Hit("p233", "飞织网面慢跑鞋 脚感清爽不闷脚", 0.9)]
    return QueryRow(query, bm25, reranked, [10.0, 30.0, 20.0], [110.0, 90.0, 100.0])


def test_the_side_by_side_table_lines_up_with_cjk_titles(data: DemoData) -> None:
    query = next(q for q in data.queries if q.lang == "zh")
    grades = data.judgments[query.qid]
    out = io.StringIO()
    Console(file=out, width=120).print(query_table(_row(query), grades))
    lines = out.getvalue().splitlines()
    # rich pads every line of the table to one width: it holds if CJK characters count as two.
    assert len({width(line) for line in lines}) == 1, lines
    body = [line for line in lines if line.strip()][1:-1]  # between the title and the caption
    text = out.getvalue()
    assert f"p079 [{grades['p079']}] {cut(LONG_CHINESE)}" in text
    assert "p999 [?] [bold]not markup[/bold]" in text  # unjudged, and printed as it is
    assert "median of 3: BM25 20.0 ms, reranked 100.0 ms (+80.0 ms)" in text
    was = [line.split()[-1] for line in body if line.split()[0] in {"1", "2", "3"}]
    assert was == ["#5", "#1", "new"]


def test_the_report_warns_at_non_english_queries_only_with_the_embedded_model(
    data: DemoData,
) -> None:
    rows = [_row(query) for query in data.queries]
    result = DemoResult("demo-products", "rerank-sidecar", "all-MiniLM-L6-v2 (embedded)", rows)
    out = io.StringIO()
    write_report(result, data, out, english_centric_model=True)
    text = " ".join(out.getvalue().split())
    assert " ".join(ENGLISH_CENTRIC_NOTE.split()) in text
    warnings = sum(query.lang != "en" for query in data.queries)
    assert text.count("is English-centric, so this reranking is weak") == warnings

    out = io.StringIO()
    write_report(result, data, out, english_centric_model=False)
    assert "English-centric" not in out.getvalue()
    assert "median of the queries" in out.getvalue()


def test_the_mapping_covers_every_product_field_with_the_types_the_demo_needs() -> None:
    properties = INDEX_BODY["mappings"]["properties"]
    # The mapping is strict: a product field it lacks would fail the bulk request.
    assert set(properties) == set(Product.model_fields)
    assert set(properties["variants"]["properties"]) == set(Variant.model_fields)
    assert properties["variants"]["type"] == "nested"
    for name in ("title", "description", "title_en", "description_en"):
        assert properties[name] == {"type": "text", "analyzer": "standard"}
    assert {properties[name]["type"] for name in ("category", "brand", "lang", "tags")} == {
        "keyword"
    }
