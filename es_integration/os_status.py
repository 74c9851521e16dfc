"""`opensearch status`: each piece setup made, and a test rerank through each model."""

from __future__ import annotations

import json
import time
from typing import Any

from es_integration import os_api, os_record
from es_integration.errors import snippet
from es_integration.os_api import DEFAULT_PIPELINE_SETTING
from es_integration.os_detect import PREDICT_PERMISSION, detect
from es_integration.os_settings import as_list
from es_integration.session import Session
from es_integration.transport import Response, error_reason

TEST_QUERY = "how tall is the eiffel tower"
TEST_DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are rich in potassium."]


def status(session: Session) -> None:
    facts = detect(session)
    t, names, report = session.t, session.options.names, session.report
    if facts.secured:
        report.note(
            f"security plugin: search users need the cluster permission {PREDICT_PERMISSION}"
        )
    record = os_record.load(session)
    if record is None:
        report.add("model group", names.model_group, "absent", "setup has not run")
        report.ok = False
        return
    report.add("model group", names.model_group, "ok", id=record.group_id)
    settings = os_api.get_cluster_settings(t)
    for key, entries in record.state.added_list_entries.items():
        values = as_list(settings.effective(key))
        missing = [entry for entry in entries if entry not in values]
        report.add(
            "cluster setting",
            key,
            "failed" if missing else "ok",
            f"missing {missing}" if missing else "contains the sidecar URL regex",
        )
    # The pipeline side exists once setup had fields; then every piece is required.
    wired = bool(record.state.indices)
    inference = facts.mechanism == "ml_inference"
    main_pipeline = os_api.get_pipeline(t, names.main_pipeline)
    # A rerank window is the only request processor setup puts in the pipeline.
    windowed = bool(main_pipeline and main_pipeline.get("request_processors"))
    one_doc_per_call = False
    for name, required in (
        (names.rerank_connector, True),
        (names.dsl_connector, wired and inference),
        (names.window_connector, windowed),
    ):
        found = [c for c in os_api.find_connectors(t, name) if c.get("name") == name]
        if found and name == names.dsl_connector:
            one_doc_per_call = "[${parameters.documents}]" in _request_body(found[0])
        if found or required or (inference and name != names.window_connector):
            report.add(
                "connector",
                name,
                "ok" if found else ("failed" if required else "absent"),
                "" if found else "missing",
                id=str(found[0]["_id"]) if found else None,
            )
    models: dict[str, str] = {}
    for name, required in (
        (names.rerank_model, True),
        (names.dsl_model, wired and inference),
        (names.window_model, windowed),
    ):
        found = os_api.find_models(t, name, record.group_id)
        if not found:
            if required or (inference and name != names.window_model):
                report.add("model", name, "failed" if required else "absent", "missing")
            continue
        model_id = str(found[0]["_id"])
        state = os_api.model_state(t, model_id)
        report.add(
            "model", name, "ok" if state == "DEPLOYED" else "failed", str(state), id=model_id
        )
        models[name] = model_id
    pipelines = [names.main_pipeline] + ([names.ext_pipeline] if inference else [])
    for name in pipelines:
        body = main_pipeline if name == names.main_pipeline else os_api.get_pipeline(t, name)
        present = body is not None
        report.add(
            "search pipeline",
            name,
            "ok" if present else ("failed" if wired else "absent"),
            "" if present else "missing",
        )
    for index, change in sorted(record.state.indices.items()):
        attached = os_api.index_settings(t, index).get(index, {}).get(DEFAULT_PIPELINE_SETTING)
        report.add(
            "index setting",
            f"{index} {DEFAULT_PIPELINE_SETTING}",
            "ok" if attached == change.applied_pipeline else "failed",
            str(attached),
        )
    _test_predictions(session, models, one_doc_per_call)
    report.ok = not report.actions("failed")


def _request_body(connector: dict[str, Any]) -> str:
    actions = connector.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else {}
    return str(first.get("request_body", "")) if isinstance(first, dict) else ""


def _test_predictions(session: Session, models: dict[str, str], one_doc_per_call: bool) -> None:
    names = session.options.names
    if names.rerank_model in models:
        started = time.monotonic()
        response = os_api.predict_text_similarity(
            session.t, models[names.rerank_model], TEST_QUERY, TEST_DOCS
        )
        _report_prediction(session, "test rerank (_predict text_similarity)", [response], started)
    if names.dsl_model in models:
        # Documents as JSON arrays of text: the sidecar reads lists whatever fields the
        # connector lists, and ML Commons inserts JSON raw (a one_to_one template wraps it).
        batches = [[doc] for doc in TEST_DOCS] if one_doc_per_call else [TEST_DOCS]
        started = time.monotonic()
        responses = [
            os_api.predict_remote(
                session.t,
                models[names.dsl_model],
                {
                    "query": json.dumps({"match": {"text": TEST_QUERY}}),
                    "documents": json.dumps(batch),
                },
            )
            for batch in batches
        ]
        _report_prediction(session, "test rerank (_predict query DSL)", responses, started)
    if names.window_model in models:
        started = time.monotonic()
        search = {"query": {"match": {"text": TEST_QUERY}}, "size": 10}
        response = os_api.predict_remote(
            session.t, models[names.window_model], {"search": json.dumps(search)}
        )
        plan = window_plan(response.body) if response.ok else None
        elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
        session.report.add(
            "test rerank window (_predict)",
            "",
            "ok" if plan is not None and plan.get("skipped") is None else "failed",
            f"first page rewritten to {plan} in {elapsed}"
            if plan is not None
            else f"HTTP {response.status}: {snippet(response.body)}",
        )


def _report_prediction(
    session: Session, what: str, responses: list[Response], started: float
) -> None:
    elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
    scores: list[float] = []
    for one in responses:
        if not one.ok:
            detail = f"HTTP {one.status}: {error_reason(one.body)}"
            session.report.add(what, "", "failed", detail)
            return
        found = prediction_scores(one.body)
        if found is None:
            detail = f"no scores in the answer: {snippet(one.body)}"
            session.report.add(what, "", "failed", detail)
            return
        scores.extend(found)
    good = len(scores) == len(TEST_DOCS)
    session.report.add(
        what,
        "",
        "ok" if good else "failed",
        f"scores {[round(s, 4) for s in scores]} in {elapsed}",
    )


def window_plan(body: Any) -> dict[str, Any] | None:
    """The sidecar's rewrite (`from`, `size`) from a _predict answer of the window model."""
    try:
        data_map = body["inference_results"][0]["output"][0]["dataAsMap"]
        return {key: data_map[key] for key in ("from", "size", "skipped")}
    except (KeyError, TypeError, IndexError):
        return None


def prediction_scores(body: Any) -> list[float] | None:
    """Scores from a _predict answer: Cohere post-process tensors, or our `scores` map; None
    when the answer does not have that shape."""
    try:
        scores: list[float] = []
        for result in body["inference_results"]:
            for output in result["output"]:
                data_map = output.get("dataAsMap")
                if isinstance(data_map, dict) and isinstance(data_map.get("scores"), list):
                    scores.extend(float(s) for s in data_map["scores"])
                elif isinstance(output.get("data"), list) and output["data"]:
                    scores.append(float(output["data"][0]))
        return scores
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
