"""What a command did, for people (a short summary) and machines (`--json`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal[
    "created",
    "updated",
    "reused",
    "unchanged",
    "deleted",
    "restored",
    "absent",
    "ok",
    "failed",
    "skipped",
    "planned",
]


@dataclass
class Change:
    resource: str  # "connector", "model", "search pipeline", "cluster setting", ...
    name: str
    action: Action
    detail: str = ""
    id: str | None = None


@dataclass
class Report:
    target: str
    command: str
    cluster: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    error: str | None = None
    dry_run: bool = False

    def add(
        self,
        resource: str,
        name: str,
        action: Action,
        detail: str = "",
        id: str | None = None,
    ) -> Change:
        change = Change(resource, name, action, detail, id)
        self.changes.append(change)
        if action == "failed":
            self.ok = False
        return change

    def note(self, text: str) -> None:
        self.notes.append(text)

    def actions(self, action: Action) -> list[Change]:
        return [change for change in self.changes if change.action == action]

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True)

    def to_text(self) -> str:
        title = f"{self.target} {self.command}" + (
            " (dry run: nothing was sent)" if self.dry_run else ""
        )
        lines = [title]
        if self.cluster:
            lines.append("  cluster: " + ", ".join(f"{k} {v}" for k, v in self.cluster.items()))
        width = max((len(change.resource) for change in self.changes), default=0)
        for change in self.changes:
            ident = f" [{change.id}]" if change.id else ""
            detail = f": {change.detail}" if change.detail else ""
            lines.append(
                f"  {change.action:<9} {change.resource:<{width}} {change.name}{ident}{detail}"
            )
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        if counts:
            lines.append("  summary: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())))
        lines.extend(f"  note: {note}" for note in self.notes)
        for title_, value in self.usage.items():
            rendered = value if isinstance(value, str) else json.dumps(value, indent=2)
            lines.append(f"  {title_}:")
            lines.extend("    " + line for line in rendered.splitlines())
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)
