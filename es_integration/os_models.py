"""Connectors and models phase: create or update the sidecar connectors, register and deploy
the remote models that use them. Each step finds objects by exact name and changes only what
differs from the wanted body."""

from __future__ import annotations

from typing import Any

from es_integration import os_api
from es_integration import os_resources as res
from es_integration.errors import Refused, SetupError
from es_integration.options import token_fingerprint
from es_integration.os_record import StateRecord
from es_integration.session import Session

DEPLOYED_STATES = frozenset({"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING", "DEPLOY_FAILED"})

_ACTION_KEYS = (
    "action_type",
    "method",
    "url",
    "headers",
    "request_body",
    "pre_process_function",
    "post_process_function",
)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _comparable(connector: dict[str, Any], config_keys: list[str]) -> dict[str, Any]:
    """The parts of a connector we set, in the shape GET returns them (credential is hidden).

    Only the client_config keys we send are compared: the cluster adds its defaults, and a
    version without client_config (2.12) returns none, matching a body that sends none.
    """
    actions = []
    for action in connector.get("actions") or []:
        if not isinstance(action, dict):
            continue
        view = {key: action[key] for key in _ACTION_KEYS if action.get(key) is not None}
        for key in ("action_type", "method"):
            if key in view:
                view[key] = str(view[key]).upper()
        actions.append(view)
    config = connector.get("client_config")
    config = config if isinstance(config, dict) else {}
    return {
        "description": connector.get("description"),
        "protocol": connector.get("protocol"),
        "parameters": connector.get("parameters") or {},
        "client_config": {key: _norm(config.get(key)) for key in config_keys},
        "actions": actions,
    }


def _models_using(session: Session, record: StateRecord, connector_id: str) -> list[dict[str, Any]]:
    return [
        model
        for name in session.options.names.models
        for model in os_api.find_models(session.t, name, record.group_id)
        if model.get("connector_id") == connector_id
    ]


def ensure_connector(session: Session, record: StateRecord, desired: dict[str, Any]) -> str:
    """The id of the connector named like `desired`, created or updated to match it."""
    name = str(desired["name"])
    fingerprint = token_fingerprint(session.options.sidecar_token, name)
    existing = [c for c in os_api.find_connectors(session.t, name) if c.get("name") == name]
    if len(existing) > 1:
        raise SetupError(f"{len(existing)} connectors are named {name!r}; delete the extras")
    if not existing:
        connector_id = os_api.create_connector(session.t, desired)
        record.state.token_fingerprints[name] = fingerprint
        record.save()
        url = desired["actions"][0]["url"]
        session.report.add("connector", name, "created", url, id=connector_id)
        return connector_id
    connector_id = str(existing[0]["_id"])
    if not res.is_managed(existing[0].get("description")):
        raise SetupError(
            f"a connector named {name!r} exists and was not made by this tool; "
            "choose another --name or --connector-name"
        )
    current = os_api.get_connector(session.t, connector_id) or {}
    keys = list(desired.get("client_config") or {})
    differs = _comparable(current, keys) != _comparable(desired, keys)
    token_changed = record.state.token_fingerprints.get(name) != fingerprint
    if not differs and not token_changed:
        session.report.add("connector", name, "unchanged", id=connector_id)
        return connector_id
    # ML Commons refuses to update a connector that a deployed model uses.
    deployed = [
        m
        for m in _models_using(session, record, connector_id)
        if m.get("model_state") in DEPLOYED_STATES
    ]
    if deployed and not session.confirm(
        f"Updating connector {name!r} undeploys {len(deployed)} model(s) for a few seconds; "
        "searches meanwhile return un-reranked hits. Continue?"
    ):
        raise Refused(f"connector {name!r} differs from the wanted one; re-run with --yes")
    for model in deployed:
        os_api.undeploy_model(session.t, str(model["_id"]), session.options.wait_timeout_s)
        session.report.add(
            "model", str(model.get("name")), "updated", "undeployed", id=str(model["_id"])
        )
    os_api.update_connector(
        session.t, connector_id, {k: v for k, v in desired.items() if k != "name"}
    )
    record.state.token_fingerprints[name] = fingerprint
    record.save()
    what = [w for w, flag in (("settings", differs), ("token", token_changed)) if flag]
    session.report.add("connector", name, "updated", " and ".join(what), id=connector_id)
    return connector_id


def ensure_model(
    session: Session, record: StateRecord, name: str, description: str, connector_id: str
) -> str:
    """The id of the deployed model `name` that uses `connector_id`."""
    wait_s = session.options.wait_timeout_s
    model_id: str | None = None
    for model in os_api.find_models(session.t, name, record.group_id):
        if model.get("connector_id") == connector_id and model_id is None:
            model_id = str(model["_id"])
        else:  # points at another connector (made by an older run): replace it
            if model.get("model_state") in DEPLOYED_STATES:
                os_api.undeploy_model(session.t, str(model["_id"]), wait_s)
            os_api.delete_model(session.t, str(model["_id"]))
            session.report.add("model", name, "deleted", "stale connector", id=str(model["_id"]))
    if model_id is None:
        model_id = os_api.register_model(
            session.t, name, description, record.group_id, connector_id, wait_s
        )
        session.report.add("model", name, "created", "registered", id=model_id)
    if os_api.model_state(session.t, model_id) == "DEPLOYED":
        session.report.add("model", name, "reused", "deployed", id=model_id)
        return model_id
    os_api.deploy_model(session.t, model_id, wait_s)
    session.report.add("model", name, "updated", "deployed", id=model_id)
    return model_id


def remove_models(session: Session, record: StateRecord, names: list[str]) -> None:
    """Undeploy and delete the models with these names in our model group."""
    for name in names:
        for model in os_api.find_models(session.t, name, record.group_id):
            model_id = str(model["_id"])
            if model.get("model_state") in DEPLOYED_STATES:
                os_api.undeploy_model(session.t, model_id, session.options.wait_timeout_s)
            os_api.delete_model(session.t, model_id)
            session.report.add("model", name, "deleted", id=model_id)


def remove_connectors(session: Session, names: list[str]) -> None:
    """Delete the connectors with these names that this tool made (after their models)."""
    for name in names:
        for connector in os_api.find_connectors(session.t, name):
            if connector.get("name") == name and res.is_managed(connector.get("description")):
                os_api.delete_connector(session.t, str(connector["_id"]))
                session.report.add("connector", name, "deleted", id=str(connector["_id"]))
