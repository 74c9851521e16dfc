"""The demo's data: a multilingual product catalog, its queries and their relevance judgments.

`data/catalog.jsonl`: one product a line, listed in English, Chinese or Spanish (`lang`), with an
English version of its title and description (`title_en`, `description_en`: equal to the listing
for English products) for language-aware field selection. For each query the catalog holds
relevant products that use other words than the query and lexical decoys that share its words
("waterproof phone case" for "waterproof hiking boots"): what BM25 gets wrong and a reranker should
fix. `data/queries.tsv`: `<query id> TAB <text>`; the id's first two letters are the query's
language (`en01`, `zh01`, `es01`). `data/qrels.tsv`: TREC qrels, `<query id> 0 <product id>
<grade>`, grades 0 (not what the user wants) to 3 (exactly it), covering every product in the BM25
top 20 of the demo's query (`title^2`, `description`) and of eval's (`title`, `description`), plus
the relevant products BM25 misses. The queries and judgments are read by the same parsers as
`python -m es_integration opensearch eval`, which takes these files as they are.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from es_integration.errors import UsageError
from es_integration.eval import read_judgments, read_queries

DATA_DIR = Path(__file__).parent / "data"
INDEX_NAME = "demo-products"
Language = Literal["en", "zh", "es"]
LANGUAGES: tuple[Language, ...] = ("en", "zh", "es")
_LANGUAGE_OF_PREFIX: dict[str, Language] = {lang: lang for lang in LANGUAGES}


class CatalogError(Exception):
    """The demo data is malformed: the message names the file and line."""


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    color: str | None = None
    size: str | None = None
    stock: int = Field(ge=0)


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^p\d{3}$")
    lang: Language
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    description_en: str = Field(min_length=1)
    category: Literal[
        "outdoor", "shoes", "clothing", "kitchen", "beauty", "gifts", "electronics", "home"
    ]
    brand: str = Field(min_length=1)
    price: float = Field(gt=0)
    released: date
    rating: float = Field(ge=0, le=5)
    tags: list[str] = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)

    @model_validator(mode="after")
    def _english_listing_is_its_own_english_version(self) -> Self:
        if self.lang == "en" and (self.title_en, self.description_en) != (
            self.title,
            self.description,
        ):
            raise ValueError("an English product's title_en/description_en equal its listing")
        return self


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    lang: Language  # from the id's first two letters


def _query(qid: str, text: str) -> Query:
    lang = _LANGUAGE_OF_PREFIX.get(qid[:2])
    if lang is None:
        raise CatalogError(f"query id {qid!r} does not start with a language: {LANGUAGES}")
    return Query(qid, text, lang)


@dataclass(frozen=True)
class DemoData:
    products: dict[str, Product]  # by id, in file order
    queries: list[Query]  # in file order
    judgments: dict[str, dict[str, int]]  # query id -> product id -> grade

    def languages(self) -> Counter[str]:
        return Counter(product.lang for product in self.products.values())


def read_catalog(path: Path) -> dict[str, Product]:
    products: dict[str, Product] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                product = Product.model_validate_json(line)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, error['loc'])) or 'line'}: {error['msg']}"
                    for error in exc.errors()
                )
                raise CatalogError(f"{path} line {number}: {problems}") from None
            if product.id in products:
                raise CatalogError(f"{path} line {number}: product id {product.id!r} appears twice")
            products[product.id] = product
    return products


def load_demo_data(data_dir: Path = DATA_DIR) -> DemoData:
    """Read and cross-check the three files; a bad line or a dangling id raises CatalogError."""
    products = read_catalog(data_dir / "catalog.jsonl")
    try:
        queries = [
            _query(qid, text) for qid, text in read_queries(data_dir / "queries.tsv").items()
        ]
        qrels = read_judgments(data_dir / "qrels.tsv")
    except UsageError as exc:
        raise CatalogError(str(exc)) from None
    judgments: dict[str, dict[str, int]] = defaultdict(dict)
    for qrel in qrels:
        judgments[qrel.query_id][qrel.doc_id] = int(qrel.relevance)
    qids = {query.qid for query in queries}
    if unknown := sorted(set(judgments) - qids):
        raise CatalogError(f"qrels.tsv judges queries that queries.tsv lacks: {unknown}")
    if unjudged := sorted(qids - set(judgments)):
        raise CatalogError(f"queries without judgments: {unjudged}")
    for qid, grades in judgments.items():
        if dangling := sorted(set(grades) - set(products)):
            raise CatalogError(f"qrels.tsv, query {qid}: products not in the catalog: {dangling}")
        if bad := sorted(pid for pid, grade in grades.items() if not 0 <= grade <= 3):
            raise CatalogError(f"qrels.tsv, query {qid}: grades outside 0-3 for {bad}")
    return DemoData(products, queries, dict(judgments))
