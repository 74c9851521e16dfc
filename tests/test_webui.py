"""The try-it page, the docs page and /openapi.json, in real headless Chromium.

The browser is Debian's `chromium` (`/usr/bin/chromium`), driven by Playwright for Python; nothing
downloads a browser. The sidecars are `python -m sidecar serve` subprocesses on loopback: the
embedded CPU model for the page, the null backend (no model) with an API token for the token path.
Set `RERANK_UPDATE_SCREENSHOTS=1` to copy the page's screenshot to `docs/img/try-it.png`.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.cluster.conftest import post_json
from tests.support.servers import ServerProcess, sidecar_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "try-it.png"
TOKEN = "page-test-token"

QUERY = "waterproof boots for hiking in the rain"
DOCUMENTS = [
    "Summer sandals for hot days at the river.",
    "A breathable rain jacket for hiking.",
    "Gore-Tex leather hiking boots that keep your feet dry on wet trails.",
    "Merino wool socks for hiking boots.",
    "Steel toe work boots for building sites.",
    "Spray that makes leather boots waterproof.",
]
INSTRUCTION_B = "Given a shopping query, prefer accessories over the main product"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def token_sidecar(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("webui") / "token-sidecar.log"
    with sidecar_process(
        log, "--backend", "null", "--model", str(tiny_model_dir), env={"RERANK_API_TOKEN": TOKEN}
    ) as sidecar:
        yield sidecar


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any request leaving loopback or any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: None if "//127.0.0.1:" in r.url else outside.append(r.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert outside == [], "the page must work offline (no CDN)"
    assert errors == []


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def api_ranking(url: str, instruction: str | None = None, token: str | None = None) -> Any:
    body: dict[str, Any] = {"query": QUERY, "documents": DOCUMENTS}
    if instruction:
        body["instruction"] = instruction
    status, answer = post_json(f"{url}/v1/rerank", body, token)
    assert status == 200, answer
    return answer


def rendered(page: Page, column: int) -> list[tuple[int, float]]:
    items = page.locator(".column").nth(column).locator(".result")
    return [
        (int(item.get_attribute("data-index") or -1), float(item.get_attribute("data-score") or 0))
        for item in items.all()
    ]


def expected(answer: Any) -> list[tuple[int, float]]:
    return [(result["index"], result["relevance_score"]) for result in answer["results"]]


def fill_form(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    page.fill("#query", QUERY)
    page.fill("#documents", "\n".join(DOCUMENTS))


def test_the_page_ranks_as_the_api_does(
    page: Page, embedded_sidecar_process: ServerProcess, tmp_path: Path
) -> None:
    fill_form(page, embedded_sidecar_process.url)
    expect(page.locator("#instruction")).to_have_attribute(
        "placeholder", "Given a web search query, retrieve relevant passages that answer the query"
    )
    expect(page.locator("#token")).to_be_hidden()  # this sidecar has no API token
    expect(page.locator("#instruction-b")).to_be_hidden()
    page.click("#rank")
    expect(page.locator(".result")).to_have_count(len(DOCUMENTS))
    answer = api_ranking(embedded_sidecar_process.url)
    assert rendered(page, 0) == expected(answer)
    first = answer["results"][0]["index"]
    moves = page.locator(".result").first.locator(".moves")
    assert moves.inner_text().split()[:3] == ["#1", "was", f"#{first + 1}"]
    assert page.locator(".result .text").first.inner_text() == DOCUMENTS[first]
    width = page.locator(".result .fill").first.evaluate("e => e.style.width")
    assert float(width.rstrip("%")) == pytest.approx(
        answer["results"][0]["relevance_score"] * 100, abs=1e-3
    )
    expect(page.locator(".column .meta")).to_contain_text(" ms · 6 results")
    screenshot = tmp_path / "try-it.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("RERANK_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, README_SCREENSHOT)


def test_compare_mode_and_top_n(page: Page, embedded_sidecar_process: ServerProcess) -> None:
    fill_form(page, embedded_sidecar_process.url)
    page.fill("#top-n", "3")
    page.check("#compare")
    page.fill("#instruction-b", INSTRUCTION_B)
    page.click("#rank")
    expect(page.locator(".column")).to_have_count(2)
    expect(page.locator(".column").nth(1).locator(".result")).to_have_count(3)
    assert rendered(page, 0) == expected(api_ranking(embedded_sidecar_process.url))[:3]
    assert (
        rendered(page, 1) == expected(api_ranking(embedded_sidecar_process.url, INSTRUCTION_B))[:3]
    )
    expect(page.locator(".column").nth(1).locator(".title")).to_have_text(f"B: {INSTRUCTION_B}")


def test_a_bad_request_shows_the_apis_error(
    page: Page, embedded_sidecar_process: ServerProcess
) -> None:
    fill_form(page, embedded_sidecar_process.url)
    page.fill("#query", "   ")  # the browser's `required` passes it; the API refuses it
    page.click("#rank")
    expect(page.locator("#status")).to_contain_text("422 validation_error: query")
    expect(page.locator(".result")).to_have_count(0)


def test_with_an_api_token_the_page_asks_for_it(page: Page, token_sidecar: ServerProcess) -> None:
    fill_form(page, token_sidecar.url)
    expect(page.locator("#token")).to_be_visible()
    page.click("#rank")
    expect(page.locator("#status")).to_contain_text("401 unauthorized")
    page.fill("#token", TOKEN)
    page.click("#rank")
    expect(page.locator(".result")).to_have_count(len(DOCUMENTS))
    assert rendered(page, 0) == expected(api_ranking(token_sidecar.url, token=TOKEN))


def test_the_docs_page_renders_the_schema(page: Page, token_sidecar: ServerProcess) -> None:
    page.goto(f"{token_sidecar.url}/docs")
    operations = page.locator(".operation")
    expect(operations.first).to_contain_text("/v1/rerank")
    rerank = operations.filter(has_text="POST/v1/rerank").first
    for text in ("documents", "instruction", "top_n", "required", "relevance_score", "422"):
        expect(rerank).to_contain_text(text)
    expect(rerank).to_contain_text("needs Authorization: Bearer")


def test_openapi_describes_the_real_answers(token_sidecar: ServerProcess) -> None:
    document = get_json(f"{token_sidecar.url}/openapi.json")
    jsonschema.Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})

    def validate(instance: Any, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)

    validate(api_ranking(token_sidecar.url, token=TOKEN), "RerankResponse")
    body = {"query": "boots", "documents": [{"text": "a"}], "return_documents": True}
    status, answer = post_json(f"{token_sidecar.url}/v2/rerank", body, TOKEN)
    assert status == 200
    validate(answer, "RerankResponse")
    status, answer = post_json(
        f"{token_sidecar.url}/v1/rerank/query-dsl",
        {"query": {"match": {"title": "boots"}}, "documents": [{"title": "x"}]},
        TOKEN,
    )
    assert status == 200
    validate(answer, "QueryDslRerankResponse")
    status, answer = post_json(f"{token_sidecar.url}/v1/rerank", {"query": "x"}, TOKEN)
    assert status == 422
    validate(answer, "ErrorResponse")
    validate(get_json(f"{token_sidecar.url}/readyz"), "Health")
    assert document["paths"]["/v1/rerank"]["post"]["security"] == [{"bearer": []}]
    assert set(document["paths"]) >= {"/v1/rerank", "/v2/rerank", "/rerank", "/v1/rerank/query-dsl"}
