"""Words on the guard's page, in Chinese and English (from gate/core/words.toml).

Every code the lane can produce (decision, reason, alarm kind, device) has a short
plain phrase in both languages. The page shows the configured language large and
the other one smaller below it, so a guard who reads only one is never lost.
"""
from __future__ import annotations

from typing import Any, Mapping

# code: (zh, en), from the one vocabulary (gate/core/words.toml)
from gate.core.words import (  # noqa: E402
    ALARM_ADVICE, ALARMS, CATEGORIES, CREDENTIALS, DECISIONS, DEVICES, REASONS, UI,
)

__all__ = ["ALARM_ADVICE", "ALARMS", "CATEGORIES", "CREDENTIALS", "DECISIONS", "DEVICES", "REASONS", "UI", "bundle", "pair"]


def pair(table: Mapping[str, tuple[str, str]], code: str | None) -> tuple[str, str]:
    if code is None:
        return ("", "")
    return table.get(code, (code, code))


def bundle() -> dict[str, Any]:
    """Everything the page's script needs to put words to codes, both languages."""
    return {
        "decisions": DECISIONS,
        "reasons": REASONS,
        "alarms": ALARMS,
        "advice": ALARM_ADVICE,
        "devices": DEVICES,
        "credentials": CREDENTIALS,
        "ui": UI,
    }
