"""`opensearch eval` without a cluster: the query and judgment files, the fields a set-up's
pipeline reranks on, and that the metric library scores the cluster's order, not its own."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from es_integration import cli
from es_integration import eval as evaluation
from es_integration.errors import UsageError
from es_integration.options import Options
from es_integration.os_resources import ml_inference_pipeline, ml_opensearch_pipeline


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_queries_are_read_in_order_skipping_blanks_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "q.tsv", "# id\ttext\nq2\twaterproof boots\n\nq1\t防水 靴子 \n")
    assert list(evaluation.read_queries(path).items()) == [
        ("q2", "waterproof boots"),
        ("q1", "防水 靴子"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("q1\tboots\nq2 no tab here\n", 2, "expected '<query id> TAB <query text>'"),
        ("q1\tboots\n\nq2\t  \n", 3, "expected"),
        ("q1\tboots\nq1\tshoes\n", 2, "appears twice"),
    ],
)
def test_a_bad_query_line_is_named(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = write(tmp_path, "q.tsv", text)
    with pytest.raises(UsageError, match=rf"q\.tsv line {line}: .*{says}"):
        evaluation.read_queries(path)


def test_judgments_are_trec_qrels(tmp_path: Path) -> None:
    path = write(tmp_path, "qrels.tsv", "q1 0 d01 2\nq1\t0\td02\t0\n# note\nq2 Q0 d03 1\n")
    assert [(q.query_id, q.doc_id, q.relevance) for q in evaluation.read_judgments(path)] == [
        ("q1", "d01", 2),
        ("q1", "d02", 0),
        ("q2", "d03", 1),
    ]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("q1 0 d01 2\nq1 0 d02\n", 2, r"4 columns\), got 3"),
        ("q1 0 d01 2\nq1 0 d02 high\n", 2, "grade 'high' is not an integer"),
        ("q1 0 d01 2\nq2 0 d01 1\n\nq1 0 d01 0\n", 4, "judged twice"),
    ],
)
def test_a_bad_judgment_line_is_named(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = write(tmp_path, "qrels.tsv", text)
    with pytest.raises(UsageError, match=rf"qrels\.tsv line {line}: .*{says}"):
        evaluation.read_judgments(path)


def test_empty_or_missing_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no judgments"):
        evaluation.read_judgments(write(tmp_path, "qrels.tsv", "# nothing\n"))
    with pytest.raises(UsageError, match="--queries: cannot read"):
        evaluation.read_queries(tmp_path / "absent.tsv")


def test_the_cli_stops_at_a_bad_line_before_any_search(tmp_path: Path) -> None:
    queries = write(tmp_path, "q.tsv", "q1\tboots\n")
    qrels = write(tmp_path, "qrels.tsv", "q1 0 d01 1\nq1 0 d02 relevant\n")
    out, err = io.StringIO(), io.StringIO()
    # Nothing listens on port 9: a search would fail with exit 1, not 2.
    argv = ["opensearch", "eval", "--url", "http://127.0.0.1:9", "--index", "products"]
    with contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--queries", str(queries), "--judgments", str(qrels)], stdout=out)
    assert code == 2
    assert f"{qrels} line 2: grade 'relevant' is not an integer" in err.getvalue()
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--index", "a", "--index", "b"], "one --index"),
        (["--index", "a", "--dry-run"], "--dry-run does not apply"),
    ],
)
def test_eval_usage(tmp_path: Path, extra: list[str], says: str) -> None:
    files = ["--queries", "q.tsv", "--judgments", "qrels.tsv", "--url", "http://127.0.0.1:9"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["opensearch", "eval", *files, *extra], stdout=io.StringIO()) == 2
    assert says in err.getvalue()


@pytest.mark.parametrize("fields", [["title", "body"], ["title_zh", "desc_zh", "brand"]])
def test_the_fields_come_from_setups_own_pipelines(fields: list[str]) -> None:
    options = Options(urls=["http://x"], fields=fields)
    assert evaluation.pipeline_fields(ml_inference_pipeline(options, "m1")) == fields
    assert evaluation.pipeline_fields(ml_opensearch_pipeline(options, "m1")) == fields
    assert not evaluation.needs_ext_rerank(ml_inference_pipeline(options, "m1"))
    assert evaluation.needs_ext_rerank(ml_opensearch_pipeline(options, "m1"))
    # Dot paths make the selector the whole document: the caller falls back to the mapping.
    nested = Options(urls=["http://x"], fields=["title", "specs.text"])
    assert evaluation.pipeline_fields(ml_inference_pipeline(nested, "m1")) == []


def test_the_metrics_score_the_clusters_order(tmp_path: Path) -> None:
    """Ids sorting the other way round: a library tie-break on ids would swap them."""
    qrels = evaluation.read_judgments(write(tmp_path, "qrels.tsv", "q1 0 a 0\nq1 0 z 1\n"))
    top_z = evaluation.per_query_scores(qrels, {"q1": ["z", "a"]})["q1"]
    top_a = evaluation.per_query_scores(qrels, {"q1": ["a", "z"]})["q1"]
    assert top_z["MRR@10"] == 1.0 and top_a["MRR@10"] == 0.5
    assert top_z["nDCG@10"] == 1.0 > top_a["nDCG@10"]
    assert top_z["Recall@10"] == top_a["Recall@10"] == 1.0


def test_a_query_with_no_hits_scores_zero(tmp_path: Path) -> None:
    qrels = evaluation.read_judgments(write(tmp_path, "qrels.tsv", "q1 0 a 1\nq2 0 b 1\n"))
    scores = evaluation.per_query_scores(qrels, {"q1": [], "q2": ["b"]})
    assert scores["q1"] == {"nDCG@10": 0.0, "MRR@10": 0.0, "Recall@10": 0.0}
    assert scores["q2"]["nDCG@10"] == 1.0
