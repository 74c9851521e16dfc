"""What setup changed that is not an object of its own, kept in the cluster.

Teardown must restore cluster settings and index settings exactly, so setup records the values it
replaced before replacing them. The record lives in the description of the ML model group that
setup creates first and teardown deletes last: it travels with the cluster, not with the machine
that ran the command.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from es_integration import MANAGED_MARKER
from es_integration.errors import SetupError

_STATE_TAG = " state="


@dataclass
class SettingChange:
    """One cluster setting setup changed: where, what it was, what setup wrote."""

    scope: str  # "persistent" or "transient"
    previous: Any  # the value in that scope before setup; None = not set there
    applied: Any


@dataclass
class IndexChange:
    previous_pipeline: str | None  # index.search.default_pipeline before setup
    applied_pipeline: str


@dataclass
class SetupState:
    settings: dict[str, SettingChange] = field(default_factory=dict)
    added_list_entries: dict[str, list[str]] = field(default_factory=dict)
    indices: dict[str, IndexChange] = field(default_factory=dict)
    token_fingerprints: dict[str, str] = field(default_factory=dict)

    def to_description(self) -> str:
        data = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return (
            f"{MANAGED_MARKER}: holds its rerank models; `python -m es_integration opensearch "
            f"teardown` restores what setup changed.{_STATE_TAG}{data}"
        )

    @classmethod
    def from_description(cls, description: Any) -> SetupState:
        if not isinstance(description, str) or _STATE_TAG not in description:
            return cls()
        try:
            raw = json.loads(description.split(_STATE_TAG, 1)[1])
            return cls(
                settings={key: SettingChange(**value) for key, value in raw["settings"].items()},
                added_list_entries={k: list(v) for k, v in raw["added_list_entries"].items()},
                indices={key: IndexChange(**value) for key, value in raw["indices"].items()},
                token_fingerprints=dict(raw["token_fingerprints"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SetupError(
                f"the state record in the model group's description cannot be read ({exc!r}); "
                "it was edited by hand: restore it, or remove the objects by hand"
            ) from None
