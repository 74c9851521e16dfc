"""`python -m es_integration opensearch setup|status|teardown` against a recording fake cluster.

Layer 1 of 3 (see conftest): no OpenSearch runs here. Every call the CLI makes is validated
against the OpenSearch API specification by the fake (`fake.violations` must stay empty), which
also refuses what OpenSearch refuses (unknown settings per version, untrusted connector URLs,
updating a connector a deployed model uses, ...).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from es_integration.os_resources import SCORE_FIELD
from tests.es_integration.conftest import SIDECAR, TOKEN, CliRunner, ClusterFactory, stub_sidecar
from tests.es_integration.fake_opensearch import FakeOpenSearch

TRUSTED = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
PRIVATE_REGEX = "plugins.ml_commons.trusted_connector_private_endpoints_regex"
OUR_REGEX = "^http://rerank-sidecar\\.search\\.svc:8080/.*$"


def setup_args(url: str, *extra: str) -> list[str]:
    return [
        "opensearch",
        "setup",
        "--url",
        url,
        "--sidecar-url",
        SIDECAR,
        "--fields",
        "title,body",
        "--index",
        "products",
        "--sidecar-token",
        TOKEN,
        *extra,
    ]


def snapshot(fake: FakeOpenSearch) -> dict[str, Any]:
    return copy.deepcopy(
        {
            "persistent": fake.persistent,
            "transient": fake.transient,
            "indices": fake.indices,
            "connectors": fake.connectors,
            "models": {
                k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                for k, v in fake.models.items()
            },
            "groups": fake.model_groups,
            "pipelines": fake.pipelines,
        }
    )


def mutations(fake: FakeOpenSearch, since: int = 0) -> list[str]:
    return [f"{c.method} {c.path}" for c in fake.calls[since:] if c.mutating]


def test_first_setup_on_2191_wires_plain_query_dsl_reranking(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    result = run_cli(*setup_args(url))
    assert result.code == 0, result.out
    assert fake.violations == []
    # Defaults kept, ours appended; in-cluster URL -> private IPs allowed.
    assert fake.persistent[TRUSTED][:2] == fake.defaults()[TRUSTED]
    assert fake.persistent[TRUSTED][-1] == OUR_REGEX
    assert fake.persistent[PRIVATE_IP] == "true"
    (conn_rerank, conn_dsl) = sorted(fake.connectors.values(), key=lambda c: c["name"])
    assert (
        conn_rerank["actions"][0]["pre_process_function"] == "connector.pre_process.cohere.rerank"
    )
    assert (
        conn_rerank["actions"][0]["post_process_function"] == "connector.post_process.cohere.rerank"
    )
    for connector in (conn_rerank, conn_dsl):
        config = connector["client_config"]
        assert {
            "connection_timeout",
            "read_timeout",
            "max_connection",
            "max_retry_times",
            "retry_backoff_policy",
        } <= set(config)
        assert config["retry_backoff_policy"].startswith("exponential")
        assert connector["credential"] == {"sidecar_token": TOKEN}
        assert (
            connector["actions"][0]["headers"]["Authorization"]
            == "Bearer ${credential.sidecar_token}"
        )
    assert conn_dsl["actions"][0]["url"] == SIDECAR + "/v1/rerank/query-dsl"
    assert all(m["model_state"] == "DEPLOYED" for m in fake.models.values())
    main = fake.pipelines["rerank-sidecar"]["response_processors"]
    assert list(main[0]) == ["ml_inference"] and list(main[1]) == ["rerank"]
    assert main[0]["ml_inference"]["input_map"][0]["query"] == "$._request.query"
    assert main[1]["rerank"]["by_field"]["target_field"] == SCORE_FIELD
    assert main[0]["ml_inference"]["ignore_failure"] and main[1]["rerank"]["ignore_failure"]
    assert fake.indices["products"]["index.search.default_pipeline"] == "rerank-sidecar"
    ext = fake.pipelines["rerank-sidecar-ext"]["response_processors"][0]["rerank"]
    assert ext["ml_opensearch"]["model_id"] in fake.models
    assert TOKEN not in result.out


def test_setup_twice_creates_nothing_the_second_time(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    before, calls = snapshot(fake), len(fake.calls)
    again = run_cli(*setup_args(url, "--json"))
    assert again.code == 0, again.out
    assert mutations(fake, calls) == []
    assert snapshot(fake) == before
    actions = {c["action"] for c in again.json()["changes"]}
    assert actions <= {"unchanged", "reused"}
    assert fake.violations == []


def test_teardown_is_exactly_the_inverse_and_leaves_other_objects(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    # Someone else's things: a trusted regex, a connector, a pipeline, another index setting.
    fake.persistent[TRUSTED] = ["^https://other\\.example/.*$"]
    fake.connectors["theirs"] = {
        "name": "theirs",
        "description": "not ours",
        "actions": [{"action_type": "predict", "method": "POST", "url": "https://other.example/x"}],
    }
    fake.pipelines["their-pipeline"] = {"response_processors": []}
    fake.indices["logs"] = {"index.search.default_pipeline": "their-pipeline"}
    before = snapshot(fake)
    first = len(fake.calls)
    assert run_cli(*setup_args(url)).code == 0
    created = [c for c in fake.calls[first:] if c.mutating and c.method in ("POST", "PUT")]
    middle = len(fake.calls)
    result = run_cli("opensearch", "teardown", "--url", url, "--yes")
    assert result.code == 0, result.out
    assert snapshot(fake) == before
    deletes = [c.path for c in fake.calls[middle:] if c.method == "DELETE"]
    assert len(deletes) == 7  # 2 pipelines, 2 models, 2 connectors, 1 model group
    assert sum("_create" in c.path or "_register" in c.path for c in created) == 5
    assert fake.violations == []
    # A second teardown finds nothing and changes nothing.
    calls = len(fake.calls)
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert mutations(fake, calls) == []


PUBLIC_SETUP = [
    "--sidecar-url",
    "https://rerank.example.com",
    "--fields",
    "title",
    "--index",
    "products",
    "--private-endpoint",
    "no",
]


def test_212_uses_ml_opensearch_sends_no_client_config_and_reruns_change_nothing(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.12.0")
    result = run_cli("opensearch", "setup", "--url", url, *PUBLIC_SETUP)
    assert result.code == 0, result.out
    assert fake.violations == []
    assert list(fake.pipelines) == ["rerank-sidecar"]
    (processor,) = fake.pipelines["rerank-sidecar"]["response_processors"]
    assert processor["rerank"]["ignore_failure"] is True
    assert processor["rerank"]["context"] == {"document_fields": ["title"]}
    (connector,) = fake.connectors.values()
    assert "client_config" not in connector  # 2.12 has none (it would drop it)
    assert "Authorization" not in connector["actions"][0]["headers"]
    assert PRIVATE_IP not in fake.persistent
    assert "MUST send ext.rerank" in result.out and "no timeout" in result.out
    # 2.12 returns no client_config: a re-run must not take that for a difference.
    before, calls = snapshot(fake), len(fake.calls)
    again = run_cli("opensearch", "setup", "--url", url, *PUBLIC_SETUP)
    assert again.code == 0, again.out
    assert mutations(fake, calls) == [] and snapshot(fake) == before


@pytest.mark.parametrize("version", ["2.18.0", "2.19.0"])
def test_218_and_2190_fall_back_to_ext_rerank_because_ignore_failure_is_lost(
    opensearch: ClusterFactory, run_cli: CliRunner, version: str
) -> None:
    fake, url = opensearch(version=version)
    result = run_cli(*setup_args(url))
    assert result.code == 0, result.out
    assert fake.violations == []
    (processor,) = fake.pipelines["rerank-sidecar"]["response_processors"]
    assert "ml_opensearch" in processor["rerank"]
    assert len(fake.connectors) == 1 and len(fake.models) == 1
    assert "clients must send ext.rerank" in result.out and "2.19.1" in result.out
    assert "MUST send ext.rerank" in result.out
    # Searches without ext.rerank pass through with their hits (ml_opensearch's
    # ignore_failure is core's, which works on these versions).
    fake.documents["products"] = [{"_id": "a", "_source": {"title": "x", "body": "y"}}]
    status, answer = fake.handle("POST", "/products/_search", {}, {"query": {"match_all": {}}})
    assert status == 200 and [h["_id"] for h in answer["hits"]["hits"]] == ["a"]
    status_result = run_cli("opensearch", "status", "--url", url)
    assert "clients must send ext.rerank" in status_result.out


def test_the_2190_fallback_is_needed_ml_inference_failures_fail_searches_there(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    """Why the gate exists: the pipeline 2.19.1 gets, put by hand on 2.19.0, fails every search
    the sidecar cannot score (here a match_all, answered 422), despite ignore_failure."""
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    pipeline = fake.pipelines["rerank-sidecar"]
    fake.post = lambda url, headers, body: (422, b'{"error": {"type": "no_query_text"}}')
    fake.documents["products"] = [{"_id": "a", "_source": {"title": "x", "body": "y"}}]
    search: dict[str, Any] = {"query": {"match_all": {}}}
    assert fake.handle("POST", "/products/_search", {}, search)[0] == 200
    fake.version = "2.19.0"
    fake.pipelines["rerank-sidecar"] = pipeline
    assert fake.handle("POST", "/products/_search", {}, search)[0] == 500


@pytest.mark.parametrize(
    ("version", "connect", "read", "retries"),
    [
        ("2.13.0", 3000, 10000, False),  # milliseconds on 2.13
        ("2.14.0", 3, 10, False),
        ("2.15.0", 3, 10, True),
        ("3.0.0", 3, 10, True),
    ],
)
def test_client_config_units_and_retry_keys_per_version(
    opensearch: ClusterFactory,
    run_cli: CliRunner,
    version: str,
    connect: int,
    read: int,
    retries: bool,
) -> None:
    fake, url = opensearch(version=version)
    result = run_cli("opensearch", "setup", "--url", url, *PUBLIC_SETUP)
    assert result.code == 0, result.out
    assert fake.violations == []
    for connector in fake.connectors.values():
        config = connector["client_config"]
        assert (config["connection_timeout"], config["read_timeout"]) == (connect, read)
        assert ("max_retry_times" in config) is retries
    calls = len(fake.calls)
    assert run_cli("opensearch", "setup", "--url", url, *PUBLIC_SETUP).code == 0
    assert mutations(fake, calls) == []


@pytest.mark.parametrize("secured", [True, False])
def test_status_names_the_predict_permission_on_a_secured_cluster(
    opensearch: ClusterFactory, run_cli: CliRunner, secured: bool
) -> None:
    plugins = ("opensearch-ml", "opensearch-neural-search")
    _fake, url = opensearch(plugins=(*plugins, "opensearch-security") if secured else plugins)
    setup = run_cli(*setup_args(url))
    assert setup.code == 0, setup.out
    result = run_cli("opensearch", "status", "--url", url)
    assert result.code == 0, result.out
    for out in (setup.out, result.out):
        assert ("cluster:admin/opensearch/ml/predict" in out) is secured


def test_refuses_below_212_naming_the_minimum(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.11.1")
    fake.spec = None  # the spec's own version checks would refuse first; we want our message
    result = run_cli(*setup_args(url))
    assert result.code == 1
    assert "2.12" in result.out and "too old" in result.out
    assert mutations(fake) == []


def test_private_sidecar_on_214_is_refused_clearly(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.14.0")
    result = run_cli(*setup_args(url))
    assert result.code == 1
    assert "private" in result.out and "2.15" in result.out
    assert PRIVATE_IP not in fake.persistent


def test_missing_neural_search_plugin_is_refused(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1", plugins=("opensearch-ml",))
    result = run_cli(*setup_args(url))
    assert result.code == 1 and "opensearch-neural-search" in result.out
    assert mutations(fake) == []


@pytest.mark.parametrize("existing", [[], ["^http://vllm\\.ml\\.svc:8000/.*$"]])
def test_37_private_endpoint_regex_only_extended_when_in_use(
    opensearch: ClusterFactory, run_cli: CliRunner, existing: list[str]
) -> None:
    fake, url = opensearch(version="3.7.0")
    if existing:
        fake.persistent[PRIVATE_REGEX] = list(existing)
    assert run_cli(*setup_args(url)).code == 0
    if existing:
        assert fake.persistent[PRIVATE_REGEX] == [*existing, OUR_REGEX]
    else:  # an empty list allows every private endpoint; adding one would restrict the others
        assert PRIVATE_REGEX not in fake.persistent
    assert fake.violations == []
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert fake.persistent.get(PRIVATE_REGEX, []) == existing


def test_foreign_default_pipeline_needs_yes_and_comes_back_on_teardown(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    fake.pipelines["theirs"] = {"response_processors": []}
    fake.indices["products"]["index.search.default_pipeline"] = "theirs"
    refused = run_cli(*setup_args(url))
    assert refused.code == 3 and "--yes" in refused.out
    assert fake.indices["products"]["index.search.default_pipeline"] == "theirs"
    assert run_cli(*setup_args(url, "--yes")).code == 0
    assert fake.indices["products"]["index.search.default_pipeline"] == "rerank-sidecar"
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert fake.indices["products"]["index.search.default_pipeline"] == "theirs"


def test_changed_fields_update_in_place_without_duplicates(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    ids = (set(fake.connectors), set(fake.models), set(fake.model_groups))
    calls = len(fake.calls)
    result = run_cli(
        "opensearch",
        "setup",
        "--url",
        url,
        "--sidecar-url",
        SIDECAR,
        "--fields",
        "body",
        "--index",
        "products",
        "--sidecar-token",
        TOKEN,
        "--yes",
    )
    assert result.code == 0, result.out
    assert (set(fake.connectors), set(fake.models), set(fake.model_groups)) == ids
    changed = mutations(fake, calls)
    assert not any(p.endswith(("/_create", "/_register")) for p in changed)
    dsl = next(c for c in fake.connectors.values() if c["name"].endswith("-dsl"))
    assert '"fields": ["body"]' in dsl["actions"][0]["request_body"]
    assert any(p.endswith("/_undeploy") for p in changed)  # ML Commons demands it
    assert all(m["model_state"] == "DEPLOYED" for m in fake.models.values())
    assert fake.violations == []


def test_connector_update_needs_yes_when_models_are_deployed(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    result = run_cli(*setup_args(url, "--instruction", "Find product pages"))
    assert result.code == 3
    assert all(m["model_state"] == "DEPLOYED" for m in fake.models.values())


def test_new_token_updates_the_credential_and_is_never_printed(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    new_token = "another-5ecret-token"
    args = setup_args(url, "--yes")
    args[args.index(TOKEN)] = new_token
    for extra in ([], ["--json"]):
        result = run_cli(*args, *extra)
        assert result.code == 0
        assert new_token not in result.out and TOKEN not in result.out
    assert {c["credential"]["sidecar_token"] for c in fake.connectors.values()} == {new_token}
    updates = [c for c in fake.calls if c.method == "PUT" and "/connectors/" in c.path]
    assert len(updates) == 2  # once per connector, and not again on the third run


def test_status_reports_each_piece_and_a_test_rerank(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    result = run_cli("opensearch", "status", "--url", url, "--fields", "title", "--json")
    assert result.code == 0, result.out
    report = result.json()
    tests = [c for c in report["changes"] if c["resource"].startswith("test rerank")]
    assert [c["action"] for c in tests] == ["ok", "ok"]
    assert {c["resource"] for c in report["changes"]} >= {
        "model group",
        "connector",
        "model",
        "search pipeline",
        "index setting",
        "cluster setting",
    }
    fake.post = lambda url, headers, body: (503, b'{"error": {"type": "backend_unavailable"}}')
    broken = run_cli("opensearch", "status", "--url", url)
    assert broken.code == 4 and "failed" in broken.out
    assert fake.violations == []


def test_status_before_setup_says_so(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    _fake, url = opensearch(version="2.19.1")
    result = run_cli("opensearch", "status", "--url", url)
    assert result.code == 4 and "setup has not run" in result.out


def test_deploy_timeout_is_a_clear_error(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    _fake, url = opensearch(version="2.19.1", deploy_polls=10_000)
    result = run_cli(*setup_args(url, "--wait-timeout", "0.2"))
    assert result.code == 1
    assert "not DEPLOYED after" in result.out and "--wait-timeout" in result.out


def test_deploy_failure_is_reported(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    _fake, url = opensearch(version="2.19.1", deploy_fails=True)
    result = run_cli(*setup_args(url))
    assert result.code == 1 and "DEPLOY_FAILED" in result.out


def test_teardown_deletes_a_model_left_deploy_failed_by_its_undeploy(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1", undeployed_state="DEPLOY_FAILED")
    assert run_cli(*setup_args(url)).code == 0
    result = run_cli("opensearch", "teardown", "--url", url, "--yes")
    assert result.code == 0, result.out
    assert fake.models == {} and fake.violations == []


def test_objects_with_our_names_made_by_someone_else_are_not_touched(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    fake.pipelines["rerank-sidecar"] = {"description": "hand made", "response_processors": []}
    result = run_cli(*setup_args(url))
    assert result.code == 1 and "not made by this tool" in result.out
    assert fake.pipelines["rerank-sidecar"]["description"] == "hand made"


def test_alias_expands_to_its_indices(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    fake, url = opensearch(version="2.19.1")
    fake.indices.update({"shop-v1": {}, "shop-v2": {}})
    fake.aliases["shop"] = ["shop-v1", "shop-v2"]
    args = setup_args(url)
    args[args.index("products")] = "shop"
    assert run_cli(*args).code == 0
    assert {
        fake.indices[i].get("index.search.default_pipeline") for i in ("shop-v1", "shop-v2")
    } == {"rerank-sidecar"}
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert fake.indices["shop-v1"] == {} and fake.indices["shop-v2"] == {}


def test_missing_index_fails_before_touching_it(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    _fake, url = opensearch(version="2.19.1")
    args = setup_args(url)
    args[args.index("products")] = "nope"
    result = run_cli(*args)
    assert result.code == 1 and "'nope' does not exist" in result.out


def test_access_control_makes_the_model_group_public(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(
        version="2.19.1",
        access_control=True,
        plugins=("opensearch-ml", "opensearch-neural-search", "opensearch-security"),
    )
    assert run_cli(*setup_args(url)).code == 0
    (group,) = fake.model_groups.values()
    assert group["access"] == "public"


def test_teardown_without_yes_is_refused(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    before = snapshot(fake)
    assert run_cli("opensearch", "teardown", "--url", url).code == 3
    assert snapshot(fake) == before


def test_one_to_one_pipeline_and_connector_shape(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url, "--one-to-one")).code == 0
    inference = fake.pipelines["rerank-sidecar"]["response_processors"][0]["ml_inference"]
    assert inference["one_to_one"] is True
    assert inference["output_map"] == [{SCORE_FIELD: "$.scores[0]"}]
    dsl = next(c for c in fake.connectors.values() if c["name"].endswith("-dsl"))
    assert '"documents": [${parameters.documents}]' in dsl["actions"][0]["request_body"]
    status = run_cli("opensearch", "status", "--url", url, "--json")
    assert status.code == 0, status.out
    dsl_calls = [c for c in fake.remote_calls if c.url.endswith("/query-dsl")]
    assert [len(json.loads(c.body)["documents"]) for c in dsl_calls] == [1, 1]


def test_stub_sidecar_answers_both_contracts() -> None:
    status, raw = stub_sidecar(
        SIDECAR + "/v1/rerank", {}, json.dumps({"query": "q", "documents": ["a", "bb"]}).encode()
    )
    assert status == 200 and [r["index"] for r in json.loads(raw)["results"]] == [1, 0]


def test_teardown_stops_while_an_index_it_did_not_attach_uses_the_pipeline(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli(*setup_args(url)).code == 0
    fake.indices["other"] = {"index.search.default_pipeline": "rerank-sidecar"}
    result = run_cli("opensearch", "teardown", "--url", url, "--yes")
    assert result.code == 1 and "['other']" in result.out
    assert "rerank-sidecar" in fake.pipelines and len(fake.models) == 2
    del fake.indices["other"]["index.search.default_pipeline"]
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert fake.pipelines == {} and fake.models == {}


def test_setup_on_2190_removes_what_an_ml_inference_run_left_there(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    """A cluster wired with ml_inference on 2.19.0 (by an older release) converges to the
    ml_opensearch set-up: the extra pipeline, model and connector go, teardown still restores."""
    fake, url = opensearch(version="2.19.1")
    before = snapshot(fake)
    assert run_cli(*setup_args(url)).code == 0
    fake.version = "2.19.0"
    result = run_cli(*setup_args(url, "--json"))
    assert result.code == 0, result.out
    assert list(fake.pipelines) == ["rerank-sidecar"]
    assert [c["name"] for c in fake.connectors.values()] == ["rerank-sidecar-rerank"]
    assert [m["name"] for m in fake.models.values()] == ["rerank-sidecar-rerank"]
    deleted = {
        (c["resource"], c["name"]) for c in result.json()["changes"] if c["action"] == "deleted"
    }
    assert deleted == {
        ("search pipeline", "rerank-sidecar-ext"),
        ("model", "rerank-sidecar-rerank-dsl"),
        ("connector", "rerank-sidecar-rerank-dsl"),
    }
    calls = len(fake.calls)
    assert run_cli(*setup_args(url)).code == 0
    assert mutations(fake, calls) == []
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert snapshot(fake) == before
    assert fake.violations == []


def test_rerank_window_adds_the_rewrite_and_the_cut_and_goes_away_cleanly(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    before = snapshot(fake)
    result = run_cli(*setup_args(url, "--rerank-window", "50"))
    assert result.code == 0, result.out
    pipeline = fake.pipelines["rerank-sidecar"]
    oversample, rewrite = pipeline["request_processors"]
    assert oversample == {"oversample": {"tag": "rerank-sidecar-page-size", "sample_factor": 1.0}}
    window = next(c for c in fake.connectors.values() if c["name"].endswith("-window"))
    assert window["actions"][0]["url"] == SIDECAR + "/v1/rerank/window"
    assert json.loads(
        window["actions"][0]["request_body"].replace("${parameters.search}", "{}")
    ) == {"search": {}, "window": 50, "budget_s": 10}
    window_model = next(i for i, m in fake.models.items() if m["name"].endswith("-window"))
    assert rewrite["ml_inference"]["model_id"] == window_model
    assert rewrite["ml_inference"]["output_map"] == [{"from": "from", "size": "size"}]
    assert rewrite["ml_inference"]["ignore_failure"] is True
    scoring = pipeline["response_processors"][0]["ml_inference"]
    assert {k: v for k, v in scoring["input_map"][0].items() if k in ("from", "size")} == {
        "from": "$._request.from",
        "size": "$._request.size",
    }
    assert pipeline["response_processors"][-1] == {
        "truncate_hits": {"tag": "rerank-sidecar-page", "ignore_failure": True}
    }
    dsl = next(c for c in fake.connectors.values() if c["name"].endswith("-dsl"))
    assert '"page": { "from": ${parameters.from}' in dsl["actions"][0]["request_body"]
    again = run_cli(*setup_args(url, "--rerank-window", "50", "--json"))
    assert {c["action"] for c in again.json()["changes"]} <= {"unchanged", "reused"}
    status = run_cli("opensearch", "status", "--url", url, "--json")
    assert status.code == 0, status.out
    pieces = {(c["resource"], c["name"]): c["action"] for c in status.json()["changes"]}
    assert pieces[("connector", "rerank-sidecar-rerank-window")] == "ok"
    assert pieces[("model", "rerank-sidecar-rerank-window")] == "ok"
    assert pieces[("test rerank window (_predict)", "")] == "ok"
    # Without the flag: the window's connector and model go, the pipeline is the plain one.
    # The query-DSL connector changes under a deployed model: that asks for --yes.
    plain = run_cli(*setup_args(url, "--json", "--yes"))
    assert plain.code == 0, plain.out
    assert "request_processors" not in fake.pipelines["rerank-sidecar"]
    assert not any(c["name"].endswith("-window") for c in fake.connectors.values())
    assert not any(m["name"].endswith("-window") for m in fake.models.values())
    assert run_cli(*setup_args(url, "--rerank-window", "20", "--yes")).code == 0
    assert run_cli("opensearch", "teardown", "--url", url, "--yes").code == 0
    assert snapshot(fake) == before


def test_rerank_window_is_refused_where_it_cannot_work(
    opensearch: ClusterFactory, run_cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    _, old = opensearch(version="2.18.0")
    result = run_cli(*setup_args(old, "--rerank-window", "50"))
    assert result.code == 2 and "2.19.1" in result.out + capsys.readouterr().err
    # A node without search-pipeline-common (one of two here) lacks oversample and truncate_hits.
    bare = (("filter_query", "ml_inference"), ("ml_inference", "rerank"))
    full = FakeOpenSearch().search_processors[0]
    fake, url = opensearch(version="2.19.1", search_processors=(full, bare))
    result = run_cli(*setup_args(url, "--rerank-window", "50"))
    assert result.code == 1 and "oversample (request), truncate_hits (response)" in result.out
    assert fake.connectors == {} and fake.pipelines == {}
    result = run_cli(*setup_args(url, "--rerank-window", "50", "--one-to-one"))
    assert result.code == 2 and "--one-to-one" in result.out + capsys.readouterr().err
    # An index that cannot return 50 hits would fail every rewritten search.
    small, small_url = opensearch(version="2.19.1")
    small.indices["products"]["index.max_result_window"] = "30"
    result = run_cli(*setup_args(small_url, "--rerank-window", "50"))
    out = result.out + capsys.readouterr().err
    assert result.code == 2 and "index.max_result_window (30)" in out
    assert small.pipelines == {}
