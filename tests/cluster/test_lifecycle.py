"""Set-up, re-run and teardown on the real node; faults of the sidecar as the cluster sees them;
the `ext.rerank` pipeline, `_predict` and the bearer token through real connectors."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import (
    FIELDS,
    Attached,
    Cluster,
    changed_ids,
    create_index,
    es_integration,
    ids,
    post_json,
    qwen_sidecar_args,
    setup_args,
)
from tests.support.servers import ServerProcess, sidecar_process

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

QUERY = {"multi_match": {"query": "waterproof hiking boots", "fields": FIELDS}}


def settings_snapshot(cluster: Cluster, index: str) -> dict[str, Any]:
    return {
        "cluster": cluster.client.cluster.get_settings(flat_settings=True),
        "index": cluster.client.indices.get_settings(index=index, flat_settings=True),
    }


def requests_by_status(sidecar: str) -> dict[str, float]:
    """The sidecar's request counter (all endpoints) by HTTP status."""
    with urllib.request.urlopen(f"{sidecar}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rerank_requests_total":
                status = sample.labels["status"]
                counts[status] = counts.get(status, 0) + sample.value
    return counts


def rerank_requests(sidecar: str, status: str) -> float:
    return requests_by_status(sidecar).get(status, 0)


def test_setup_twice_changes_nothing_and_teardown_restores_everything(
    cluster: Cluster, qwen_sidecar: ServerProcess
) -> None:
    index = "restore-check"
    create_index(cluster, index)
    before = settings_snapshot(cluster, index)
    first = es_integration(*setup_args(cluster, qwen_sidecar.url, index, "rr-idem"))
    assert {c["action"] for c in first["changes"]} >= {"created"}
    assert settings_snapshot(cluster, index) != before

    again = es_integration(*setup_args(cluster, qwen_sidecar.url, index, "rr-idem"))
    changed = [c for c in again["changes"] if c["action"] in ("created", "updated", "deleted")]
    assert changed == []

    es_integration("teardown", "--url", cluster.url, "--name", "rr-idem", "--yes")
    assert settings_snapshot(cluster, index) == before
    # Everything setup created is gone (GET by id is real-time; a search may lag).
    for resource, path in [
        ("model group", "model_groups"), ("connector", "connectors"), ("model", "models")
    ]:  # fmt: skip
        for object_id in changed_ids(first, resource).values():
            response = cluster.client.transport.perform_request(
                "GET", f"/_plugins/_ml/{path}/{object_id}", params={"ignore": 404}
            )
            assert response.get("status") == 404 or "error" in response, (resource, response)
    for pipeline in ("rr-idem", "rr-idem-ext"):
        assert not cluster.client.transport.perform_request(
            "GET", "/_search/pipeline", params={"ignore": 404}
        ).get(pipeline)


@pytest.fixture
def scratch_index(cluster: Cluster) -> Iterator[str]:
    name = f"scratch-{time.monotonic_ns()}"
    create_index(cluster, name)
    yield name
    cluster.client.indices.delete(index=name)


def test_stopped_sidecar_leaves_searches_answered_in_their_order(
    cluster: Cluster, scratch_index: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    null_sidecar = ["--backend", "null", "--model", str(tiny_model_dir)]
    with sidecar_process(tmp_path / "null.log", *null_sidecar) as sidecar:
        es_integration(*setup_args(cluster, sidecar.url, scratch_index, "rr-down"))
    # The sidecar is gone: connections are refused.
    body = {"query": QUERY, "size": 10}
    started = time.monotonic()
    result = cluster.search(scratch_index, body)
    elapsed = time.monotonic() - started
    assert ids(result) == ids(cluster.plain(scratch_index, body))
    assert elapsed < 10, "the answer must come within the connector's read timeout (10 s)"
    es_integration("teardown", "--url", cluster.url, "--name", "rr-down", "--yes")


def test_throttled_sidecar_is_retried_by_the_cluster(
    cluster: Cluster,
    scratch_index: str,
    vllm_server: ServerProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """A sidecar whose only batch slot is taken by a call vLLM never answers (SIGSTOP) and whose
    queue is full answers 429 with the throttling header; ML Commons retries it."""
    limits = ["--max-inflight-batches", "1", "--max-queue-pairs", "2", "--max-documents", "2"]
    args = [*qwen_sidecar_args(vllm_server, tiny_model_dir), *limits, "--request-timeout-s", "60"]
    with sidecar_process(tmp_path / "sidecar.log", *args) as sidecar:
        es_integration(
            *setup_args(cluster, sidecar.url, scratch_index, "rr-429", "--max-retries", "2")
        )
        body = {"query": QUERY, "size": 2}
        with vllm_server.paused():
            blockers = [
                threading.Thread(
                    target=post_json,
                    args=(f"{sidecar.url}/v1/rerank", {"query": "q", "documents": [d, d + "!"]}),
                )
                for d in ("first", "second")
            ]
            for blocker in blockers:
                blocker.start()
            deadline = time.monotonic() + 30
            while rerank_requests(sidecar.url, "429") == 0 and time.monotonic() < deadline:
                # Probe until the queue is full; the probe itself is one of the 429s counted.
                post_json(f"{sidecar.url}/v1/rerank", {"query": "probe", "documents": ["x"]})
            before = requests_by_status(sidecar.url)
            assert before.get("429", 0) >= 1, "the sidecar never filled up"
            result = cluster.search(scratch_index, body)
            after = requests_by_status(sidecar.url)
            throttled = after.get("429", 0) - before["429"]
        for blocker in blockers:
            blocker.join()
    assert throttled == 3, f"one call and two retries (--max-retries 2): {before} -> {after}"
    assert ids(result) == ids(cluster.plain(scratch_index, body))
    es_integration("teardown", "--url", cluster.url, "--name", "rr-429", "--yes")


def test_ext_rerank_pipeline_reranks_a_knn_recall(cluster: Cluster, catalog: Attached) -> None:
    text = "waterproof hiking boots"
    body: dict[str, Any] = {
        "query": {"knn": {"vector": {"vector": [1.0, 2.0, 3.0, 4.0], "k": 8}}},
        "size": 8,
        "ext": {"rerank": {"query_context": {"query_text": text}}},
    }
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body, search_pipeline=f"{catalog.name}-ext")
    hits = plain["hits"]["hits"]
    # ml_opensearch joins the document fields with no separator (docs/contracts.md §1).
    documents = ["".join(str(h["_source"].get(f, "")) for f in FIELDS) for h in hits]
    status, answer = post_json(
        f"{catalog.sidecar}/v1/rerank", {"query": text, "documents": documents}
    )
    assert status == 200, answer
    expected = [hits[r["index"]]["_id"] for r in answer["results"]]
    assert ids(reranked) == expected != ids(plain)
    for hit, result in zip(reranked["hits"]["hits"], answer["results"], strict=True):
        assert hit["_score"] == pytest.approx(result["relevance_score"], rel=1e-6)


def test_predict_through_the_connector_returns_the_sidecars_scores(
    cluster: Cluster, catalog: Attached
) -> None:
    model_id = changed_ids(catalog.report, "model")[f"{catalog.name}-rerank"]
    documents = ["Gore-Tex leather boots", "A phone case", "Wool socks, 3 pairs", "日本語の説明"]
    predicted = cluster.client.transport.perform_request(
        "POST",
        f"/_plugins/_ml/_predict/text_similarity/{model_id}",
        body={"query_text": "waterproof boots", "text_docs": documents},
    )
    # One inference result holding one `similarity` tensor per document, in input order.
    [result] = predicted["inference_results"]
    scores = [tensor["data"][0] for tensor in result["output"]]
    status, answer = post_json(
        f"{catalog.sidecar}/v1/rerank", {"query": "waterproof boots", "documents": documents}
    )
    assert status == 200
    direct = {r["index"]: r["relevance_score"] for r in answer["results"]}
    assert scores == pytest.approx([direct[i] for i in range(len(documents))], rel=1e-6)


def test_token_travels_in_the_connector_credential(
    cluster: Cluster,
    scratch_index: str,
    vllm_server: ServerProcess,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    token = "s3cret-token-for-the-cluster"
    args = [*qwen_sidecar_args(vllm_server, tiny_model_dir), "--api-token", token]
    with sidecar_process(tmp_path / "sidecar.log", *args) as sidecar:
        report = es_integration(
            *setup_args(cluster, sidecar.url, scratch_index, "rr-token", "--sidecar-token", token)
        )
        assert token not in str(report)
        body = {"query": QUERY, "size": 10}
        plain = cluster.plain(scratch_index, body)
        reranked = cluster.search(scratch_index, body)
        assert rerank_requests(sidecar.url, "200") >= 1
        assert rerank_requests(sidecar.url, "401") == 0
        assert ids(reranked) != ids(plain), "reranked, so the cluster's calls were authorised"
        status, answer = post_json(f"{sidecar.url}/v1/rerank", {"query": "q", "documents": ["d"]})
        assert status == 401 and answer["error"]["type"] == "unauthorized"
        assert (
            post_json(f"{sidecar.url}/v1/rerank", {"query": "q", "documents": ["d"]}, token)[0]
            == 200
        )
    es_integration("teardown", "--url", cluster.url, "--name", "rr-token", "--yes")


def test_status_checks_every_piece_and_a_rerank_through_the_cluster(
    cluster: Cluster, catalog: Attached
) -> None:
    report = es_integration("status", "--url", cluster.url, "--name", catalog.name)
    assert report["ok"] is True, report
    assert not [c for c in report["changes"] if c["action"] == "failed"]
