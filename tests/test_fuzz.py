"""Fuzzing every POST endpoint of a real `rerank-sidecar serve` process (null backend, the real
Qwen tokenizer) with Hypothesis: arbitrary JSON, near-valid bodies with hostile values, raw bytes
and mismatched Content-Encoding headers. Every answer is JSON, never a 5xx, and the kept-alive
connection still serves an innocent request afterwards.

The example budget is small so `make test` stays fast; `RERANK_FUZZ_EXAMPLES=2000` (per test)
runs a larger pass. The status counts are printed at the end of the module (`-s`).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.servers import ServerProcess, sidecar_process

EXAMPLES = int(os.environ.get("RERANK_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ENDPOINTS = ["/v1/rerank", "/v2/rerank", "/rerank", "/v1/rerank/query-dsl"]
STATUSES: Counter[int] = Counter()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=60)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
query_dsl = st.recursive(
    st.text(max_size=80)
    | st.fixed_dictionaries({"match": st.dictionaries(st.text(max_size=8), json_values)})
    | st.fixed_dictionaries(
        {
            "query_string": st.fixed_dictionaries(
                {"query": st.text(alphabet='@-"()a :*~^', max_size=400)}
            )
        }
    ),
    lambda inner: (
        st.fixed_dictionaries({"bool": st.fixed_dictionaries({"must": st.lists(inner)})})
        | st.fixed_dictionaries({"query": inner})
        | st.fixed_dictionaries({"nested": st.fixed_dictionaries({"query": inner})})
    ),
    max_leaves=10,
)
near_valid = st.fixed_dictionaries(
    {
        "query": st.text(max_size=200) | query_dsl | json_values,
        "documents": st.lists(
            st.text(max_size=200) | st.fixed_dictionaries({"text": json_values}) | json_values,
            max_size=8,
        ),
    },
    optional={
        "top_n": json_values,
        "return_documents": json_values,
        "max_tokens_per_doc": st.integers(min_value=-5, max_value=2**40) | json_values,
        "instruction": st.text(max_size=100) | json_values,
        "fields": st.lists(st.text(max_size=20)) | json_values,
        "sort": json_values,
        "model": json_values,
    },
)
bodies = (
    near_valid.map(lambda body: json.dumps(body).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=300)
)
encodings = st.sampled_from([None, "gzip", "deflate", "br", "zstd", "identity", "gzip, br"])


@pytest.fixture(scope="module")
def fuzzed_sidecar(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("fuzz") / "sidecar.log"
    env = {"RERANK_BACKEND": "null", "RERANK_MODEL": str(tiny_model_dir)}
    with sidecar_process(log, "--max-documents", "8", env=env) as server:
        yield server
    print(f"\nfuzz: {sum(STATUSES.values())} requests, statuses {dict(sorted(STATUSES.items()))}")


class Client:
    """One kept-alive connection, as a connection pool would reuse it."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._address = (host, int(port))
        self._connection = http.client.HTTPConnection(*self._address, timeout=30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self._connection.request("POST", path, body=body, headers=headers)
        response = self._connection.getresponse()
        raw = response.read()
        STATUSES[response.status] += 1
        assert response.status < 500, raw[:500]
        assert response.getheader("Content-Type", "").startswith("application/json"), raw[:200]
        answer = json.loads(raw)
        if response.status >= 400:
            assert set(answer) == {"error"} and {"type", "message"} <= set(answer["error"])
        if response.getheader("Connection", "").lower() == "close":
            self._connection.close()  # the server said so: a pool opens a new one
        return response.status, answer

    def innocent(self) -> None:
        status, _ = self.post(
            "/v1/rerank",
            b'{"query": "q", "documents": ["a"]}',
            {"Content-Type": "application/json"},
        )
        assert status == 200


@pytest.fixture(scope="module")
def client(fuzzed_sidecar: ServerProcess) -> Client:
    return Client(fuzzed_sidecar.url)


def _encode(body: bytes, encoding: str | None, honest: bool) -> bytes:
    if not honest or encoding is None:
        return body
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


@FUZZ
@given(
    path=st.sampled_from(ENDPOINTS),
    body=bodies,
    encoding=encodings,
    honest=st.booleans(),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=latin-1"]
    ),
)
def test_no_body_gets_a_5xx_or_hurts_the_connection(
    client: Client, path: str, body: bytes, encoding: str | None, honest: bool, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    client.post(path, _encode(body, encoding, honest), headers)
    client.innocent()


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=near_valid)
def test_near_valid_bodies_are_scored_or_refused_with_a_named_field(
    client: Client, path: str, body: dict[str, Any]
) -> None:
    status, answer = client.post(
        path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    if status == 200:
        scores = answer["scores"] if path.endswith("query-dsl") else answer["results"]
        assert len(scores) <= len(body["documents"])
    else:
        assert status in (400, 413, 422), answer
