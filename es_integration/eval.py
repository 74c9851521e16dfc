"""`python -m es_integration opensearch eval`: does the rerank pipeline improve relevance?

Every query of `--queries` runs twice against `--index`, with the same body: once with
`search_pipeline=_none` (the plain BM25 order) and once through the index's default search
pipeline (the one setup made: reranked). The body is a `multi_match` of the query text over
`--fields` (default: the fields the set-up reranks on), size 10; on 2.12-2.19.0 set-ups, whose
pipeline reads the query from `ext.rerank`, the body carries it there too. The two top-10 lists
are scored against TREC judgments with ir-measures (nDCG@10, MRR@10 = RR@10, Recall@10), and
written as a table, a JSON file and a PNG chart (per-query nDCG@10 change, sorted).

Input files: queries are `<query id> TAB <text>` lines; judgments are TREC qrels,
`<query id> <iteration> <document _id> <grade>`. Blank lines and lines starting with `#` are
skipped; any other bad line stops the command with its file and line number (exit 2).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import ir_measures
import matplotlib
from tqdm import tqdm

from es_integration import os_api
from es_integration.answers import as_object, member, text_id
from es_integration.errors import SetupError, UsageError
from es_integration.os_resources import SCORE_FIELD
from es_integration.transport import Transport, call

matplotlib.use("Agg")  # files only, never a display
from matplotlib import pyplot  # after use(): the backend is chosen first

SIZE = 10
MEASURES = {
    "nDCG@10": ir_measures.nDCG @ SIZE,
    "MRR@10": ir_measures.RR @ SIZE,
    "Recall@10": ir_measures.R @ SIZE,
}
CHART_MEASURE = "nDCG@10"
RUNS = ("bm25", "reranked")


def _lines(path: Path, flag: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc}") from None
    return [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def read_queries(path: Path) -> dict[str, str]:
    """Query id -> text, in file order."""
    queries: dict[str, str] = {}
    for number, line in _lines(path, "--queries"):
        qid, tab, text = line.partition("\t")
        where = f"{path} line {number}"
        if not tab or not qid.strip() or not text.strip():
            raise UsageError(f"{where}: expected '<query id> TAB <query text>', got {line!r}")
        if qid.strip() in queries:
            raise UsageError(f"{where}: query id {qid.strip()!r} appears twice")
        queries[qid.strip()] = text.strip()
    if not queries:
        raise UsageError(f"--queries: {path} has no queries")
    return queries


def read_judgments(path: Path) -> list[Any]:
    """TREC qrels as ir-measures `Qrel`s; a pair judged twice is an error."""
    qrels: dict[tuple[str, str], Any] = {}
    for number, line in _lines(path, "--judgments"):
        parts = line.split()
        where = f"{path} line {number}"
        if len(parts) != 4:
            raise UsageError(
                f"{where}: expected '<query id> <iteration> <document id> <grade>' "
                f"(4 columns), got {len(parts)}: {line!r}"
            )
        qid, _, docid, grade = parts
        try:
            relevance = int(grade)
        except ValueError:
            raise UsageError(f"{where}: grade {grade!r} is not an integer") from None
        if (qid, docid) in qrels:
            raise UsageError(f"{where}: document {docid!r} is judged twice for query {qid!r}")
        qrels[(qid, docid)] = ir_measures.Qrel(qid, docid, relevance)
    if not qrels:
        raise UsageError(f"--judgments: {path} has no judgments")
    return list(qrels.values())


def default_pipeline(t: Transport, index: str) -> tuple[str, dict[str, Any]]:
    for settings in os_api.index_settings(t, index).values():
        name = settings.get(os_api.DEFAULT_PIPELINE_SETTING)
        if name:
            pipeline = os_api.get_pipeline(t, str(name))
            if pipeline is None:
                raise SetupError(f"index {index!r}: its default pipeline {name!r} does not exist")
            return str(name), pipeline
    raise SetupError(
        f"index {index!r} has no default search pipeline, so nothing is reranked: "
        f"run `python -m es_integration opensearch setup --index {index}` first"
    )


def _processors(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    processors = pipeline.get("response_processors")
    return [p for p in processors if isinstance(p, dict)] if isinstance(processors, list) else []


def pipeline_fields(pipeline: dict[str, Any]) -> list[str]:
    """The fields a set-up pipeline reranks on; empty when it reads whole documents (`$`)."""
    for processor in _processors(pipeline):
        context = (processor.get("rerank") or {}).get("context") or {}
        if isinstance(context.get("document_fields"), list):
            return [str(name) for name in context["document_fields"]]
        for inputs in (processor.get("ml_inference") or {}).get("input_map") or []:
            selector = inputs.get("documents") if isinstance(inputs, dict) else None
            if isinstance(selector, str):
                # os_resources.document_selector: $['title','body','<score field>']
                return [name for name in re.findall(r"'([^']+)'", selector) if name != SCORE_FIELD]
    return []


def needs_ext_rerank(pipeline: dict[str, Any]) -> bool:
    """2.12-2.19.0 set-ups rerank with ml_opensearch, which reads the query from ext.rerank."""
    return any("ml_opensearch" in (p.get("rerank") or {}) for p in _processors(pipeline))


def query_body(text: str, fields: Sequence[str], ext_rerank: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": text, "fields": list(fields)}},
        "size": SIZE,
    }
    if ext_rerank:
        body["ext"] = {"rerank": {"query_context": {"query_text": text}}}
    return body


def search_ids(
    t: Transport, index: str, body: dict[str, Any], params: dict[str, str]
) -> tuple[list[str], float]:
    """The hits' `_id`s in the order the cluster returned them, and the call's milliseconds."""
    path = f"/{quote(index, safe='')}/_search"
    started = time.perf_counter()
    answer = call(t, "POST", path, params=params, body=body).body
    elapsed_ms = (time.perf_counter() - started) * 1000
    what = f"POST {path}"
    hits = member(member(answer, "hits", dict, what), "hits", list, what)
    return [text_id(as_object(hit, what), "_id", what) for hit in hits], elapsed_ms


def per_query_scores(qrels: list[Any], ranked: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    # Scores that strictly fall with the rank: the metric library keeps the cluster's order.
    run = [
        ir_measures.ScoredDoc(qid, docid, float(SIZE - rank))
        for qid, ids in ranked.items()
        for rank, docid in enumerate(ids)
    ]
    names = {measure: name for name, measure in MEASURES.items()}
    # A query with no hits is absent from the library's answer: it scores 0.
    values = {qid: dict.fromkeys(MEASURES, 0.0) for qid in ranked}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, run):
        values[metric.query_id][names[metric.measure]] = float(metric.value)
    return values


@dataclass
class EvalResult:
    index: str
    pipeline: str
    fields: list[str]
    query_body: dict[str, Any]
    judged_queries: int
    unjudged_queries: list[str]
    mean: dict[str, dict[str, float]]  # run -> measure -> mean over the judged queries
    search_ms_p50: dict[str, float]
    per_query: dict[str, dict[str, Any]] = field(default_factory=dict)


def evaluate(
    t: Transport,
    index: str,
    queries: dict[str, str],
    qrels: list[Any],
    fields: Sequence[str],
    progress: TextIO | None = None,
) -> EvalResult:
    pipeline_name, pipeline = default_pipeline(t, index)
    chosen = list(fields) or pipeline_fields(pipeline) or os_api.text_fields(t, index)
    if not chosen:
        raise UsageError(f"index {index!r} has no text fields to search; pass --fields")
    ext_rerank = needs_ext_rerank(pipeline)
    judged = {qrel.query_id for qrel in qrels}
    todo = {qid: text for qid, text in queries.items() if qid in judged}
    if not todo:
        raise UsageError("no query of --queries has a judgment in --judgments (query ids differ)")
    params = {"bm25": {"search_pipeline": "_none"}, "reranked": {}}
    ranked: dict[str, dict[str, list[str]]] = {run: {} for run in RUNS}
    took: dict[str, list[float]] = {run: [] for run in RUNS}
    bar = tqdm(todo.items(), desc=f"eval {index}", unit="query", file=progress or sys.stderr,
               disable=None)  # fmt: skip
    for qid, text in bar:
        body = query_body(text, chosen, ext_rerank)
        for run in RUNS:
            ranked[run][qid], elapsed_ms = search_ids(t, index, body, params[run])
            took[run].append(elapsed_ms)
    scores = {run: per_query_scores(qrels, ranked[run]) for run in RUNS}
    result = EvalResult(
        index=index,
        pipeline=pipeline_name,
        fields=chosen,
        query_body=query_body("<query text>", chosen, ext_rerank),
        judged_queries=len(todo),
        unjudged_queries=[qid for qid in queries if qid not in judged],
        mean={
            run: {
                name: statistics.fmean(s[name] for s in scores[run].values()) for name in MEASURES
            }
            for run in RUNS
        },
        search_ms_p50={run: statistics.median(took[run]) for run in RUNS},
    )
    for qid, text in todo.items():
        result.per_query[qid] = {
            "query": text,
            **{run: {**scores[run][qid], "top_ids": ranked[run][qid]} for run in RUNS},
        }
    return result


def table(result: EvalResult) -> str:
    lines = [
        f"{result.index}: {result.judged_queries} judged queries, multi_match over "
        f"{','.join(result.fields)}, top {SIZE}; reranked = pipeline {result.pipeline!r}",
        f"{'measure':<10} {'BM25 (_none)':>12} {'reranked':>10} {'change':>8}",
    ]
    for name in MEASURES:
        before, after = result.mean["bm25"][name], result.mean["reranked"][name]
        lines.append(f"{name:<10} {before:>12.4f} {after:>10.4f} {after - before:>+8.4f}")
    changes = [
        q["reranked"][CHART_MEASURE] - q["bm25"][CHART_MEASURE] for q in result.per_query.values()
    ]
    better, worse = sum(c > 0 for c in changes), sum(c < 0 for c in changes)
    lines.append(
        f"{CHART_MEASURE} per query: {better} better, {worse} worse, "
        f"{len(changes) - better - worse} unchanged; search p50 "
        f"{result.search_ms_p50['bm25']:.0f} ms plain, {result.search_ms_p50['reranked']:.0f} ms "
        "reranked"
    )
    if result.unjudged_queries:
        lines.append(f"skipped (no judgments): {', '.join(result.unjudged_queries)}")
    return "\n".join(lines)


def write_chart(result: EvalResult, path: Path) -> None:
    """Left: the three means, BM25 against reranked. Right: each query's nDCG@10 change, sorted."""
    changes = sorted(
        (
            (q["reranked"][CHART_MEASURE] - q["bm25"][CHART_MEASURE], qid)
            for qid, q in result.per_query.items()
        ),
        reverse=True,
    )
    figure, (means, per_query) = pyplot.subplots(
        1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2.2]}
    )
    positions = range(len(MEASURES))
    for offset, run, label, color in (
        (-0.2, "bm25", "BM25 (_none)", "#9aa3b5"),
        (0.2, "reranked", "reranked", "#2f6fde"),
    ):
        values = [result.mean[run][name] for name in MEASURES]
        bars = means.bar([p + offset for p in positions], values, 0.4, label=label, color=color)
        means.bar_label(bars, fmt="%.3f", fontsize=8)
    means.set_xticks(list(positions), list(MEASURES))
    means.set_ylim(0, 1.1)
    means.set_title(f"mean over {result.judged_queries} queries")
    means.legend(loc="upper left", fontsize=8)
    colors = ["#1a8a4a" if c > 0 else "#c0392b" if c < 0 else "#9aa3b5" for c, _ in changes]
    per_query.bar(range(len(changes)), [c for c, _ in changes], color=colors)
    per_query.axhline(0, color="#1d2330", linewidth=0.8)
    per_query.set_xticks(range(len(changes)), [qid for _, qid in changes], rotation=90, fontsize=7)
    per_query.set_ylabel(f"{CHART_MEASURE}: reranked - BM25")
    per_query.set_title("per-query change, sorted")
    figure.suptitle(f"{result.index}: BM25 top {SIZE} against the rerank pipeline")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def run(
    t: Transport,
    *,
    index: str,
    queries_path: Path,
    judgments_path: Path,
    fields: Sequence[str],
    results_path: Path,
    chart_path: Path,
    as_json: bool,
    out: TextIO,
) -> None:
    """Read the files (bad lines stop here, before any search), evaluate, write and print."""
    queries = read_queries(queries_path)
    qrels = read_judgments(judgments_path)
    result = evaluate(t, index, queries, qrels, fields)
    document = json.dumps(asdict(result), indent=2, ensure_ascii=False)
    results_path.write_text(document + "\n", encoding="utf-8")
    write_chart(result, chart_path)
    if as_json:
        print(document, file=out)
    else:
        print(f"{table(result)}\nwrote {results_path} and {chart_path}", file=out)
