"""Malformed cluster answers: a 2xx with an unexpected body, missing keys, non-JSON, an HTML page
from a proxy. Each ends the command with one clear error line and a non-zero exit, no traceback.

The fake cluster (layer 1, see conftest) serves the canned body for one call; every other call
is answered normally, so the command gets as far as that call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.es_integration.conftest import (
    SIDECAR,
    CliResult,
    CliRunner,
    ClusterFactory,
    stub_sidecar,
)
from tests.es_integration.fake_elasticsearch import FakeElasticsearch
from tests.es_integration.fake_opensearch import serve
from tests.es_integration.test_opensearch_cli import setup_args

HTML = b"<html>\n<body>\n<h1>502 Bad Gateway</h1>\n<hr>nginx\n</body>\n</html>\n"
JSON = "application/json"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


# (call, status, content type, body, what the error line must say)
Case = tuple[str, int, str, bytes, str]
OPENSEARCH_CASES: list[Case] = [
    ("GET /", 200, "text/html", HTML, "unexpected answer"),
    ("GET /", 200, JSON, b"{not json", "unexpected answer"),
    ("GET /", 200, JSON, b"", "unexpected answer"),
    ("GET /", 200, JSON, _json({"name": "node"}), "'version'"),
    (
        "GET /",
        200,
        JSON,
        _json({"version": {"number": "banana", "distribution": "opensearch"}}),
        "version number",
    ),
    ("GET /", 200, JSON, _json(["a", "list"]), "a JSON object"),
    ("GET /", 502, "text/html", HTML, "HTTP 502"),
    ("GET /_cat/plugins", 200, JSON, _json({"plugins": []}), "a JSON array"),
    ("GET /_cluster/settings", 200, JSON, _json({"persistent": []}), "'persistent'"),
    ("POST /_plugins/_ml/model_groups/_register", 200, JSON, _json({}), "'model_group_id'"),
    ("POST /_plugins/_ml/connectors/_search", 200, JSON, _json({"hits": 3}), "'hits'"),
    ("POST /_plugins/_ml/connectors/_create", 200, JSON, _json({"ok": True}), "'connector_id'"),
    ("POST /_plugins/_ml/models/_register", 200, JSON, _json({"status": "CREATED"}), "task_id"),
    ("GET /products/_mapping", 200, JSON, _json({"products": {"mappings": 1}}), "'mappings'"),
    ("GET /products/_settings", 200, "text/plain", b"ok", "unexpected answer"),
    ("GET /_search/pipeline/rerank-sidecar", 200, JSON, _json({"rerank-sidecar": 1}), "pipeline"),
]


def error_line(result: CliResult) -> str:
    """The one `error:` line of a failed command (exit status 1)."""
    assert result.code == 1, result.out
    (error,) = [line for line in result.out.splitlines() if line.strip().startswith("error:")]
    assert result.out.rstrip().splitlines()[-1] == error  # the body's lines did not follow it
    return error


@pytest.mark.parametrize(
    "case", OPENSEARCH_CASES, ids=[f"{c[0]}-{c[1]}-{c[3][:12]!r}" for c in OPENSEARCH_CASES]
)
def test_opensearch_setup_reports_a_malformed_answer_in_one_line(
    opensearch: ClusterFactory, run_cli: CliRunner, case: Case
) -> None:
    call, status, content_type, body, message = case
    fake, url = opensearch()
    fake.raw_answers[call] = (status, content_type, body)
    args = setup_args(url)
    if "_mapping" in call:
        args.remove("--fields")
        args.remove("title,body")
    error = error_line(run_cli(*args))
    assert message in error, error
    assert call.split()[1] in error or status != 200, error  # names the call


def test_status_with_a_garbled_predict_answer_fails_that_check_only(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch()
    assert run_cli(*setup_args(url)).code == 0
    model_id = next(k for k, m in fake.models.items() if m["name"].endswith("-dsl"))
    path = f"/_plugins/_ml/models/{model_id}/_predict"
    fake.raw_answers[f"POST {path}"] = (200, JSON, _json({"inference_results": "nope"}))
    result = run_cli("opensearch", "status", "--url", url)
    assert result.code == 4, result.out
    failed = [line for line in result.out.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 1 and "no scores in the answer" in failed[0]


def test_a_hand_edited_state_record_is_a_clear_error(
    opensearch: ClusterFactory, run_cli: CliRunner
) -> None:
    fake, url = opensearch()
    assert run_cli(*setup_args(url)).code == 0
    (group,) = fake.model_groups.values()
    group["description"] = group["description"].replace('"settings":{', '"settings":[', 1)
    result = run_cli("opensearch", "teardown", "--url", url, "--yes")
    assert result.code == 1 and "state record" in result.out


EsFactory = Callable[..., tuple[FakeElasticsearch, str]]


@pytest.fixture
def elasticsearch() -> Iterator[EsFactory]:
    with ExitStack() as stack:

        def start(**kwargs: Any) -> tuple[FakeElasticsearch, str]:
            fake = FakeElasticsearch(post=stub_sidecar, **kwargs)
            return fake, stack.enter_context(serve(fake))

        yield start


ELASTICSEARCH_CASES: list[Case] = [
    ("GET /", 200, "text/html", HTML, "unexpected answer"),
    ("GET /", 200, JSON, _json({"tagline": "You Know, for Search"}), "version number"),
    ("GET /_license", 200, JSON, _json({"license": "trial"}), "'license'"),
    ("GET /_inference/rerank/rerank-sidecar", 200, JSON, _json({"endpoints": {}}), "array"),
]


@pytest.mark.parametrize("case", ELASTICSEARCH_CASES)
def test_elasticsearch_setup_reports_a_malformed_answer_in_one_line(
    elasticsearch: EsFactory, run_cli: CliRunner, case: Case
) -> None:
    call, status, content_type, body, message = case
    fake, url = elasticsearch()
    fake.raw_answers[call] = (status, content_type, body)
    error = error_line(run_cli("elasticsearch", "setup", "--url", url, "--sidecar-url", SIDECAR))
    assert message in error, error


def test_the_process_prints_no_traceback(opensearch: ClusterFactory) -> None:
    """`python -m es_integration` as a person runs it, against a proxy's HTML page."""
    fake, url = opensearch()
    fake.raw_answers["GET /"] = (200, "text/html", HTML)
    done = subprocess.run(
        [sys.executable, "-m", "es_integration", "opensearch", "status", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "GET /: unexpected answer" in done.stdout and "text/html" in done.stdout
