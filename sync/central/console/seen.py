"""Where each pass was last seen, kept as events arrive: the community map's aggregate
(sync/central/console/community.py), so that neither "not seen at any gate for N days"
nor a unit's "last decisions at every gate" reads a year of events.

- ``console_seen``: per pass and gate, its latest decision there (when, allowed or not,
  why, lane, direction). Written by central's writer in the transaction that stores the
  events (sync/central/service.py), one upsert a (pass, gate) a batch; an older decision
  arriving late (a gate's outbox after a week offline) never replaces a newer one.
- ``console_last_seen``: per pass, when it was last seen at any gate (one row a pass, so
  "not seen for N days" is one key seek a person, not one a gate it ever used).
- (A pass's roster attributes, which the map's rules read, are the roster's own:
  ``passes.attributes``, versioned and sent to the gates with the pass. The
  ``pass_attributes`` copy kept here before is dropped: nothing filled it.)
- ``passes_category_unit``: the households' passes (resident, renter, returnee) by
  category, so the map reads its few thousand people, not every visitor's pass.

The same SQL on SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS console_seen (pass_id TEXT NOT NULL, gate TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,"
    " ts TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, lane TEXT NOT NULL, direction TEXT NOT NULL,"
    " PRIMARY KEY (pass_id, gate))",
    "CREATE TABLE IF NOT EXISTS console_last_seen (pass_id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL)",
    "DROP TABLE IF EXISTS pass_attributes",
    "CREATE INDEX IF NOT EXISTS passes_category_unit ON passes (category, unit)",
]

_UPSERT = (
    "INSERT INTO console_seen (pass_id, gate, at, ts, decision, reason, lane, direction) VALUES (?,?,?,?,?,?,?,?)"
    " ON CONFLICT (pass_id, gate) DO UPDATE SET at = excluded.at, ts = excluded.ts, decision = excluded.decision,"
    " reason = excluded.reason, lane = excluded.lane, direction = excluded.direction WHERE excluded.at >= console_seen.at"
)


def epoch(ts: Any) -> float | None:
    """An event's ISO time as seconds (None when it is not one)."""
    try:
        when = datetime.fromisoformat(str(ts))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def record_many(db: Any, events: Iterable[dict[str, Any]]) -> int:
    """Inside the transaction that stored the events: each decision about a pass becomes
    that pass's latest at its gate (unless a later one is kept). Returns rows written."""
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for ev in events:
        if ev.get("type") != "decision" or not ev.get("pass") or not ev.get("gate"):
            continue
        at = epoch(ev.get("ts"))
        if at is None:
            continue
        key = (str(ev["pass"]), str(ev["gate"]))
        was = latest.get(key)
        if was is None or at >= was[2]:
            latest[key] = (key[0], key[1], at, str(ev["ts"]), str(ev.get("decision") or ""), str(ev.get("reason") or ""),
                           str(ev.get("lane") or ""), str(ev.get("direction") or ""))
    if latest:
        db.executemany(_UPSERT, list(latest.values()))
        last: dict[str, float] = {}
        for pid, _gate, at, *_ in latest.values():
            last[pid] = max(at, last.get(pid, at))
        db.executemany("INSERT INTO console_last_seen (pass_id, at) VALUES (?,?) ON CONFLICT (pass_id) DO UPDATE"
                       " SET at = excluded.at WHERE excluded.at > console_last_seen.at", list(last.items()))
    return len(latest)


def last_seen(db: Any, categories: tuple[str, ...]) -> dict[str, float]:
    """Each household pass's latest decision at any gate (seconds), for those seen at all."""
    marks = ",".join("?" * len(categories))
    # From the households' passes (by category), one seek into console_last_seen's key each.
    rows = db.all(f"SELECT p.id, s.at FROM passes p JOIN console_last_seen s ON s.pass_id = p.id"
                  f" WHERE p.category IN ({marks})", categories)
    return {r[0]: float(r[1]) for r in rows if r[1] is not None}


def at_gates(db: Any, pass_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per pass, its latest decision at each gate, the newest first."""
    out: dict[str, list[dict[str, Any]]] = {pid: [] for pid in pass_ids}
    if not pass_ids:
        return out
    marks = ",".join("?" * len(pass_ids))
    for r in db.all(f"SELECT pass_id, gate, at, ts, decision, reason, lane, direction FROM console_seen"
                    f" WHERE pass_id IN ({marks}) ORDER BY at DESC, gate", pass_ids):
        out[r[0]].append({"gate": r[1], "at": float(r[2]), "ts": r[3], "decision": r[4], "reason": r[5], "lane": r[6],
                          "direction": r[7]})
    return out
