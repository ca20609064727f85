"""Passes found by name, unit, card or id, and one pass with its history.

A query is a prefix of any of the four (a unit "3-2" finds building 3, entrance 2; a
name "王" every 王): one index range scan per column (sync/central/console/schema.py),
at most ``limit`` rows each, merged. Exact matches of an id or a card come first, then
by unit and name. On 1,000,000 passes a query takes a few milliseconds
(``python -m bench --only console``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sync.central.console.schema import SEARCHED, collate

MAX_QUERY = 64


@dataclass(frozen=True)
class Found:
    id: str
    category: str
    holder: str
    unit: str
    card: str
    revoked: bool


def upper_bound(prefix: str) -> str:
    """The first string after every string that starts with ``prefix`` (code point order,
    which is UTF-8's byte order)."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000
    if last > 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(last)


def search(db: Any, query: str, *, limit: int = 50) -> list[Found]:
    q = (query or "").strip()[:MAX_QUERY]
    if not q:
        return []
    c = collate(db.pg)
    hi = upper_bound(q)
    seen: dict[str, Found] = {}
    for col in SEARCHED:
        rows = db.all(
            f"SELECT id, category, holder, unit, card, revoked FROM passes WHERE {col}{c} >= ? AND {col}{c} < ?"
            f" ORDER BY {col}{c} LIMIT {int(limit)}", (q, hi))
        for r in rows:
            seen.setdefault(r[0], Found(r[0], r[1], r[2] or "", r[3] or "", r[4] or "", bool(r[5])))
    exact = {f.id for f in seen.values() if q in (f.id, f.card)}
    return sorted(seen.values(), key=lambda f: (f.id not in exact, f.unit, f.holder, f.id))[:limit]


def one(db: Any, pass_id: str) -> dict[str, Any] | None:
    """The pass as the gates have it (its wire record) and its roster version."""
    row = db.one("SELECT wire, version FROM passes WHERE id = ?", (pass_id,))
    if row is None:
        return None
    return {**json.loads(row[0]), "version": int(row[1])}


def gate_records(db: Any, pass_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """What the gates recorded of this pass's revocations (their ``admin`` events, sent
    back up): which gate took it, when, and whom it names."""
    needle = '%"pass":' + json.dumps(pass_id, ensure_ascii=False) + "%"
    rows = db.all("SELECT body FROM events WHERE type = 'admin' AND body LIKE ? ORDER BY received DESC"
                  f" LIMIT {int(limit)}", (needle,))
    out = []
    for (body,) in rows:
        ev = json.loads(body)
        if ev.get("pass") == pass_id and ev.get("action") in ("revoke", "unrevoke"):
            out.append(ev)
    return out
