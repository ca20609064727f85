"""The roster's wire records: a pass as the gates receive it (in batches and
snapshots), its attributes included, and times as ISO text."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Any

from gate.config import CATEGORIES
from gate.core import attributes as pass_attributes


def now_iso(t: float | None = None) -> str:
    dt = datetime.now(timezone.utc) if t is None else datetime.fromtimestamp(t, timezone.utc)
    return dt.isoformat(timespec="milliseconds")


def _iso(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError(f"time {v} has no time zone")
        return v.isoformat()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc).isoformat()
    if isinstance(v, str):
        dt = datetime.fromisoformat(v)
        if dt.tzinfo is None:
            raise ValueError(f"time {v!r} has no time zone")
        return dt.isoformat()
    raise ValueError(f"not a time: {v!r}")


# ---------------------------------------------------------------- wire pass records

_WIRE_FIELDS = (
    "holder", "unit", "phone_last4", "card", "valid_from", "valid_until",
    "observation_until", "pcr_at", "health_code",
)
_TIME_FIELDS = {"valid_from", "valid_until", "observation_until", "pcr_at"}


def wire_pass(row: dict[str, Any]) -> dict[str, Any]:
    """A roster row (times as datetimes or ISO strings) as a wire pass record.

    Null fields are left out (a missing field means null to the gate), so a
    1,000,000-pass snapshot stays small; ``revoked`` is always present. ``attributes``
    (the rules' roster attributes) only when the pass has some."""
    pid = row.get("id")
    if not isinstance(pid, str) or not pid or len(pid) > 128:
        raise ValueError(f"pass id must be 1-128 characters, got {pid!r}")
    cat = row.get("category")
    if cat not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {cat!r}")
    out: dict[str, Any] = {"id": pid, "category": cat}
    for f in _WIRE_FIELDS:
        v = row.get(f)
        if f in _TIME_FIELDS:
            v = _iso(v)
        elif v == "":
            v = None
        if v is not None:
            out[f] = v
    if "phone_last4" in out and not re.fullmatch(r"[0-9]{4}", str(out["phone_last4"])):
        raise ValueError(f"phone_last4 must be 4 digits, got {out['phone_last4']!r}")
    if "card" in out and not re.fullmatch(r"[0-9]{1,10}", str(out["card"])):
        raise ValueError(f"card must be 1-10 digits, got {out['card']!r}")
    if out.get("health_code") not in (None, "green", "yellow", "red"):
        raise ValueError(f"health_code must be green, yellow or red, got {out['health_code']!r}")
    for f, n in (("holder", 128), ("unit", 64)):
        if f in out and len(str(out[f])) > n:
            raise ValueError(f"{f} is longer than {n} characters")
    # The roster's attributes (a dict, or the pass table's JSON text), within the bounds
    # every end keeps (gate/core/attributes.py); none: the field is left out.
    attrs = pass_attributes.check(row.get("attributes"))
    if attrs:
        out["attributes"] = attrs
    out["revoked"] = bool(row.get("revoked", False))
    return out


_WIRE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def wire_text(wire: dict[str, Any]) -> str:
    return _WIRE_ENCODER.encode(wire)
