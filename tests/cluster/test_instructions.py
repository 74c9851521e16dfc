"""An instruction per index, and a per-request override, on the real node (tiny Qwen3 sidecar).

Two indices holding the same documents are set up with different `--instruction`s: the same
search gets different scores on each, and each index's scores are the ones the sidecar gives for
that index's instruction when called directly.

Per request: setup's connector writes the instruction into its request body as a literal, so a
search cannot change it today. What OpenSearch 2.19.1 does allow, shown here on setup's own
objects with two changes: `ext.ml_inference` is a registered search extension (any other
unknown `ext` name is refused with 400), `ml_inference` can read `$._request.ext.ml_inference.*`,
and a string it reads is JSON-escaped into the connector's template, while a connector
parameter's default is inserted raw (so it must be escaped by whoever writes it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opensearchpy.exceptions import RequestError

from es_integration.options import Names, Options
from es_integration.os_resources import ml_inference_pipeline, query_dsl_connector
from es_integration.versions import Version
from tests.cluster.conftest import (
    FIELDS,
    Cluster,
    create_index,
    es_integration,
    post_json,
    setup_args,
)
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

INSTRUCTIONS = {
    "instr-docs": "Given a product question, prefer official manuals and documentation",
    "instr-forum": "Given a product question, prefer forum posts and user reviews",
}
OVERRIDE_PIPELINE = "instr-override"
BODY = {
    "query": {"multi_match": {"query": "waterproof hiking boots", "fields": FIELDS}},
    "size": 10,
}


def scores_of(result: dict[str, Any]) -> dict[str, float]:
    return {hit["_id"]: hit["_score"] for hit in result["hits"]["hits"]}


def sidecar_scores(
    sidecar: str, cluster: Cluster, index: str, instruction: str | None
) -> dict[str, float]:
    """The sidecar's scores for the BM25 hits of BODY, called directly."""
    hits = cluster.plain(index, BODY)["hits"]["hits"]
    request: dict[str, Any] = {
        "query": BODY["query"],
        "documents": [hit["_source"] for hit in hits],
        "fields": FIELDS,
    }
    if instruction is not None:
        request["instruction"] = instruction
    status, answer = post_json(f"{sidecar}/v1/rerank/query-dsl", request)
    assert status == 200, answer
    return {hit["_id"]: score for hit, score in zip(hits, answer["scores"], strict=True)}


def assert_scores(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for doc, score in expected.items():
        # `_score` is a Java float in the search response.
        assert actual[doc] == pytest.approx(score, rel=1e-5, abs=1e-7), doc


@pytest.fixture(scope="module")
def instructed(cluster: Cluster, qwen_sidecar: ServerProcess) -> Iterator[dict[str, str]]:
    for name, instruction in INSTRUCTIONS.items():
        create_index(cluster, name)
        args = setup_args(cluster, qwen_sidecar.url, name, name, "--instruction", instruction)
        es_integration(*args)
    yield INSTRUCTIONS
    for name in INSTRUCTIONS:
        es_integration("teardown", "--url", cluster.url, "--name", name, "--yes")
        cluster.client.indices.delete(index=name)


def test_each_index_reranks_with_its_own_instruction(
    cluster: Cluster, qwen_sidecar: ServerProcess, instructed: dict[str, str]
) -> None:
    scores = {index: scores_of(cluster.search(index, BODY)) for index in instructed}
    for index, instruction in instructed.items():
        assert_scores(scores[index], sidecar_scores(qwen_sidecar.url, cluster, index, instruction))
    docs, forum = scores["instr-docs"], scores["instr-forum"]
    assert len(docs) >= 3 and docs.keys() == forum.keys()
    assert all(abs(docs[doc] - forum[doc]) > 1e-4 for doc in docs)


def request(cluster: Cluster, method: str, path: str, body: Any = None) -> Any:
    return cluster.client.transport.perform_request(method, path, body=body)


@pytest.fixture(scope="module")
def override_pipeline(
    cluster: Cluster, qwen_sidecar: ServerProcess, instructed: dict[str, str]
) -> Iterator[str]:
    """Setup's connector and pipeline with two changes: the instruction is a connector
    parameter (default: the index's, escaped for its raw insertion) and ml_inference fills it
    from the search's `ext.ml_inference.instruction` when present (`ignore_missing`)."""
    options = Options(
        urls=[cluster.url],
        sidecar_url=qwen_sidecar.url,
        fields=FIELDS,
        names=Names(OVERRIDE_PIPELINE),
    )
    connector = query_dsl_connector(options, Version.parse("2.19.1"))
    action = connector["actions"][0]
    assert action["request_body"].endswith(" }") and "instruction" not in action["request_body"]
    action["request_body"] = action["request_body"][:-2] + (
        ', "instruction": "${parameters.instruction}" }'
    )
    connector["parameters"]["instruction"] = json.dumps(INSTRUCTIONS["instr-docs"])[1:-1]
    connector_id = request(cluster, "POST", "/_plugins/_ml/connectors/_create", connector)[
        "connector_id"
    ]
    model_id = request(
        cluster,
        "POST",
        "/_plugins/_ml/models/_register",
        {"name": OVERRIDE_PIPELINE, "function_name": "remote", "connector_id": connector_id},
    )["model_id"]
    request(cluster, "POST", f"/_plugins/_ml/models/{model_id}/_deploy")
    deadline = time.monotonic() + 120
    while request(cluster, "GET", f"/_plugins/_ml/models/{model_id}")["model_state"] != "DEPLOYED":
        assert time.monotonic() < deadline, "the model did not deploy within 120 s"
        time.sleep(0.5)
    pipeline = ml_inference_pipeline(options, model_id)
    inputs = pipeline["response_processors"][0]["ml_inference"]["input_map"][0]
    inputs["instruction"] = "$._request.ext.ml_inference.instruction"
    request(cluster, "PUT", f"/_search/pipeline/{OVERRIDE_PIPELINE}", pipeline)
    yield OVERRIDE_PIPELINE
    request(cluster, "DELETE", f"/_search/pipeline/{OVERRIDE_PIPELINE}")
    request(cluster, "POST", f"/_plugins/_ml/models/{model_id}/_undeploy")
    request(cluster, "DELETE", f"/_plugins/_ml/models/{model_id}")
    request(cluster, "DELETE", f"/_plugins/_ml/connectors/{connector_id}")


def with_ext(instruction: str) -> dict[str, Any]:
    return {**BODY, "ext": {"ml_inference": {"instruction": instruction}}}


@pytest.mark.parametrize(
    "override",
    [
        INSTRUCTIONS["instr-forum"],
        'Prefer "official" answers \\ and ignore the rest',  # escaped by ML Commons
    ],
)
def test_a_search_can_override_the_instruction_through_ext_ml_inference(
    cluster: Cluster, qwen_sidecar: ServerProcess, override_pipeline: str, override: str
) -> None:
    index = "instr-docs"
    default = scores_of(cluster.search(index, BODY, search_pipeline=override_pipeline))
    assert_scores(default, sidecar_scores(qwen_sidecar.url, cluster, index, INSTRUCTIONS[index]))
    overridden = scores_of(
        cluster.search(index, with_ext(override), search_pipeline=override_pipeline)
    )
    assert_scores(overridden, sidecar_scores(qwen_sidecar.url, cluster, index, override))


def test_setups_pipeline_ignores_ext_ml_inference_today(
    cluster: Cluster, instructed: dict[str, str]
) -> None:
    """The connector setup writes has the instruction as a literal: ext changes nothing."""
    index = "instr-docs"
    plain = scores_of(cluster.search(index, BODY))
    asked = scores_of(cluster.search(index, with_ext(INSTRUCTIONS["instr-forum"])))
    assert_scores(asked, plain)


def test_an_unknown_ext_name_is_refused(cluster: Cluster, instructed: dict[str, str]) -> None:
    with pytest.raises(RequestError, match="unknown field \\[rerank_instruction\\]"):
        cluster.search("instr-docs", {**BODY, "ext": {"rerank_instruction": {"text": "x"}}})
