"""The state record: the ML model group setup creates first and teardown deletes last.

Its description holds a `SetupState` (state.py): the setting values setup replaced and the
token fingerprints, so teardown can restore them from any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from es_integration import os_api
from es_integration import os_resources as res
from es_integration.errors import SetupError
from es_integration.os_detect import ClusterFacts
from es_integration.session import Session
from es_integration.state import SetupState
from es_integration.transport import Transport

ACCESS_CONTROL = "plugins.ml_commons.model_access_control_enabled"


@dataclass
class StateRecord:
    """The model group and the state its description holds; `save()` writes changes."""

    t: Transport
    group_id: str
    state: SetupState
    saved: str  # the description as last written

    def save(self) -> None:
        description = self.state.to_description()
        if description != self.saved:
            os_api.update_model_group(self.t, self.group_id, description)
            self.saved = description


def find_group(session: Session) -> dict[str, Any] | None:
    name = session.options.names.model_group
    for group in os_api.find_model_groups(session.t, name):
        if group.get("name") == name:
            if not res.is_managed(group.get("description")):
                raise SetupError(
                    f"an ML model group named {name!r} exists and was not made by this tool; "
                    "choose another --name"
                )
            return group
    return None


def load(session: Session) -> StateRecord | None:
    """The existing record, or None when setup has not run with these names."""
    group = find_group(session)
    if group is None:
        return None
    # The search that found the group can lag behind the last run's update of its description
    # (seen on the real 2.19.1 node: a teardown right after setup read an empty record).
    saved = os_api.model_group_description(session.t, group["_id"])
    return StateRecord(session.t, group["_id"], SetupState.from_description(saved), saved)


def ensure(session: Session, facts: ClusterFacts, settings: os_api.ClusterSettings) -> StateRecord:
    name = session.options.names.model_group
    record = load(session)
    if record is not None:
        session.report.add("model group", name, "reused", id=record.group_id)
        return record
    access_control = str(settings.effective(ACCESS_CONTROL)).lower() == "true"
    public = access_control and facts.secured
    state = SetupState()
    description = state.to_description()
    group_id = os_api.register_model_group(session.t, name, description, public)
    session.report.add(
        "model group",
        name,
        "created",
        "access_mode public (search users run its models)" if public else "",
        id=group_id,
    )
    return StateRecord(session.t, group_id, state, description)
