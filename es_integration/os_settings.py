"""Cluster settings phase: trust the sidecar URL, allow a private address where needed.

Each value is recorded in the state record before it is written, so an interrupted setup can
still be torn down (os_teardown restores them).
"""

from __future__ import annotations

from typing import Any

from es_integration import os_api
from es_integration.errors import SetupError
from es_integration.options import trusted_endpoint_regex
from es_integration.os_detect import ClusterFacts
from es_integration.os_record import StateRecord
from es_integration.session import Session
from es_integration.state import SettingChange
from es_integration.versions import OS_PRIVATE_IP_SETTING

TRUSTED_REGEX = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
PRIVATE_REGEX = "plugins.ml_commons.trusted_connector_private_endpoints_regex"


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item) for item in value]
    return [str(value)]


def _set(
    session: Session,
    record: StateRecord,
    settings: os_api.ClusterSettings,
    key: str,
    value: Any,
    why: str,
) -> None:
    scope = settings.scope_of(key)
    source = settings.transient if scope == "transient" else settings.persistent
    if key not in record.state.settings:
        record.state.settings[key] = SettingChange(scope, source.get(key), value)
    else:
        record.state.settings[key].applied = value
    record.save()  # before the write: an interrupted setup can still be torn down
    os_api.put_cluster_settings(session.t, scope, {key: value})
    session.report.add("cluster setting", key, "updated", why)


def _add_list_entry(
    session: Session,
    record: StateRecord,
    settings: os_api.ClusterSettings,
    key: str,
    entry: str,
    why: str,
) -> None:
    current = as_list(settings.effective(key))
    if entry in current:
        session.report.add("cluster setting", key, "unchanged", f"already contains {entry}")
        return
    added = record.state.added_list_entries.setdefault(key, [])
    if entry not in added:
        added.append(entry)
    _set(session, record, settings, key, [*current, entry], why)


def apply(
    session: Session,
    record: StateRecord,
    settings: os_api.ClusterSettings,
    facts: ClusterFacts,
    private: bool,
) -> None:
    assert session.options.sidecar_url is not None
    regex = trusted_endpoint_regex(session.options.sidecar_url)
    _add_list_entry(
        session, record, settings, TRUSTED_REGEX, regex, f"added {regex} (kept the others)"
    )
    if not private:
        return
    if not settings.exists(PRIVATE_IP):
        raise SetupError(
            f"the sidecar URL is a private or in-cluster address, and OpenSearch "
            f"{facts.version} always refuses those for connectors (setting {PRIVATE_IP} arrived "
            f"in {OS_PRIVATE_IP_SETTING}); expose the sidecar on a public address or upgrade"
        )
    if str(settings.effective(PRIVATE_IP)).lower() == "true":
        session.report.add("cluster setting", PRIVATE_IP, "unchanged", "already true")
    else:
        _set(session, record, settings, PRIVATE_IP, True, "the sidecar URL is private/in-cluster")
    if settings.exists(PRIVATE_REGEX):
        # An empty list lets every private endpoint through; adding ours to an empty list
        # would start refusing other private connectors, so only append to a non-empty one.
        if as_list(settings.effective(PRIVATE_REGEX)):
            _add_list_entry(session, record, settings, PRIVATE_REGEX, regex, f"added {regex}")
        else:
            session.report.add("cluster setting", PRIVATE_REGEX, "unchanged", "empty: allows all")
