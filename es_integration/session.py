"""What every command is given: the cluster, the validated options, the report, and how to ask."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from es_integration.options import Options
from es_integration.report import Report
from es_integration.transport import Transport

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class Session:
    t: Transport
    options: Options
    report: Report  # the command's output: each step adds what it did
    confirm: Confirm
