"""Roster columns that become pass attributes for the community's rules.

Only columns the config names become attributes (`[roster] attributes =
{"疫苗剂次" = "vaccine_doses"}`): a roster often carries an ID number or notes that
the gate has no business keeping. A cell becomes a number, a yes/no, or text, so
that a rule can say `pass.attributes.vaccine_doses >= 2` or `... == true`. A row's
attributes are held to the bounds every end keeps (gate/core/attributes.py: at most 32,
text of at most 200 characters); central reads rosters with this code too.
"""
from __future__ import annotations

import re
from typing import Any

from gate.core import attributes as pass_attributes

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
    """The pass table's form: canonical JSON (one text per set of attributes), or None;
    ValueError naming the attribute when one is out of bounds (too long, say)."""
    return pass_attributes.text(pass_attributes.check(attributes))
