"""Against a cluster of yours, opt-in (`-m external_cluster`), skipped unless the environment
names one. The suite in `tests/cluster/` runs on a real node started by the session; this one is for
a secured or managed cluster, or Elasticsearch, which cannot run here.

OpenSearch (2.12+ with ml-commons and neural-search):

    OPENSEARCH_URL=https://localhost:9200 OPENSEARCH_USERNAME=admin OPENSEARCH_PASSWORD=... \\
    RERANK_SIDECAR_URL=http://<sidecar as the cluster reaches it>:8080 RERANK_SIDECAR_TOKEN=... \\
    [CLUSTER_INSECURE=1] .venv/bin/python -m pytest -m cluster tests/es_integration

Elasticsearch (8.19 / 9.1+, Enterprise or trial licence): the same with ELASTICSEARCH_URL,
ELASTICSEARCH_USERNAME/PASSWORD (or ELASTICSEARCH_API_KEY). The sidecar must be running and
reachable from the cluster. Each test creates a scratch index and a `rerank-it-*` name prefix,
and removes both (teardown) at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from es_integration.transport import (
    ClusterAuth,
    ElasticsearchTransport,
    OpenSearchTransport,
    TlsOptions,
    Transport,
    call,
)
from tests.es_integration.conftest import CliRunner

pytestmark = pytest.mark.external_cluster

DOCS = [
    {"title": "Bananas", "body": "Bananas are rich in potassium."},
    {"title": "Paris", "body": "Paris is the capital of France; the Eiffel Tower stands there."},
    {"title": "Eiffel Tower height", "body": "The Eiffel Tower is 330 metres tall."},
]
QUESTION = "how tall is the eiffel tower"


def _need(*names: str) -> dict[str, str]:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.skip(f"set {', '.join(missing)} to run against a real cluster")
    return {name: os.environ[name] for name in names}


def _transport(kind: str, url: str) -> Transport:
    prefix = kind.upper()
    auth = ClusterAuth(
        os.environ.get(f"{prefix}_USERNAME"),
        os.environ.get(f"{prefix}_PASSWORD"),
        os.environ.get(f"{prefix}_API_KEY"),
    )
    tls = TlsOptions(verify=not os.environ.get("CLUSTER_INSECURE"))
    cls = OpenSearchTransport if kind == "opensearch" else ElasticsearchTransport
    return cls([url], auth, tls, 60)


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    yield f"rerank-it-{suffix}", f"rerank-it-{suffix}"


def _cli(kind: str, command: str, url: str, name: str, *extra: str) -> list[str]:
    args = [kind, command, "--url", url, "--name", name, "--yes"]
    if os.environ.get("CLUSTER_INSECURE"):
        args.append("--insecure")
    return [*args, *extra]


def _index(t: Transport, index: str) -> None:
    call(
        t,
        "PUT",
        f"/{index}",
        body={"mappings": {"properties": {"title": {"type": "text"}, "body": {"type": "text"}}}},
    )
    for i, doc in enumerate(DOCS):
        call(t, "PUT", f"/{index}/_doc/{i}", params={"refresh": "true"}, body=doc)


def test_opensearch_plain_query_dsl_is_reranked(
    scratch: tuple[str, str], run_cli: CliRunner
) -> None:
    env = _need("OPENSEARCH_URL", "RERANK_SIDECAR_URL")
    index, name = scratch
    t = _transport("opensearch", env["OPENSEARCH_URL"])
    _index(t, index)
    try:
        setup = run_cli(
            *_cli(
                "opensearch",
                "setup",
                env["OPENSEARCH_URL"],
                name,
                "--sidecar-url",
                env["RERANK_SIDECAR_URL"],
                "--index",
                index,
                "--fields",
                "title,body",
            ),
            env=dict(os.environ),
        )
        assert setup.code == 0, setup.out
        status = run_cli(
            *_cli("opensearch", "status", env["OPENSEARCH_URL"], name, "--fields", "title"),
            env=dict(os.environ),
        )
        assert status.code == 0, status.out
        body: dict[str, Any] = {"query": {"match": {"body": "eiffel tower"}}}
        hits = call(t, "POST", f"/{index}/_search", body=body).body["hits"]["hits"]
        version = call(t, "GET", "/").body["version"]["number"]
        if tuple(int(p) for p in version.split(".")[:2]) >= (2, 18):
            assert hits[0]["_source"]["title"] == "Eiffel Tower height"
            assert all("rerank_sidecar_score" not in h["_source"] for h in hits)
        ext = {**body, "ext": {"rerank": {"query_context": {"query_text": QUESTION}}}}
        pipeline = f"{name}-ext" if "ml_inference" in setup.out else name
        hits = call(
            t, "POST", f"/{index}/_search", params={"search_pipeline": pipeline}, body=ext
        ).body["hits"]["hits"]
        assert hits[0]["_source"]["title"] == "Eiffel Tower height"
        empty = call(t, "POST", f"/{index}/_search", body={"size": 0, "query": {"match_all": {}}})
        assert empty.body["hits"]["hits"] == []
    finally:
        teardown = run_cli(
            *_cli("opensearch", "teardown", env["OPENSEARCH_URL"], name), env=dict(os.environ)
        )
        call(t, "DELETE", f"/{index}", allow=(404,))
        assert teardown.code == 0, teardown.out


def test_elasticsearch_retriever_reranks(scratch: tuple[str, str], run_cli: CliRunner) -> None:
    env = _need("ELASTICSEARCH_URL", "RERANK_SIDECAR_URL")
    index, name = scratch
    t = _transport("elasticsearch", env["ELASTICSEARCH_URL"])
    _index(t, index)
    try:
        setup = run_cli(
            *_cli(
                "elasticsearch",
                "setup",
                env["ELASTICSEARCH_URL"],
                name,
                "--sidecar-url",
                env["RERANK_SIDECAR_URL"],
            ),
            env=dict(os.environ),
        )
        assert setup.code == 0, setup.out
        body = {
            "retriever": {
                "text_similarity_reranker": {
                    "retriever": {"standard": {"query": {"match": {"body": "eiffel tower"}}}},
                    "field": "body",
                    "inference_id": name,
                    "inference_text": QUESTION,
                    "rank_window_size": 10,
                }
            }
        }
        hits = call(t, "POST", f"/{index}/_search", body=body).body["hits"]["hits"]
        assert hits[0]["_source"]["title"] == "Eiffel Tower height"
    finally:
        teardown = run_cli(
            *_cli("elasticsearch", "teardown", env["ELASTICSEARCH_URL"], name), env=dict(os.environ)
        )
        call(t, "DELETE", f"/{index}", allow=(404,))
        assert teardown.code == 0, teardown.out
