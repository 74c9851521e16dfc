"""Search pipelines phase: the pipelines themselves, and `index.search.default_pipeline` on each
index so that unchanged clients go through them."""

from __future__ import annotations

from typing import Any

from es_integration import os_api
from es_integration import os_resources as res
from es_integration.errors import Refused, SetupError
from es_integration.os_api import DEFAULT_PIPELINE_SETTING
from es_integration.os_record import StateRecord
from es_integration.session import Session
from es_integration.state import IndexChange


def ensure_pipeline(session: Session, name: str, desired: dict[str, Any]) -> None:
    current = os_api.get_pipeline(session.t, name)
    if current is not None and not res.is_managed(current.get("description")):
        raise SetupError(
            f"a search pipeline named {name!r} exists and was not made by this tool; "
            "choose another --pipeline-name"
        )
    if current == desired:
        session.report.add("search pipeline", name, "unchanged")
        return
    os_api.put_pipeline(session.t, name, desired)
    session.report.add("search pipeline", name, "created" if current is None else "updated")


def remove_pipeline(session: Session, name: str) -> None:
    """Delete the pipeline `name` if this tool made it; refuses while an index setup did not
    attach uses it by default (its searches would fail)."""
    current = os_api.get_pipeline(session.t, name)
    if current is None:
        return
    if not res.is_managed(current.get("description")):
        session.report.add("search pipeline", name, "skipped", "not made by this tool")
        return
    users = os_api.indices_using_pipeline(session.t, name)
    if users:
        raise SetupError(
            f"search pipeline {name!r} is the default pipeline of {users}, which setup did "
            "not attach; set their index.search.default_pipeline to another pipeline (or "
            "null) and run again"
        )
    os_api.delete_pipeline(session.t, name)
    session.report.add("search pipeline", name, "deleted")


def attach_indices(session: Session, record: StateRecord, pipeline: str) -> None:
    names = session.options.names
    ours = {names.main_pipeline, names.ext_pipeline}
    for requested in session.options.indices:
        concrete = os_api.index_settings(session.t, requested)
        for index, flat in sorted(concrete.items()):
            label = f"{index} {DEFAULT_PIPELINE_SETTING}"
            current = flat.get(DEFAULT_PIPELINE_SETTING)
            if current == pipeline:
                session.report.add("index setting", label, "unchanged")
                continue
            if (
                current not in (None, "_none")
                and current not in ours
                and not session.confirm(
                    f"Index {index!r} uses search pipeline {current!r} by default; replace it "
                    f"with {pipeline!r}? (teardown puts it back)"
                )
            ):
                raise Refused(f"index {index!r} has default pipeline {current!r}; use --yes")
            if index not in record.state.indices:
                record.state.indices[index] = IndexChange(current, pipeline)
            else:
                record.state.indices[index].applied_pipeline = pipeline
            record.save()
            os_api.put_index_default_pipeline(session.t, index, pipeline)
            detail = f"was {current}" if current else "was unset"
            session.report.add("index setting", label, "updated", detail)
            if index != requested:
                session.report.note(f"{requested!r} expanded to index {index!r}")
