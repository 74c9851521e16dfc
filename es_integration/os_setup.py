"""`opensearch setup`: the phases in order, each idempotent.

detect (os_detect) -> state record (os_record) -> cluster settings (os_settings) -> connectors
and models (os_models) -> search pipelines and `index.search.default_pipeline` (os_pipelines).
Teardown (os_teardown) walks it backwards.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from es_integration import os_api, os_models, os_pipelines, os_record, os_settings
from es_integration import os_resources as res
from es_integration.errors import SetupError, UsageError
from es_integration.options import Options, is_private_endpoint
from es_integration.os_detect import PREDICT_PERMISSION, ClusterFacts, detect
from es_integration.session import Session
from es_integration.versions import OS_CLIENT_CONFIG, OS_CONNECTOR_RETRY, OS_RETRY_ON_STATUS


def choose_fields(session: Session) -> Options:
    """The options with --fields, else with the `text` fields of the first index's mapping."""
    options = session.options
    if options.fields or not options.indices:
        return options
    index = options.indices[0]
    fields = os_api.text_fields(session.t, index)
    if not fields:
        raise UsageError(f"index {index!r} has no text field; pass --fields")
    session.report.note(
        f"reranking on {', '.join(fields)} (text fields of {index}); set --fields to choose"
    )
    return dataclasses.replace(options, fields=fields)


def setup(session: Session) -> None:
    sidecar_url = session.options.sidecar_url
    if not sidecar_url:
        raise UsageError(
            "setup needs --sidecar-url (the URL the cluster uses to reach the sidecar)"
        )
    facts = detect(session)
    session = dataclasses.replace(session, options=choose_fields(session))
    options, names = session.options, session.options.names
    settings = os_api.get_cluster_settings(session.t)
    private = (
        options.private_endpoint
        if options.private_endpoint is not None
        else is_private_endpoint(sidecar_url)
    )
    for flag, wanted in (
        ("--fields-by-language", options.fields_by_language),
        ("--rerank-window", options.rerank_window),
    ):
        if wanted and facts.mechanism != "ml_inference":
            raise UsageError(
                f"{flag} needs OpenSearch 2.19.1 or 3.0+ (the ml_inference pipeline); "
                f"this cluster is {facts.version}"
            )
    if options.rerank_window:
        if options.one_to_one:
            raise UsageError(
                "--rerank-window reorders a search's hits together: not with --one-to-one"
            )
        check_window_processors(session)
        check_result_window(session)
    record = os_record.ensure(session, facts, settings)
    os_settings.apply(session, record, settings, facts, private)
    rerank_model = _connector_and_model(
        session,
        record,
        res.rerank_connector(options, facts.version),
        names.rerank_model,
        "rerank through the sidecar, Cohere shape",
    )
    if not options.fields:
        # Nothing to rerank on yet: the connector and model serve _predict and custom pipelines.
        session.report.note("no --index/--fields: search pipelines not created; re-run with them")
        usage_notes(session, facts)
        return
    if facts.mechanism == "ml_inference":
        dsl_model = _connector_and_model(
            session,
            record,
            res.query_dsl_connector(options, facts.version),
            names.dsl_model,
            "rerank through the sidecar, query taken from the search request",
        )
        window_model = None
        if options.rerank_window:
            window_model = _connector_and_model(
                session,
                record,
                res.window_connector(options, facts.version),
                names.window_model,
                "rerank window: rewrites a search to fetch the top N hits from the first",
            )
        os_pipelines.ensure_pipeline(
            session,
            names.main_pipeline,
            res.ml_inference_pipeline(options, dsl_model, window_model),
        )
        if window_model is None:
            # Left by a run with --rerank-window: the pipeline no longer uses it.
            os_models.remove_models(session, record, [names.window_model])
            os_models.remove_connectors(session, [names.window_connector])
        os_pipelines.ensure_pipeline(
            session, names.ext_pipeline, res.ml_opensearch_pipeline(options, rerank_model)
        )
    else:
        os_pipelines.ensure_pipeline(
            session, names.main_pipeline, res.ml_opensearch_pipeline(options, rerank_model)
        )
        # Left by a run that chose ml_inference here (an older release on 2.18.0/2.19.0).
        os_pipelines.remove_pipeline(session, names.ext_pipeline)
        os_models.remove_models(session, record, [names.dsl_model, names.window_model])
        os_models.remove_connectors(session, [names.dsl_connector, names.window_connector])
    os_pipelines.attach_indices(session, record, names.main_pipeline)
    usage_notes(session, facts)


WINDOW_PROCESSORS = (("request", "oversample"), ("request", "ml_inference"),
                     ("response", "truncate_hits"))  # fmt: skip


def check_window_processors(session: Session) -> None:
    """The rerank window needs oversample and truncate_hits (the search-pipeline-common module,
    in every OpenSearch distribution but not in every hand-assembled node)."""
    request, response = os_api.search_processors(session.t)
    have = {"request": request, "response": response}
    missing = [f"{name} ({side})" for side, name in WINDOW_PROCESSORS if name not in have[side]]
    if missing:
        raise SetupError(
            f"--rerank-window needs the search processors {', '.join(missing)} on every node "
            "(module search-pipeline-common, part of the OpenSearch distribution)"
        )


# The sidecar's default RERANK_MAX_DOCUMENTS: a wider window is answered in BM25's order.
SIDECAR_MAX_DOCUMENTS = 1000


def check_result_window(session: Session) -> None:
    """A rewritten search fetches N hits: an index whose max_result_window is below N would
    fail every search, the first page included."""
    window = session.options.rerank_window
    assert window is not None
    for requested in session.options.indices:
        for index, flat in sorted(os_api.index_settings(session.t, requested).items()):
            limit = flat.get("index.max_result_window")
            if limit is not None and int(limit) < window:
                raise UsageError(
                    f"--rerank-window {window} is above index.max_result_window ({limit}) of "
                    f"index {index!r}: every search would fail; use a smaller window"
                )


def _connector_and_model(
    session: Session,
    record: os_record.StateRecord,
    connector: dict[str, Any],
    model_name: str,
    purpose: str,
) -> str:
    """The deployed model `model_name` on the wanted connector; returns the model id."""
    connector_id = os_models.ensure_connector(session, record, connector)
    return os_models.ensure_model(session, record, model_name, res.managed(purpose), connector_id)


def usage_notes(session: Session, facts: ClusterFacts) -> None:
    """What clients do now, and the limits of this version (also printed by status)."""
    options, report = session.options, session.report
    if facts.mechanism == "ml_inference":
        report.note(
            f"searches on {', '.join(options.indices) or 'indices you attach'} are reranked "
            "with no client change; bypass per request with ?search_pipeline=_none"
        )
        report.usage["explicit query text (e.g. knn/neural searches)"] = (
            f"POST /<index>/_search?search_pipeline={options.names.ext_pipeline}\n"
            + json.dumps(res.ext_rerank_example(options), indent=2)
        )
    else:
        report.note(
            f"OpenSearch {facts.version} cannot rerank unchanged clients (2.19.1 or 3.0+ can): "
            "clients MUST send ext.rerank to get reranked hits; the others get their usual hits"
        )
        report.usage["search body for reranked hits"] = res.ext_rerank_example(options)
    if facts.version < OS_CLIENT_CONFIG:
        report.note(
            f"OpenSearch {facts.version} has no connector client_config: calls to the sidecar "
            "have no timeout of their own and no retries (2.13+ has them)"
        )
    elif facts.version < OS_CONNECTOR_RETRY:
        report.note(f"OpenSearch {facts.version} never retries a connector call (2.15+ can)")
    elif facts.version < OS_RETRY_ON_STATUS:
        report.note(
            "connector retries fire only on the sidecar's throttling answers "
            "(x-amzn-ErrorType header) before OpenSearch 3.8"
        )
    if options.rerank_window:
        report.note(
            f"rerank window {options.rerank_window}: scroll searches are not supported (their "
            "first batch would be cut to size); a page past the last hit is padded with hits "
            "of earlier pages"
        )
        if options.rerank_window > SIDECAR_MAX_DOCUMENTS:
            report.note(
                f"the sidecar scores at most RERANK_MAX_DOCUMENTS ({SIDECAR_MAX_DOCUMENTS} by "
                "default) documents a call: raise it to the window, or every windowed page "
                "keeps BM25's order"
            )
    if facts.secured:
        report.note(
            f"security plugin: search users need the cluster permission {PREDICT_PERMISSION} "
            "(the pipeline calls the model as the searching user)"
        )
    if options.indices:
        report.note(
            "new indices (rollover, reindex) need index.search.default_pipeline too, e.g. "
            "in an index template"
        )
