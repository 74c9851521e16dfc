"""`es_integration opensearch eval` on the real node, with the demo catalog and its judgments.

The sidecar is the embedded CPU model (`python -m sidecar serve --backend embedded`): eval's
correctness does not depend on the model, and this keeps the test off the vLLM server. Each run's
top 10 is checked against the cluster's own answer to the same body, and the metrics against
their definitions computed here from the judgments.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.catalog import DATA_DIR
from demo.report import index_catalog
from tests.cluster.conftest import Cluster, es_integration
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.cluster

INDEX = "eval-products"
FIELDS = "title,description"
QUERIES = DATA_DIR / "queries.tsv"
JUDGMENTS = DATA_DIR / "qrels.tsv"


@pytest.fixture(scope="module")
def demo_index(cluster: Cluster, embedded_sidecar_process: ServerProcess) -> Iterator[str]:
    index_catalog(cluster.url, INDEX)
    setup = [
        "setup", "--url", cluster.url, "--sidecar-url", embedded_sidecar_process.url,
        "--index", INDEX, "--fields", FIELDS, "--name", "eval-demo", "--yes",
    ]  # fmt: skip
    es_integration(*setup)
    yield INDEX
    es_integration("teardown", "--url", cluster.url, "--name", "eval-demo", "--yes")
    cluster.client.indices.delete(index=INDEX)


def run_eval(
    cluster: Cluster, tmp_path: Path, *extra: str, index: str = INDEX
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "es_integration", "opensearch", "eval", "--url", cluster.url,
        "--index", index, "--results", str(tmp_path / "eval.json"),
        "--chart", str(tmp_path / "eval.png"), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def judgments() -> dict[str, dict[str, int]]:
    grades: dict[str, dict[str, int]] = {}
    for line in JUDGMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            qid, _, docid, grade = line.split()
            grades.setdefault(qid, {})[docid] = int(grade)
    return grades


def test_eval_on_the_demo_catalog(cluster: Cluster, demo_index: str, tmp_path: Path) -> None:
    done = run_eval(cluster, tmp_path, "--queries", str(QUERIES), "--judgments", str(JUDGMENTS))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{INDEX}: 15 judged queries, multi_match over {FIELDS}, top 10")
    assert [line.split()[0] for line in lines[2:5]] == ["nDCG@10", "MRR@10", "Recall@10"]
    result: dict[str, Any] = json.loads((tmp_path / "eval.json").read_text())
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["pipeline"] == "eval-demo" and result["fields"] == FIELDS.split(",")
    grades = judgments()
    reordered = 0
    for qid, query in result["per_query"].items():
        body = {"query": {"multi_match": {"query": query["query"], "fields": result["fields"]}}}
        body["size"] = 10
        plain = [hit["_id"] for hit in cluster.plain(INDEX, body)["hits"]["hits"]]
        reranked = [hit["_id"] for hit in cluster.search(INDEX, body)["hits"]["hits"]]
        assert query["bm25"]["top_ids"] == plain
        assert query["reranked"]["top_ids"] == reranked
        reordered += plain != reranked
        relevant = {doc for doc, grade in grades[qid].items() if grade > 0}
        for run in ("bm25", "reranked"):
            ids = query[run]["top_ids"]
            found = [rank for rank, doc in enumerate(ids, start=1) if doc in relevant]
            assert query[run]["Recall@10"] == pytest.approx(len(found) / len(relevant))
            assert query[run]["MRR@10"] == pytest.approx(1 / found[0] if found else 0.0)
    assert reordered > 0, "the pipeline reordered nothing: the comparison would prove nothing"
    for run in ("bm25", "reranked"):
        for measure, mean in result["mean"][run].items():
            values = [query[run][measure] for query in result["per_query"].values()]
            assert mean == pytest.approx(sum(values) / len(values))


def test_a_bad_judgment_line_stops_eval(cluster: Cluster, demo_index: str, tmp_path: Path) -> None:
    bad = tmp_path / "qrels.tsv"
    lines = JUDGMENTS.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], "en01 0 p016", *lines[5:]]) + "\n")
    done = run_eval(cluster, tmp_path, "--queries", str(QUERIES), "--judgments", str(bad))
    assert done.returncode == 2
    assert f"{bad} line 6: expected '<query id> <iteration> <document id> <grade>'" in done.stderr
    assert not (tmp_path / "eval.json").exists()


def test_eval_refuses_an_index_without_the_pipeline(cluster: Cluster, tmp_path: Path) -> None:
    cluster.client.indices.create(index="eval-plain", body={})
    try:
        done = run_eval(
            cluster, tmp_path, "--queries", str(QUERIES), "--judgments", str(JUDGMENTS),
            index="eval-plain",
        )  # fmt: skip
    finally:
        cluster.client.indices.delete(index="eval-plain")
    assert done.returncode == 1
    assert "has no default search pipeline" in done.stderr
