"""OpenSearch setup, status and teardown: find by name, compare, change only what differs.

Setup order (each step idempotent): version and plugins -> model group (holds the state record)
-> cluster settings -> connectors -> models (registered, deployed, waited for) -> search pipelines
-> `index.search.default_pipeline`. Teardown walks it backwards and touches only objects whose
description carries our marker, and settings recorded in the state.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from es_integration import os_api
from es_integration import os_resources as res
from es_integration.options import (
    Options,
    UsageError,
    is_private_endpoint,
    token_fingerprint,
    trusted_endpoint_regex,
)
from es_integration.report import Report
from es_integration.state import IndexChange, SettingChange, SetupState
from es_integration.transport import ApiError, Transport, error_reason
from es_integration.versions import OS_MINIMUM, OS_PRIVATE_IP_SETTING, OS_RETRY_ON_STATUS, Version

TRUSTED_REGEX = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
PRIVATE_REGEX = "plugins.ml_commons.trusted_connector_private_endpoints_regex"
ACCESS_CONTROL = "plugins.ml_commons.model_access_control_enabled"
DEFAULT_PIPELINE = "index.search.default_pipeline"

ML_PLUGIN = "opensearch-ml"
NEURAL_PLUGIN = "opensearch-neural-search"
SECURITY_PLUGIN = "opensearch-security"

DEPLOYED_STATES = frozenset({"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING", "DEPLOY_FAILED"})

Confirm = Callable[[str], bool]


class SetupError(Exception):
    """The cluster cannot be set up as asked; the message says why and what to do."""


class Refused(Exception):
    """A change needs confirmation (--yes) that was not given."""


@dataclass
class Run:
    t: Transport
    options: Options
    report: Report
    confirm: Confirm
    version: Version = field(default_factory=lambda: Version(0, 0))
    mechanism: res.Mechanism = "ml_opensearch"
    plugins: frozenset[str] = frozenset()
    group_id: str | None = None
    state: SetupState = field(default_factory=SetupState)
    saved_state: str = ""


# --- detection ------------------------------------------------------------------------------


def detect(run: Run) -> None:
    info = os_api.cluster_info(run.t)
    if info.distribution != "opensearch":
        raise SetupError(
            f"this cluster reports distribution {info.distribution!r}, not OpenSearch; "
            "for Elasticsearch use `python -m es_integration elasticsearch ...`"
        )
    run.version = Version.parse(info.version)
    run.plugins = info.plugins
    if run.version < OS_MINIMUM:
        raise SetupError(
            f"OpenSearch {run.version} is too old: reranking through the sidecar needs "
            f"OpenSearch {OS_MINIMUM.major}.{OS_MINIMUM.minor} or later (neural-search `rerank` "
            "processor with `ml_opensearch`)"
        )
    missing = [p for p in (ML_PLUGIN, NEURAL_PLUGIN) if p not in info.plugins]
    if missing:
        raise SetupError(
            f"missing plugin(s) {', '.join(missing)}: the rerank pipeline needs ml-commons "
            "and neural-search"
        )
    run.mechanism = res.mechanism_for(run.version)
    run.report.cluster = {
        "version": str(run.version),
        "mechanism": (
            "ml_inference + rerank by_field (plain query DSL is reranked)"
            if run.mechanism == "ml_inference"
            else "rerank ml_opensearch (clients must send ext.rerank; others pass through)"
        ),
    }


# --- state record ---------------------------------------------------------------------------


def _find_group(run: Run) -> dict[str, Any] | None:
    name = run.options.names.model_group
    groups = os_api.find_model_groups(run.t, name)
    for group in groups:
        if group.get("name") == name:
            if not res.is_managed(group.get("description")):
                raise SetupError(
                    f"an ML model group named {name!r} exists and was not made by this tool; "
                    "choose another --name"
                )
            return group
    return None


def _save_state(run: Run) -> None:
    description = run.state.to_description()
    if description == run.saved_state or run.group_id is None:
        return
    os_api.update_model_group(run.t, run.group_id, description)
    run.saved_state = description


def ensure_model_group(run: Run, settings: os_api.ClusterSettings) -> None:
    name = run.options.names.model_group
    group = _find_group(run)
    if group is not None:
        run.group_id = str(group["_id"])
        run.saved_state = str(group.get("description", ""))
        run.state = SetupState.from_description(run.saved_state)
        run.report.add("model group", name, "reused", id=run.group_id)
        return
    access_control = str(settings.effective(ACCESS_CONTROL)).lower() == "true"
    public = access_control and SECURITY_PLUGIN in run.plugins
    run.saved_state = run.state.to_description()
    run.group_id = os_api.register_model_group(run.t, name, run.saved_state, public)
    run.report.add(
        "model group",
        name,
        "created",
        "access_mode public (search users run its models)" if public else "",
        id=run.group_id,
    )


# --- cluster settings -----------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def _set(run: Run, settings: os_api.ClusterSettings, key: str, value: Any, why: str) -> None:
    scope = settings.scope_of(key)
    source = settings.transient if scope == "transient" else settings.persistent
    if key not in run.state.settings:
        # Recorded before the write, so an interrupted setup can still be torn down.
        run.state.settings[key] = SettingChange(scope, source.get(key), value)
    else:
        run.state.settings[key].applied = value
    _save_state(run)
    os_api.put_cluster_settings(run.t, scope, {key: value})
    run.report.add("cluster setting", key, "updated", why)


def _add_list_entry(
    run: Run, settings: os_api.ClusterSettings, key: str, entry: str, why: str
) -> None:
    current = _as_list(settings.effective(key))
    if entry in current:
        run.report.add("cluster setting", key, "unchanged", f"already contains {entry}")
        return
    run.state.added_list_entries.setdefault(key, [])
    if entry not in run.state.added_list_entries[key]:
        run.state.added_list_entries[key].append(entry)
    _set(run, settings, key, [*current, entry], why)


def apply_cluster_settings(run: Run, settings: os_api.ClusterSettings, private: bool) -> None:
    assert run.options.sidecar_url is not None
    regex = trusted_endpoint_regex(run.options.sidecar_url)
    _add_list_entry(run, settings, TRUSTED_REGEX, regex, f"added {regex} (kept the others)")
    if not private:
        return
    if not settings.exists(PRIVATE_IP):
        raise SetupError(
            f"the sidecar URL is a private or in-cluster address, and OpenSearch {run.version} "
            f"always refuses those for connectors (setting {PRIVATE_IP} arrived in "
            f"{OS_PRIVATE_IP_SETTING}); expose the sidecar on a public address or upgrade"
        )
    if str(settings.effective(PRIVATE_IP)).lower() == "true":
        run.report.add("cluster setting", PRIVATE_IP, "unchanged", "already true")
    else:
        _set(run, settings, PRIVATE_IP, True, "the sidecar URL is private/in-cluster")
    if settings.exists(PRIVATE_REGEX):
        # An empty list lets every private endpoint through; adding ours to an empty list
        # would start refusing other private connectors, so only append to a non-empty one.
        if _as_list(settings.effective(PRIVATE_REGEX)):
            _add_list_entry(run, settings, PRIVATE_REGEX, regex, f"added {regex}")
        else:
            run.report.add("cluster setting", PRIVATE_REGEX, "unchanged", "empty: allows all")


# --- connectors and models ------------------------------------------------------------------

_ACTION_KEYS = (
    "action_type",
    "method",
    "url",
    "headers",
    "request_body",
    "pre_process_function",
    "post_process_function",
)


def _comparable(connector: dict[str, Any], config_keys: list[str]) -> dict[str, Any]:
    """The parts of a connector we set, in the shape GET returns them (credential is hidden)."""
    actions = []
    for action in connector.get("actions") or []:
        view = {key: action[key] for key in _ACTION_KEYS if action.get(key) is not None}
        for key in ("action_type", "method"):
            if key in view:
                view[key] = str(view[key]).upper()
        actions.append(view)
    config = connector.get("client_config") or {}
    return {
        "description": connector.get("description"),
        "protocol": connector.get("protocol"),
        "parameters": connector.get("parameters") or {},
        "client_config": {key: _norm(config.get(key)) for key in config_keys},
        "actions": actions,
    }


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _models_using(run: Run, connector_id: str) -> list[dict[str, Any]]:
    names = (run.options.names.rerank_model, run.options.names.dsl_model)
    found = []
    for name in names:
        for model in os_api.find_models(run.t, name, str(run.group_id)):
            if model.get("connector_id") == connector_id:
                found.append(model)
    return found


def ensure_connector(run: Run, desired: dict[str, Any]) -> str:
    name = str(desired["name"])
    fingerprint = token_fingerprint(run.options.sidecar_token, name)
    existing = [c for c in os_api.find_connectors(run.t, name) if c.get("name") == name]
    if len(existing) > 1:
        raise SetupError(f"{len(existing)} connectors are named {name!r}; delete the extras")
    if not existing:
        connector_id = os_api.create_connector(run.t, desired)
        run.state.token_fingerprints[name] = fingerprint
        _save_state(run)
        run.report.add("connector", name, "created", desired["actions"][0]["url"], id=connector_id)
        return connector_id
    connector_id = str(existing[0]["_id"])
    if not res.is_managed(existing[0].get("description")):
        raise SetupError(
            f"a connector named {name!r} exists and was not made by this tool; "
            "choose another --name or --connector-name"
        )
    current = os_api.get_connector(run.t, connector_id) or {}
    keys = list(desired["client_config"])
    differs = _comparable(current, keys) != _comparable(desired, keys)
    token_changed = run.state.token_fingerprints.get(name) != fingerprint
    if not differs and not token_changed:
        run.report.add("connector", name, "unchanged", id=connector_id)
        return connector_id
    # ML Commons refuses to update a connector that a deployed model uses.
    deployed = [
        m for m in _models_using(run, connector_id) if m.get("model_state") in DEPLOYED_STATES
    ]
    if deployed and not run.confirm(
        f"Updating connector {name!r} undeploys {len(deployed)} model(s) for a few seconds; "
        "searches meanwhile return un-reranked hits. Continue?"
    ):
        raise Refused(f"connector {name!r} differs from the wanted one; re-run with --yes")
    for model in deployed:
        os_api.undeploy_model(run.t, str(model["_id"]), run.options.wait_timeout_s)
        run.report.add("model", str(model.get("name")), "updated", "undeployed", id=model["_id"])
    body = {k: v for k, v in desired.items() if k != "name"}
    os_api.update_connector(run.t, connector_id, body)
    run.state.token_fingerprints[name] = fingerprint
    _save_state(run)
    what = [w for w, flag in (("settings", differs), ("token", token_changed)) if flag]
    run.report.add("connector", name, "updated", " and ".join(what), id=connector_id)
    return connector_id


def ensure_model(run: Run, name: str, description: str, connector_id: str) -> str:
    assert run.group_id is not None
    models = os_api.find_models(run.t, name, run.group_id)
    model_id: str | None = None
    for model in models:
        if model.get("connector_id") == connector_id and model_id is None:
            model_id = str(model["_id"])
        else:  # points at another connector (made by an older run): replace it
            if model.get("model_state") in DEPLOYED_STATES:
                os_api.undeploy_model(run.t, str(model["_id"]), run.options.wait_timeout_s)
            os_api.delete_model(run.t, str(model["_id"]))
            run.report.add("model", name, "deleted", "stale connector", id=str(model["_id"]))
    if model_id is None:
        model_id = os_api.register_model(
            run.t, name, description, run.group_id, connector_id, run.options.wait_timeout_s
        )
        run.report.add("model", name, "created", "registered", id=model_id)
    state = (os_api.get_model(run.t, model_id) or {}).get("model_state")
    if state == "DEPLOYED":
        run.report.add("model", name, "reused", "deployed", id=model_id)
        return model_id
    try:
        os_api.deploy_model(run.t, model_id, run.options.wait_timeout_s)
    except os_api.DeployError as exc:
        raise SetupError(str(exc)) from None
    run.report.add("model", name, "updated", "deployed", id=model_id)
    return model_id


# --- pipelines and indices ------------------------------------------------------------------


def ensure_pipeline(run: Run, name: str, desired: dict[str, Any]) -> None:
    current = os_api.get_pipeline(run.t, name)
    if current is not None and not res.is_managed(current.get("description")):
        raise SetupError(
            f"a search pipeline named {name!r} exists and was not made by this tool; "
            "choose another --pipeline-name"
        )
    if current == desired:
        run.report.add("search pipeline", name, "unchanged")
        return
    os_api.put_pipeline(run.t, name, desired)
    run.report.add("search pipeline", name, "created" if current is None else "updated")


def attach_indices(run: Run, pipeline: str) -> None:
    for requested in run.options.indices:
        concrete = os_api.index_settings(run.t, requested)
        for index, flat in sorted(concrete.items()):
            current = flat.get(DEFAULT_PIPELINE)
            if current == pipeline:
                run.report.add("index setting", f"{index} {DEFAULT_PIPELINE}", "unchanged")
                continue
            ours = {run.options.names.main_pipeline, run.options.names.ext_pipeline}
            if (
                current not in (None, "_none")
                and current not in ours
                and not run.confirm(
                    f"Index {index!r} uses search pipeline {current!r} by default; replace it "
                    f"with {pipeline!r}? (teardown puts it back)"
                )
            ):
                raise Refused(f"index {index!r} has default pipeline {current!r}; use --yes")
            if index not in run.state.indices:
                run.state.indices[index] = IndexChange(current, pipeline)
            else:
                run.state.indices[index].applied_pipeline = pipeline
            _save_state(run)
            os_api.put_index_default_pipeline(run.t, index, pipeline)
            detail = f"was {current}" if current else "was unset"
            run.report.add("index setting", f"{index} {DEFAULT_PIPELINE}", "updated", detail)
            if index != requested:
                run.report.note(f"{requested!r} expanded to index {index!r}")


# --- commands -------------------------------------------------------------------------------


def _choose_fields(run: Run) -> None:
    """--fields, else the `text` fields of the first index's mapping."""
    if run.options.fields or not run.options.indices:
        return
    index = run.options.indices[0]
    fields = os_api.text_fields(run.t, index)
    if not fields:
        raise UsageError(f"index {index!r} has no text field; pass --fields")
    run.options = dataclasses.replace(run.options, fields=fields)
    run.report.note(
        f"reranking on {', '.join(fields)} (text fields of {index}); set --fields to choose"
    )


def setup(run: Run) -> None:
    sidecar_url = run.options.sidecar_url
    if not sidecar_url:
        raise UsageError(
            "setup needs --sidecar-url (the URL the cluster uses to reach the sidecar)"
        )
    detect(run)
    _choose_fields(run)
    options = run.options
    settings = os_api.get_cluster_settings(run.t)
    private = (
        options.private_endpoint
        if options.private_endpoint is not None
        else is_private_endpoint(sidecar_url)
    )
    ensure_model_group(run, settings)
    apply_cluster_settings(run, settings, private)
    rerank_connector = ensure_connector(run, res.rerank_connector(options, run.version))
    rerank_model = ensure_model(
        run,
        options.names.rerank_model,
        res.managed("rerank through the sidecar, Cohere shape"),
        rerank_connector,
    )
    if not options.fields:
        # Nothing to rerank on yet: the connector and model serve _predict and custom pipelines.
        run.report.note("no --index/--fields: search pipelines not created; re-run with them")
        _usage(run)
        return
    if run.mechanism == "ml_inference":
        dsl_connector = ensure_connector(run, res.query_dsl_connector(options, run.version))
        dsl_model = ensure_model(
            run,
            options.names.dsl_model,
            res.managed("rerank through the sidecar, query taken from the search request"),
            dsl_connector,
        )
        ensure_pipeline(
            run, options.names.main_pipeline, res.ml_inference_pipeline(options, dsl_model)
        )
        ensure_pipeline(
            run, options.names.ext_pipeline, res.ml_opensearch_pipeline(options, rerank_model)
        )
    else:
        ensure_pipeline(
            run, options.names.main_pipeline, res.ml_opensearch_pipeline(options, rerank_model)
        )
    attach_indices(run, options.names.main_pipeline)
    _usage(run)


def _usage(run: Run) -> None:
    names = run.options.names
    if run.mechanism == "ml_inference":
        run.report.note(
            f"searches on {', '.join(run.options.indices) or 'indices you attach'} are reranked "
            "with no client change; bypass per request with ?search_pipeline=_none"
        )
        run.report.usage["explicit query text (e.g. knn/neural searches)"] = (
            f"POST /<index>/_search?search_pipeline={names.ext_pipeline}\n"
            + json.dumps(res.ext_rerank_example(run.options), indent=2)
        )
    else:
        run.report.note(
            f"OpenSearch {run.version} cannot read the query from the request (needs 2.18): "
            "clients that add ext.rerank get reranked hits, the others get their usual hits"
        )
        run.report.usage["search body for reranked hits"] = res.ext_rerank_example(run.options)
    if run.version < OS_RETRY_ON_STATUS:
        run.report.note(
            "connector retries fire only on the sidecar's throttling answers "
            "(x-amzn-ErrorType header) before OpenSearch 3.8"
        )
    if run.options.indices:
        run.report.note(
            "new indices (rollover, reindex) need index.search.default_pipeline too, e.g. "
            "in an index template"
        )


def status(run: Run) -> None:
    detect(run)
    names = run.options.names
    group = _find_group(run)
    if group is None:
        run.report.add("model group", names.model_group, "absent", "setup has not run")
        run.report.ok = False
        return
    run.group_id = str(group["_id"])
    run.state = SetupState.from_description(group.get("description"))
    run.report.add("model group", names.model_group, "ok", id=run.group_id)
    settings = os_api.get_cluster_settings(run.t)
    for key, entries in run.state.added_list_entries.items():
        values = _as_list(settings.effective(key))
        missing = [entry for entry in entries if entry not in values]
        run.report.add(
            "cluster setting",
            key,
            "failed" if missing else "ok",
            f"missing {missing}" if missing else "contains the sidecar URL regex",
        )
    # The pipeline side exists once setup had fields; then every piece is required.
    wired = bool(run.state.indices)
    inference = run.mechanism == "ml_inference"
    one_doc_per_call = False
    for name, required in (
        (names.rerank_connector, True),
        (names.dsl_connector, wired and inference),
    ):
        found = [c for c in os_api.find_connectors(run.t, name) if c.get("name") == name]
        if found and name == names.dsl_connector:
            body = str((found[0].get("actions") or [{}])[0].get("request_body", ""))
            one_doc_per_call = "[${parameters.documents}]" in body
        if found or required or inference:
            run.report.add(
                "connector",
                name,
                "ok" if found else ("failed" if required else "absent"),
                "" if found else "missing",
                id=found[0]["_id"] if found else None,
            )
    models: dict[str, str] = {}
    for name, required in ((names.rerank_model, True), (names.dsl_model, wired and inference)):
        found = os_api.find_models(run.t, name, run.group_id)
        if not found:
            if required or inference:
                run.report.add("model", name, "failed" if required else "absent", "missing")
            continue
        model_id = str(found[0]["_id"])
        state = (os_api.get_model(run.t, model_id) or {}).get("model_state")
        run.report.add(
            "model", name, "ok" if state == "DEPLOYED" else "failed", str(state), id=model_id
        )
        models[name] = model_id
    pipelines = [names.main_pipeline] + ([names.ext_pipeline] if inference else [])
    for name in pipelines:
        present = os_api.get_pipeline(run.t, name) is not None
        run.report.add(
            "search pipeline",
            name,
            "ok" if present else ("failed" if wired else "absent"),
            "" if present else "missing",
        )
    for index, change in sorted(run.state.indices.items()):
        flat = os_api.index_settings(run.t, index).get(index, {})
        attached = flat.get(DEFAULT_PIPELINE)
        run.report.add(
            "index setting",
            f"{index} {DEFAULT_PIPELINE}",
            "ok" if attached == change.applied_pipeline else "failed",
            str(attached),
        )
    _test_predictions(run, models, one_doc_per_call)
    run.report.ok = not run.report.actions("failed")


TEST_QUERY = "how tall is the eiffel tower"
TEST_DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are rich in potassium."]


def _test_predictions(run: Run, models: dict[str, str], one_doc_per_call: bool) -> None:
    names = run.options.names
    if names.rerank_model in models:
        started = time.monotonic()
        response = os_api.predict_text_similarity(
            run.t, models[names.rerank_model], TEST_QUERY, TEST_DOCS
        )
        _report_prediction(run, "test rerank (_predict text_similarity)", response, started)
    if names.dsl_model in models:
        # Documents as JSON arrays of text: the sidecar reads lists whatever fields the
        # connector lists, and ML Commons inserts JSON raw (a one_to_one template wraps it).
        batches = [[doc] for doc in TEST_DOCS] if one_doc_per_call else [TEST_DOCS]
        started = time.monotonic()
        responses = [
            os_api.predict_remote(
                run.t,
                models[names.dsl_model],
                {
                    "query": json.dumps({"match": {"text": TEST_QUERY}}),
                    "documents": json.dumps(batch),
                },
            )
            for batch in batches
        ]
        _report_prediction(run, "test rerank (_predict query DSL)", responses, started)


def _report_prediction(run: Run, what: str, response: Any, started: float) -> None:
    elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
    responses = response if isinstance(response, list) else [response]
    scores: list[float] = []
    for one in responses:
        if not one.ok:
            run.report.add(what, "", "failed", f"HTTP {one.status}: {error_reason(one.body)}")
            return
        scores.extend(prediction_scores(one.body))
    good = len(scores) == len(TEST_DOCS)
    run.report.add(
        what,
        "",
        "ok" if good else "failed",
        f"scores {[round(s, 4) for s in scores]} in {elapsed}",
    )


def prediction_scores(body: Any) -> list[float]:
    """Scores from a _predict answer: Cohere post-process tensors, or our `scores` map."""
    scores: list[float] = []
    for result in body.get("inference_results", []) if isinstance(body, dict) else []:
        for output in result.get("output", []):
            data_map = output.get("dataAsMap")
            if isinstance(data_map, dict) and isinstance(data_map.get("scores"), list):
                scores.extend(float(s) for s in data_map["scores"])
            elif isinstance(output.get("data"), list) and output["data"]:
                scores.append(float(output["data"][0]))
    return scores


def teardown(run: Run) -> None:
    detect(run)
    names = run.options.names
    if not run.options.dry_run and not run.confirm(
        f"Remove the rerank pipelines, models, connectors and model group {names.model_group!r} "
        "and restore the settings setup changed?"
    ):
        raise Refused("teardown needs confirmation; re-run with --yes")
    group = _find_group(run)
    if group is not None:
        run.group_id = str(group["_id"])
        run.saved_state = str(group.get("description", ""))
        run.state = SetupState.from_description(run.saved_state)
    _restore_indices(run)
    for name in (names.main_pipeline, names.ext_pipeline):
        current = os_api.get_pipeline(run.t, name)
        if current is None:
            continue
        if not res.is_managed(current.get("description")):
            run.report.add("search pipeline", name, "skipped", "not made by this tool")
            continue
        users = os_api.indices_using_pipeline(run.t, name)
        if users:
            # Searches on those indices would fail without it (or its models): stop here.
            raise SetupError(
                f"search pipeline {name!r} is the default pipeline of {users}, which setup did "
                "not attach; set their index.search.default_pipeline to another pipeline (or "
                "null) and run teardown again"
            )
        os_api.delete_pipeline(run.t, name)
        run.report.add("search pipeline", name, "deleted")
    connector_ids = {}
    for name in (names.rerank_connector, names.dsl_connector):
        for connector in os_api.find_connectors(run.t, name):
            if connector.get("name") == name and res.is_managed(connector.get("description")):
                connector_ids[name] = str(connector["_id"])
    if run.group_id is not None:
        for name in (names.rerank_model, names.dsl_model):
            for model in os_api.find_models(run.t, name, run.group_id):
                model_id = str(model["_id"])
                if model.get("model_state") in DEPLOYED_STATES:
                    os_api.undeploy_model(run.t, model_id, run.options.wait_timeout_s)
                os_api.delete_model(run.t, model_id)
                run.report.add("model", name, "deleted", id=model_id)
    for name, connector_id in connector_ids.items():
        os_api.delete_connector(run.t, connector_id)
        run.report.add("connector", name, "deleted", id=connector_id)
    _restore_cluster_settings(run)
    if run.group_id is not None:
        os_api.delete_model_group(run.t, run.group_id)
        run.report.add("model group", names.model_group, "deleted", id=run.group_id)
    if not run.report.changes:
        run.report.note("nothing to remove: setup has not run with these names")


def _restore_indices(run: Run) -> None:
    for index, change in sorted(run.state.indices.items()):
        try:
            flat = os_api.index_settings(run.t, index).get(index, {})
        except ApiError as exc:
            if exc.response.status != 404:
                raise
            run.report.add("index setting", f"{index} {DEFAULT_PIPELINE}", "skipped", "index gone")
            continue
        current = flat.get(DEFAULT_PIPELINE)
        if current != change.applied_pipeline:
            run.report.add(
                "index setting",
                f"{index} {DEFAULT_PIPELINE}",
                "skipped",
                f"now {current!r}, changed after setup; left alone",
            )
            continue
        os_api.put_index_default_pipeline(run.t, index, change.previous_pipeline)
        run.report.add(
            "index setting",
            f"{index} {DEFAULT_PIPELINE}",
            "restored",
            f"back to {change.previous_pipeline}" if change.previous_pipeline else "unset",
        )


def _restore_cluster_settings(run: Run) -> None:
    if not run.state.settings:
        return
    settings = os_api.get_cluster_settings(run.t)
    for key, change in sorted(run.state.settings.items()):
        source = settings.transient if change.scope == "transient" else settings.persistent
        current = source.get(key)
        added = run.state.added_list_entries.get(key, [])
        if _same(current, change.applied):
            os_api.put_cluster_settings(run.t, change.scope, {key: change.previous})
            detail = "unset" if change.previous is None else f"back to {change.previous}"
            run.report.add("cluster setting", key, "restored", detail)
        elif added and isinstance(current, list) and any(e in current for e in added):
            # Changed since setup: take out only what we added.
            remaining = [entry for entry in current if entry not in added]
            os_api.put_cluster_settings(run.t, change.scope, {key: remaining})
            run.report.add("cluster setting", key, "restored", f"removed {added}")
        else:
            run.report.add("cluster setting", key, "skipped", "changed after setup; left alone")


def _same(current: Any, applied: Any) -> bool:
    if isinstance(applied, bool):
        return str(current).lower() == str(applied).lower()
    if isinstance(applied, list):
        return _as_list(current) == applied
    return bool(current == applied)
