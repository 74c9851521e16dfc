"""Fixtures for the es_integration tests: the API spec, fake clusters on loopback, the CLI.

Test layers (no OpenSearch or Elasticsearch can run here):
1. every REST call the CLI makes goes through a recording fake cluster on loopback that checks it
   against the official OpenSearch API specification and answers like the cluster would;
2. contract tests run setup's connectors and pipelines through `mlcommons_sim` against a real
   sidecar process;
3. `test_real_cluster.py` runs only when OPENSEARCH_URL / ELASTICSEARCH_URL point at a cluster.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from es_integration import cli, os_api
from sidecar.rerank_window import plan
from tests.es_integration import spec_validator
from tests.es_integration.fake_opensearch import FakeOpenSearch, serve
from tests.es_integration.spec_validator import OpenSearchSpec, spec_available

SIDECAR = "http://rerank-sidecar.search.svc:8080"
PRODUCTS_MAPPING = {
    "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
    "body": {"type": "text"},
    "price": {"type": "float"},
    "brand": {"type": "keyword"},
    "meta": {"properties": {"summary": {"type": "text"}}},
}
TOKEN = "tok-5ecret-value-123"


@pytest.fixture(scope="session")
def spec() -> OpenSearchSpec:
    if not spec_available():
        pytest.skip(
            f"OpenSearch API specification not found at {spec_validator.SPEC_DIR} "
            "(CI provides it at ../shared/opensearch-api-spec)"
        )
    return OpenSearchSpec(spec_validator.SPEC_DIR)


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os_api, "POLL_INTERVAL_S", 0.01)


def stub_sidecar(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Answers like the sidecar: longer documents score higher (deterministic, text-free); the
    window rewrite is the sidecar's own."""
    data = json.loads(body)
    if url.endswith("/v1/rerank/query-dsl"):
        docs = [json.dumps(d, sort_keys=True) for d in data["documents"]]
        scores = [round(len(d) / 1000, 6) + 0.001 for d in docs]
        return 200, json.dumps({"scores": scores, "query_text": "stub"}).encode()
    if url.endswith("/v1/rerank/window"):
        answer = plan(data["search"], data["window"]).answer()
        return 200, json.dumps(answer).encode()
    if url.endswith("/v1/rerank"):
        scores = [round(len(d) / 1000, 6) + 0.001 for d in data["documents"]]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        results = [{"index": i, "relevance_score": scores[i]} for i in order]
        return 200, json.dumps({"results": results}).encode()
    return 404, b'{"error": {"type": "not_found"}}'


@dataclass
class CliResult:
    code: int
    out: str

    def json(self) -> Any:
        return json.loads(self.out)


class NoTty(io.StringIO):
    def isatty(self) -> bool:
        return False


CliRunner = Callable[..., CliResult]


@pytest.fixture
def run_cli() -> CliRunner:
    def run(
        *argv: str, env: dict[str, str] | None = None, stdin: io.StringIO | None = None
    ) -> CliResult:
        out = io.StringIO()
        code = cli.main(list(argv), env=env or {}, stdout=out, stdin=stdin or NoTty())
        return CliResult(code, out.getvalue())

    return run


ClusterFactory = Callable[..., tuple[FakeOpenSearch, str]]


@pytest.fixture
def opensearch(spec: OpenSearchSpec) -> Iterator[ClusterFactory]:
    """Start fake OpenSearch clusters: `fake, url = opensearch(version="2.19.0", ...)`."""
    with ExitStack() as stack:

        def start(**kwargs: Any) -> tuple[FakeOpenSearch, str]:
            kwargs.setdefault("post", stub_sidecar)
            fake = FakeOpenSearch(spec=spec, **kwargs)
            fake.indices.setdefault("products", {"index.number_of_shards": "1"})
            fake.mappings.setdefault("products", PRODUCTS_MAPPING)
            url = stack.enter_context(serve(fake))
            return fake, url

        yield start
