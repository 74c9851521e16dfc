"""`opensearch teardown`: setup backwards. Only objects whose description carries our marker
are removed, and only settings the state record says setup changed are restored."""

from __future__ import annotations

from typing import Any

from es_integration import os_api, os_models, os_pipelines, os_record
from es_integration.errors import Refused
from es_integration.os_api import DEFAULT_PIPELINE_SETTING
from es_integration.os_detect import detect
from es_integration.os_settings import as_list
from es_integration.session import Session
from es_integration.state import SetupState
from es_integration.transport import ApiError


def teardown(session: Session) -> None:
    detect(session)
    t, names, report = session.t, session.options.names, session.report
    if not session.options.dry_run and not session.confirm(
        f"Remove the rerank pipelines, models, connectors and model group {names.model_group!r} "
        "and restore the settings setup changed?"
    ):
        raise Refused("teardown needs confirmation; re-run with --yes")
    record = os_record.load(session)
    state = record.state if record is not None else SetupState()
    _restore_indices(session, state)
    for name in (names.main_pipeline, names.ext_pipeline):
        os_pipelines.remove_pipeline(session, name)
    if record is not None:
        os_models.remove_models(session, record, list(names.models))
    os_models.remove_connectors(session, list(names.connectors))
    _restore_cluster_settings(session, state)
    if record is not None:
        os_api.delete_model_group(t, record.group_id)
        report.add("model group", names.model_group, "deleted", id=record.group_id)
    if not report.changes:
        report.note("nothing to remove: setup has not run with these names")


def _restore_indices(session: Session, state: SetupState) -> None:
    for index, change in sorted(state.indices.items()):
        label = f"{index} {DEFAULT_PIPELINE_SETTING}"
        try:
            flat = os_api.index_settings(session.t, index).get(index, {})
        except ApiError as exc:
            if exc.response.status != 404:
                raise
            session.report.add("index setting", label, "skipped", "index gone")
            continue
        current = flat.get(DEFAULT_PIPELINE_SETTING)
        if current != change.applied_pipeline:
            detail = f"now {current!r}, changed after setup; left alone"
            session.report.add("index setting", label, "skipped", detail)
            continue
        os_api.put_index_default_pipeline(session.t, index, change.previous_pipeline)
        previous = change.previous_pipeline
        session.report.add(
            "index setting", label, "restored", f"back to {previous}" if previous else "unset"
        )


def _restore_cluster_settings(session: Session, state: SetupState) -> None:
    if not state.settings:
        return
    settings = os_api.get_cluster_settings(session.t)
    for key, change in sorted(state.settings.items()):
        source = settings.transient if change.scope == "transient" else settings.persistent
        current = source.get(key)
        added = state.added_list_entries.get(key, [])
        if _same(current, change.applied):
            os_api.put_cluster_settings(session.t, change.scope, {key: change.previous})
            detail = "unset" if change.previous is None else f"back to {change.previous}"
            session.report.add("cluster setting", key, "restored", detail)
        elif added and isinstance(current, list) and any(e in current for e in added):
            # Changed since setup: take out only what we added.
            remaining = [entry for entry in current if entry not in added]
            os_api.put_cluster_settings(session.t, change.scope, {key: remaining})
            session.report.add("cluster setting", key, "restored", f"removed {added}")
        else:
            session.report.add("cluster setting", key, "skipped", "changed after setup; left alone")


def _same(current: Any, applied: Any) -> bool:
    if isinstance(applied, bool):
        return str(current).lower() == str(applied).lower()
    if isinstance(applied, list):
        return as_list(current) == applied
    return bool(current == applied)
