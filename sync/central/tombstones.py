"""Removed means refused: central's tombstones (issue 12, finding 5).

A pass deleted from the roster (`passes delete`, left out of `passes import
--replace`) keeps its QR's signature valid. So central keeps the id, its category
and until when its token could still be valid (the roster's valid_until; None:
for good), with no personal data, and sends it to every gate: as the batch's
delete change, ``{"op": "delete", "id", "category", "until"}``, and in snapshots
as a line ``{"id", "category", "revoked": true, "removed": true, "valid_until"}``
(a gate that knows no tombstones keeps such a line as a revoked pass: refused
either way). A gate refuses a tombstoned pass `revoked`; issuing the id again
lifts the tombstone, at central and at every gate.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS tombstones (id TEXT PRIMARY KEY, category TEXT, until TEXT,"
    " removed_at DOUBLE PRECISION NOT NULL, version BIGINT NOT NULL)",
]

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def delete_change(pass_id: str, wire: dict[str, Any] | None) -> dict[str, Any]:
    """The change that removes a pass (wire: its record before, if central had it)."""
    wire = wire or {}
    return {"op": "delete", "id": pass_id, "category": wire.get("category"), "until": wire.get("valid_until")}


def remember(db: Any, changes: Iterable[tuple[int, dict[str, Any]]], now: float) -> None:
    """Inside the roster transaction: (version, delete change) pairs become tombstones."""
    db.executemany(
        "INSERT INTO tombstones (id, category, until, removed_at, version) VALUES (?,?,?,?,?) ON CONFLICT (id)"
        " DO UPDATE SET category = excluded.category, until = excluded.until, removed_at = excluded.removed_at,"
        " version = excluded.version",
        [(ch["id"], ch.get("category"), ch.get("until"), now, v) for v, ch in changes],
    )


def lift(db: Any, ids: Iterable[str]) -> None:
    """Inside the roster transaction: these passes were issued (again)."""
    db.executemany("DELETE FROM tombstones WHERE id = ?", [(i,) for i in ids])


def _live(until: str | None, now: float) -> bool:
    if not until:
        return True
    try:
        return datetime.fromisoformat(until).timestamp() >= now
    except ValueError:
        return True  # unreadable: keep refusing


def snapshot_lines(db: Any, now: float) -> list[str]:
    """Tombstones still in force as snapshot lines (inside the snapshot's read transaction).
    Expired ones stay in the table (a few rows) but no longer travel."""
    out = []
    for pid, cat, until in db.all("SELECT id, category, until FROM tombstones ORDER BY id"):
        if _live(until, now):
            line: dict[str, Any] = {"id": pid, "category": cat or "resident", "revoked": True, "removed": True}
            if until:
                line["valid_until"] = until
            out.append(_ENCODER.encode(line))
    return out
