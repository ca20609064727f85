"""Roster columns that become pass attributes for the community's rules.

Only columns the config names become attributes (`[roster] attributes =
{"疫苗剂次" = "vaccine_doses"}`): a roster often carries an ID number or notes that
the gate has no business keeping. A cell becomes a number, a yes/no, or text, so
that a rule can say `pass.attributes.vaccine_doses >= 2` or `... == true`.
"""
from __future__ import annotations

import json
import re
from typing import Any

_YES = {"是", "有", "已", "已完成", "yes", "y", "true", "✓", "√"}
_NO = {"否", "无", "未", "未完成", "no", "n", "false", "✗", "×"}
_INT = re.compile(r"[+-]?\d{1,15}")
_FLOAT = re.compile(r"[+-]?\d{1,15}\.\d{1,6}")


def value(text: str) -> Any:
    """A cell's text as the value a rule compares: int, float, bool or text."""
    t = text.strip()
    low = t.lower()
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t):
        return float(t)
    if low in _YES:
        return True
    if low in _NO:
        return False
    return t


def encode(attributes: dict[str, Any]) -> str | None:
    """The pass table's form: canonical JSON (one text per set of attributes), or None."""
    return json.dumps(attributes, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if attributes else None
