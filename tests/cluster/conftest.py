"""The real OpenSearch node (started once per session) and what the cluster tests share.

Nothing here is a stand-in: the node is OpenSearch 2.19.6 with ml-commons, neural-search and
search-pipeline-common, assembled from Maven Central by `opensearch_node`; the sidecars are
`python -m sidecar serve` subprocesses on loopback in front of the session's real vLLM CPU server
(tiny Qwen3); set-up and teardown are `python -m es_integration` subprocesses, as a user runs
them.
`RERANK_TEST_OPENSEARCH_VERSION` picks another version (`make test-versions`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from opensearch_node.build import DEFAULT_VERSION
from opensearch_node.node import RunningNode, running_node
from tests.support.servers import TINY_SERVED_NAME, ServerProcess, sidecar_process

FIELDS = ["title", "body"]
SCORE_FIELD = "rerank_sidecar_score"
VECTOR_DIMENSION = 4

CATALOG_MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "body": {"type": "text"},
        "tags": {"type": "text"},
        "brand": {"type": "keyword"},
        "price": {"type": "float"},
        "released": {"type": "date"},
        "rating": {"type": "float"},
        "variants": {
            "type": "nested",
            "properties": {"color": {"type": "text"}, "size": {"type": "keyword"}},
        },
        # The k-NN zips on Maven Central carry no native libraries: the lucene engine only.
        "vector": {
            "type": "knn_vector",
            "dimension": VECTOR_DIMENSION,
            "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2"},
        },
    }
}

_PRODUCTS = [
    ("Waterproof hiking boots", "Gore-Tex leather boots for wet mountain trails.", "Alpina"),
    ("Trail running shoes", "Light shoes with a grippy sole for muddy trails.", "Stride"),
    ("Waterproof phone case", "Keeps your phone dry at the beach and in the rain.", "Shield"),
    ("Hiking socks", "Merino wool socks that keep feet warm in hiking boots.", "Alpina"),
    ("Rain jacket", "A breathable waterproof shell jacket for hiking in the rain.", "Stormline"),
    ("Boot cleaning kit", "Brushes and wax to clean leather boots after a hike.", "CarePro"),
    ("Winter snow boots", "Insulated boots for deep snow and icy sidewalks.", "Alpina"),
    ("Camping tent", "A two-person tent that stays dry in heavy rain.", "Stormline"),
    ("Trekking poles", "Carbon poles that take weight off your knees on steep trails.", "Stride"),
    ("Running shorts", "Breathable shorts for summer running and the gym.", "Stride"),
    ("Leather work boots", "Steel toe boots for building sites, oil resistant.", "Forge"),
    ("Hiking backpack", "A 30 litre pack with a rain cover for day hikes.", "Alpina"),
    ("Waterproof boots spray", "Spray that makes fabric and leather boots waterproof.", "CarePro"),
    ("Mountain guide book", "Fifty day hikes in the Alps with maps and tips.", "Paper & Co"),
    ("Summer sandals", "Open sandals for hot days at the river.", "Stride"),
    ("Gaiters", "Keep mud, snow and water out of hiking boots.", "Stormline"),
    ("Insoles for boots", "Cushioned insoles for long walks in boots.", "CarePro"),
    ("Children's rain boots", "Rubber boots for puddles, in red and yellow.", "Puddle"),
]


@dataclass(frozen=True)
class Cluster:
    """The node and a client for it."""

    node: RunningNode
    client: OpenSearch

    @property
    def url(self) -> str:
        return self.node.url

    def search(self, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.search(index=index, body=body, params=params)
        return result

    def plain(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """The same search without any pipeline: the order BM25 (or the sort) gives."""
        return self.search(index, body, search_pipeline="_none")


def catalog_documents() -> list[dict[str, Any]]:
    documents = []
    for number, (title, body, brand) in enumerate(_PRODUCTS):
        documents.append(
            {
                "title": title,
                "body": body,
                "brand": brand,
                "price": 10.0 + 7.5 * ((number * 7) % len(_PRODUCTS)),
                "released": f"2025-{1 + number % 12:02d}-{1 + (number * 3) % 28:02d}",
                "rating": round(3.0 + (number % 5) * 0.4, 1),
                "variants": [{"color": ("red", "black", "blue")[number % 3], "size": "M"}],
                "vector": [float((number * k) % 5) for k in range(1, VECTOR_DIMENSION + 1)],
            }
        )
    # Listings without the reranked fields: hits lacking them must pass through.
    documents.append({"tags": "spare laces for hiking boots", "brand": "Alpina", "price": 3.0})
    documents.append({"tags": "spare laces for running shoes", "brand": "Stride", "price": 2.5})
    return documents


def create_index(cluster: Cluster, index: str) -> None:
    cluster.client.indices.create(
        index=index, body={"settings": {"index.knn": True}, "mappings": CATALOG_MAPPING}
    )
    for number, document in enumerate(catalog_documents()):
        cluster.client.index(index=index, id=f"d{number:02d}", body=document)
    cluster.client.indices.refresh(index=index)


def es_integration(*args: str, check: bool = True) -> dict[str, Any]:
    """`python -m es_integration opensearch ... --json` as a subprocess; its JSON report."""
    command = [sys.executable, "-m", "es_integration", "opensearch", *args, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} exited {result.returncode}: {result.stdout}{result.stderr}"
        )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def setup_args(cluster: Cluster, sidecar: str, index: str, name: str, *extra: str) -> list[str]:
    return [
        "setup", "--url", cluster.url, "--sidecar-url", sidecar, "--index", index,
        "--fields", ",".join(FIELDS), "--name", name, "--yes", *extra,
    ]  # fmt: skip


def ids(result: dict[str, Any]) -> list[str]:
    """The hit ids of a search answer, in order."""
    return [hit["_id"] for hit in result["hits"]["hits"]]


def changed_ids(report: dict[str, Any], resource: str) -> dict[str, str]:
    return {c["name"]: c["id"] for c in report["changes"] if c["resource"] == resource and c["id"]}


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    version = os.environ.get("RERANK_TEST_OPENSEARCH_VERSION", DEFAULT_VERSION)
    with running_node(version) as node:
        client = OpenSearch(hosts=[node.url], timeout=120)
        yield Cluster(node, client)
        client.close()


def qwen_sidecar_args(vllm_server: ServerProcess, tiny_model_dir: Path) -> list[str]:
    return [
        "--vllm-url", vllm_server.url, "--model", str(tiny_model_dir),
        "--served-model-name", TINY_SERVED_NAME,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def qwen_sidecar(
    vllm_server: ServerProcess, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A sidecar in front of the session's real vLLM (tiny Qwen3), as the cluster reaches it."""
    log = tmp_path_factory.mktemp("cluster-logs") / "sidecar.log"
    with sidecar_process(log, *qwen_sidecar_args(vllm_server, tiny_model_dir)) as sidecar:
        yield sidecar


@dataclass(frozen=True)
class Attached:
    """An index whose default pipeline reranks through `qwen_sidecar`."""

    index: str
    name: str
    sidecar: str
    report: dict[str, Any]


@pytest.fixture(scope="session")
def catalog(cluster: Cluster, qwen_sidecar: ServerProcess) -> Attached:
    create_index(cluster, "catalog")
    report = es_integration(*setup_args(cluster, qwen_sidecar.url, "catalog", "rerank-sidecar"))
    return Attached("catalog", "rerank-sidecar", qwen_sidecar.url, report)
