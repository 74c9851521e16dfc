"""CLI surface: flags and environment, --dry-run (validated against the API spec), --json,
secrets never printed, TLS verification on by default. No cluster needed except the fake."""

from __future__ import annotations

import json
from typing import Any

import pytest

from es_integration import cli
from es_integration.errors import UsageError
from es_integration.options import (
    is_private_endpoint,
    token_fingerprint,
    trusted_endpoint_regex,
    validate_fields,
    validate_instruction,
)
from es_integration.os_resources import document_selector
from es_integration.versions import Version
from tests.es_integration.conftest import SIDECAR, TOKEN, CliRunner, ClusterFactory
from tests.es_integration.spec_validator import OpenSearchSpec


def dry_run_setup(version: str) -> list[str]:
    return [
        "opensearch",
        "setup",
        "--dry-run",
        "--assume-version",
        version,
        "--sidecar-url",
        "https://rerank.example.com",
        "--private-endpoint",
        "no",
        "--fields",
        "title,body",
        "--index",
        "products",
    ]


@pytest.mark.parametrize("version", ["2.12.0", "2.17.1", "2.18.0", "3.0.0", "3.7.0"])
def test_dry_run_prints_every_request_sends_nothing_and_each_is_valid(
    spec: OpenSearchSpec, opensearch: ClusterFactory, run_cli: CliRunner, version: str
) -> None:
    fake, url = opensearch(version=version)
    result = run_cli(*dry_run_setup(version), "--url", url, "--sidecar-token", TOKEN)
    assert result.code == 0, result.out
    assert fake.calls == []
    lines = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    assert len(lines) > 10
    for request in lines:
        spec.validate_request(
            request["method"],
            request["path"],
            request.get("params", {}),
            request.get("body"),
            Version.parse(version),
        )
    assert TOKEN not in result.out
    assert any(
        r["body"].get("credential") == {"sidecar_token": "<redacted>"}
        for r in lines
        if r.get("body")
    )


def test_dry_run_json_is_one_document_with_the_requests(run_cli: CliRunner) -> None:
    result = run_cli(
        "elasticsearch",
        "setup",
        "--dry-run",
        "--sidecar-url",
        SIDECAR,
        "--sidecar-token",
        TOKEN,
        "--json",
    )
    assert result.code == 0, result.out
    document = result.json()
    assert document["dry_run"] is True
    put = next(r for r in document["requests"] if r["method"] == "PUT")
    assert put["body"]["service_settings"]["secret_parameters"] == {"api_key": "<redacted>"}
    assert TOKEN not in result.out


def test_urls_and_credentials_come_from_the_environment(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    env = {"OPENSEARCH_URL": url, "OPENSEARCH_USERNAME": "admin", "OPENSEARCH_PASSWORD": "pa55word"}
    result = run_cli("opensearch", "status", env=env)
    assert result.code == 4  # reached the cluster: setup has not run
    assert fake.request_headers[0]["authorization"].startswith("Basic ")
    assert "pa55word" not in result.out


def test_no_url_is_a_usage_error(run_cli: CliRunner) -> None:
    assert run_cli("opensearch", "status").code == 2


def test_unreachable_cluster_is_a_clear_failure(run_cli: CliRunner) -> None:
    result = run_cli(
        "opensearch", "status", "--url", "http://127.0.0.1:9", "--request-timeout", "2"
    )
    assert result.code == 1 and "cannot reach OpenSearch" in result.out


def test_tls_is_verified_unless_insecure() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["opensearch", "status", "--url", "https://x:9200"])
    assert cli.options_from_args(args, {}).tls.verify is True
    args = parser.parse_args(["opensearch", "status", "--url", "https://x:9200", "--insecure"])
    assert cli.options_from_args(args, {}).tls.verify is False


def test_setup_requires_a_sidecar_url(opensearch: ClusterFactory, run_cli: CliRunner) -> None:
    fake, url = opensearch(version="2.19.1")
    assert run_cli("opensearch", "setup", "--url", url, "--fields", "body").code == 2
    assert fake.calls == []


def test_fields_default_to_the_text_fields_of_the_index(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch(version="2.19.1")
    result = run_cli(
        "opensearch", "setup", "--url", url, "--sidecar-url", SIDECAR, "--index", "products"
    )
    assert result.code == 0, result.out
    dsl = next(c for c in fake.connectors.values() if c["name"].endswith("-dsl"))
    assert '"fields": ["title", "body", "meta.summary"]' in dsl["actions"][0]["request_body"]
    assert "set --fields to choose" in result.out


def test_without_index_or_fields_setup_makes_the_model_only(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    """The compose file's one-liner: connector and model for _predict, no pipelines yet."""
    fake, url = opensearch(version="2.19.1")
    result = run_cli("opensearch", "setup", "--url", url, "--sidecar-url", SIDECAR, "--yes")
    assert result.code == 0, result.out
    assert fake.pipelines == {} and len(fake.models) == 1
    status = run_cli("opensearch", "status", "--url", url)
    assert status.code == 0, status.out
    assert fake.violations == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--fields", "ti'tle"],
        ["--instruction", "use ${secret}"],
        ["--sidecar-url", "ftp://x"],
        ["--name", "Bad Name"],
        ["--read-timeout", "0"],
        ["--url", "localhost:9200"],
        ["--url", "http://[::1"],
        ["--url", "http://127.0.0.1:notaport"],
    ],
)
def test_bad_values_are_usage_errors(run_cli: CliRunner, argv: list[str]) -> None:
    assert run_cli("opensearch", "setup", "--dry-run", *argv).code == 2


def test_helpers() -> None:
    regex = trusted_endpoint_regex("http://rerank-sidecar.search.svc:8080")
    assert regex == "^http://rerank-sidecar\\.search\\.svc:8080/.*$"
    # ML Commons' ReDoS check (MLCommonsSettings.validateRegexSafety) must accept it.
    import re

    assert not re.match(r".*\([^)]*[*+?]\)[*+?{].*", regex)
    assert re.fullmatch(regex, "http://rerank-sidecar.search.svc:8080/v1/rerank/query-dsl")
    assert not re.fullmatch(regex, "http://rerank-sidecar.search.svc:80800/v1/rerank")
    assert is_private_endpoint("http://10.1.2.3:8080", resolve=False)
    assert is_private_endpoint("http://rerank-sidecar:8080", resolve=False)
    assert is_private_endpoint("http://x.ns.svc.cluster.local", resolve=False)
    assert not is_private_endpoint("https://rerank.example.com", resolve=False)
    assert token_fingerprint(None, "c") == ""
    assert token_fingerprint("t", "c") != token_fingerprint("t", "d")
    assert token_fingerprint("t", "c").startswith("scrypt:") and token_fingerprint("t", "c") != "t"
    assert document_selector(["title", "body"]) == "$['title','body','rerank_sidecar_score']"
    assert document_selector(["meta.title"]) == "$"
    with pytest.raises(UsageError):
        validate_fields(["a", "a"])
    with pytest.raises(UsageError):
        validate_instruction("  ")


def _dry_run_requests(run_cli: CliRunner, version: str) -> list[dict[str, Any]]:
    result = run_cli(*dry_run_setup(version), "--json")
    assert result.code == 0, result.out
    requests: list[dict[str, Any]] = result.json()["requests"]
    return requests


@pytest.mark.parametrize(
    ("version", "config", "mechanism"),
    [
        ("2.12.0", None, "ml_opensearch"),
        ("2.13.0", (3000, 10000, False), "ml_opensearch"),
        ("2.14.2", (3, 10, False), "ml_opensearch"),
        ("2.17.1", (3, 10, True), "ml_opensearch"),
        ("2.18.0", (3, 10, True), "ml_opensearch"),
        ("2.19.0", (3, 10, True), "ml_opensearch"),
        ("2.19.1", (3, 10, True), "ml_inference"),
        ("3.0.0", (3, 10, True), "ml_inference"),
    ],
)
def test_version_gates_in_the_dry_run(
    run_cli: CliRunner,
    version: str,
    config: tuple[int, int, bool] | None,
    mechanism: str,
) -> None:
    """docs/contracts.md §7: client_config (none on 2.12, milliseconds on 2.13, retry keys from
    2.15) and ml_inference only where its ignore_failure works (2.19.1+, 3.0+)."""
    requests = _dry_run_requests(run_cli, version)
    connectors = [r["body"] for r in requests if r["path"] == "/_plugins/_ml/connectors/_create"]
    assert connectors
    for body in connectors:
        if config is None:
            assert "client_config" not in body
        else:
            connect, read, retries = config
            client = body["client_config"]
            assert (client["connection_timeout"], client["read_timeout"]) == (connect, read)
            assert ("max_retry_times" in client) is retries
    (main,) = [
        r["body"]
        for r in requests
        if r["method"] == "PUT" and r["path"] == "/_search/pipeline/rerank-sidecar"
    ]
    kinds = [next(iter(p)) for p in main["response_processors"]]
    if mechanism == "ml_inference":
        assert kinds == ["ml_inference", "rerank"] and len(connectors) == 2
    else:
        assert kinds == ["rerank"] and "ml_opensearch" in main["response_processors"][0]["rerank"]
        assert len(connectors) == 1


def test_elasticsearch_dry_run_always_sends_secret_parameters(run_cli: CliRunner) -> None:
    result = run_cli(
        "elasticsearch", "setup", "--dry-run", "--json", "--assume-version", "8.19.0",
        "--sidecar-url", SIDECAR,
    )  # fmt: skip
    assert result.code == 0, result.out
    put = next(r for r in result.json()["requests"] if r["method"] == "PUT")
    assert put["body"]["service_settings"]["secret_parameters"] == {"api_key": "<redacted>"}


ES_DRY_RUN = [
    "elasticsearch", "setup", "--dry-run", "--assume-version", "8.19.0", "--sidecar-url", SIDECAR,
]  # fmt: skip
BY_LANGUAGE = "zh=title,description en=title_en,description_en default=title_en,description_en"


def test_fields_by_language_reach_the_connector_and_every_field_is_read(
    run_cli: CliRunner,
) -> None:
    result = run_cli(*dry_run_setup("2.19.1"), "--fields-by-language", BY_LANGUAGE, "--json")
    assert result.code == 0, result.out
    requests = result.json()["requests"]
    created = [r["body"] for r in requests if r["path"] == "/_plugins/_ml/connectors/_create"]
    (dsl,) = [body for body in created if "query-DSL" in body["description"]]
    template = dsl["actions"][0]["request_body"]
    sent = json.loads(
        template.replace("${parameters.query}", "null")
        .replace("${parameters.sort}", "null")
        .replace("${parameters.documents}", "[]")
    )
    assert sent["fields"] == ["title_en", "description_en"]
    assert sent["fields_by_language"] == {
        "zh": ["title", "description"],
        "en": ["title_en", "description_en"],
        "default": ["title_en", "description_en"],
    }
    (main,) = [
        r["body"]
        for r in requests
        if r["method"] == "PUT" and r["path"] == "/_search/pipeline/rerank-sidecar"
    ]
    selector = main["response_processors"][0]["ml_inference"]["input_map"][0]["documents"]
    for name in ("title", "body", "description", "title_en", "description_en"):
        assert f"'{name}'" in selector


@pytest.mark.parametrize(
    "value",
    ["zh", "zh=title", "chinese=title default=title_en", "zh= default=t", "zh=a zh=b default=c"],
)
def test_a_bad_language_map_is_a_usage_error(
    run_cli: CliRunner, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*dry_run_setup("2.19.1"), "--fields-by-language", value).code == 2
    assert "--fields-by-language" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        dry_run_setup("2.19.0"),
        ES_DRY_RUN,
    ],
    ids=["opensearch-2.19.0", "elasticsearch"],
)
def test_fields_by_language_is_refused_where_no_pipeline_can_use_it(
    run_cli: CliRunner, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(*argv, "--fields-by-language", BY_LANGUAGE)
    assert result.code == 2
    assert "--fields-by-language" in result.out + capsys.readouterr().err
