"""The demo catalog, queries and judgments: counts, languages, cross-references, bad files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from demo.catalog import DATA_DIR, CatalogError, DemoData, load_demo_data, read_catalog

REQUIRED_QUERIES = {
    "waterproof hiking boots",
    "适合夏天穿的透气运动鞋",
    "送给妈妈的母亲节礼物推荐",
    "zapatillas para correr en asfalto",
}
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def data() -> DemoData:
    return load_demo_data()


def _words(text: str) -> int:
    return len(text.split())


def test_catalog_size_languages_and_categories(data: DemoData) -> None:
    total = len(data.products)
    assert total >= 240
    shares = {lang: count / total for lang, count in data.languages().items()}
    assert shares["en"] == pytest.approx(0.45, abs=0.03)
    assert shares["zh"] == pytest.approx(0.30, abs=0.03)
    assert shares["es"] == pytest.approx(0.25, abs=0.03)
    categories = {product.category for product in data.products.values()}
    assert categories == {
        "outdoor", "shoes", "clothing", "kitchen", "beauty", "gifts", "electronics", "home",
    }  # fmt: skip
    assert list(data.products) == [f"p{n:03d}" for n in range(1, total + 1)]


def test_listings_are_in_their_language_with_an_english_version(data: DemoData) -> None:
    for product in data.products.values():
        assert bool(CJK.search(product.title)) == (product.lang == "zh"), product.id
        assert not CJK.search(product.title_en + product.description_en), product.id
        assert 25 <= _words(product.description_en) <= 70, product.id
        if product.lang == "zh":
            # Chinese has no spaces: about two characters a word.
            assert 35 <= len(product.description) <= 140, product.id
        else:
            assert 25 <= _words(product.description) <= 70, product.id
        if product.lang == "en":
            assert (product.title_en, product.description_en) == (
                product.title,
                product.description,
            )
        else:
            assert product.title_en != product.title, product.id


def test_queries_cover_the_required_ones_and_each_language(data: DemoData) -> None:
    texts = {query.text for query in data.queries}
    assert len(data.queries) >= 12
    assert texts >= REQUIRED_QUERIES
    assert {query.lang for query in data.queries} == {"en", "zh", "es"}
    for query in data.queries:
        assert bool(CJK.search(query.text)) == (query.lang == "zh"), query.qid


def test_judgments_have_relevant_products_and_decoys(data: DemoData) -> None:
    for query in data.queries:
        grades = data.judgments[query.qid]
        assert 15 <= len(grades) <= 40, query.qid
        assert sum(grade == 3 for grade in grades.values()) >= 3, query.qid
        # A decoy: judged not relevant, yet it shares a word of the query (two characters in
        # Chinese), so BM25 finds it.
        if query.lang == "zh":
            terms = {query.text[i : i + 2] for i in range(len(query.text) - 1)}
        else:
            terms = {word for word in query.text.lower().split() if len(word) > 3}
        decoys = [
            pid
            for pid, grade in grades.items()
            if grade == 0 and any(term in data.products[pid].title.lower() for term in terms)
        ]
        assert len(decoys) >= 2, (query.qid, decoys)


def test_a_relevant_product_may_share_no_word_with_the_query(data: DemoData) -> None:
    boots = next(q for q in data.queries if q.text == "waterproof hiking boots")
    titles = [
        data.products[pid].title.lower()
        for pid, grade in data.judgments[boots.qid].items()
        if grade == 3
    ]
    assert any(not {"waterproof", "hiking"} & set(re.findall(r"\w+", t)) for t in titles)


def _copy(tmp_path: Path) -> Path:
    for name in ("catalog.jsonl", "queries.tsv", "qrels.tsv"):
        shutil.copy(DATA_DIR / name, tmp_path / name)
    return tmp_path


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(text)


def test_a_duplicate_product_id_names_its_line(tmp_path: Path) -> None:
    path = _copy(tmp_path) / "catalog.jsonl"
    first = path.read_text(encoding="utf-8").splitlines()[0]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    _append(path, first + "\n")
    with pytest.raises(CatalogError, match=rf"line {lines + 1}: product id 'p001' appears twice"):
        read_catalog(path)


def test_a_product_without_a_field_names_its_line_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_text('{"id": "p001", "lang": "en"}\n', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"line 1: .*title"):
        read_catalog(path)


def test_an_english_product_must_be_its_own_english_version(tmp_path: Path) -> None:
    path = _copy(tmp_path) / "catalog.jsonl"
    english = next(
        line for line in path.read_text(encoding="utf-8").splitlines() if '"lang": "en"' in line
    )
    path.write_text(english.replace('"title_en": "', '"title_en": "Other '), encoding="utf-8")
    with pytest.raises(CatalogError, match="title_en/description_en equal its listing"):
        read_catalog(path)


def test_a_judgment_of_an_unknown_product_is_refused(tmp_path: Path) -> None:
    _append(_copy(tmp_path) / "qrels.tsv", "en01 0 p999 2\n")
    with pytest.raises(CatalogError, match=r"query en01: products not in the catalog: \['p999'\]"):
        load_demo_data(tmp_path)


def test_a_judgment_of_an_unknown_query_is_refused(tmp_path: Path) -> None:
    _append(_copy(tmp_path) / "qrels.tsv", "xx99 0 p001 1\n")
    with pytest.raises(CatalogError, match=r"judges queries that queries.tsv lacks: \['xx99'\]"):
        load_demo_data(tmp_path)


def test_a_query_id_must_start_with_its_language(tmp_path: Path) -> None:
    _append(_copy(tmp_path) / "queries.tsv", "q99\tcast iron pan\n")
    with pytest.raises(CatalogError, match="'q99' does not start with a language"):
        load_demo_data(tmp_path)


def test_a_malformed_judgment_line_names_file_and_line(tmp_path: Path) -> None:
    path = _copy(tmp_path) / "qrels.tsv"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    _append(path, "en01 p001 3\n")
    with pytest.raises(CatalogError, match=rf"qrels.tsv line {lines + 1}: expected"):
        load_demo_data(tmp_path)
