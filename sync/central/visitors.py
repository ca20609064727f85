"""Central's visitor register (访客登记簿): every visitor a gate registers, with the host
unit and the visit's end, from the gates' `registration` events; and the visitors still
inside after their visit ended (`overstay`), from the site's presence log
(sync/central/presence_relay.py: the latest entry or exit of each pass, at any gate).

Stored in the writer's transaction, with the event that brought it: a registration
stored twice (a resent event) is one visitor.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS visitors (pass_id TEXT PRIMARY KEY, gate TEXT NOT NULL, holder TEXT, unit TEXT NOT NULL,"
    " id_last4 TEXT, phone_last4 TEXT, valid_from TEXT, valid_until TEXT NOT NULL, until_ts DOUBLE PRECISION NOT NULL,"
    " length TEXT, who TEXT, registered TEXT NOT NULL, event_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS visitors_until ON visitors (until_ts)",
]


def _ts(text: str) -> float:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def record(db: Any, ev: dict[str, Any]) -> bool:
    """Inside the transaction that stored a registration event: the visitor into the
    register. True if it was new."""
    if ev.get("type") != "registration" or not ev.get("pass") or not ev.get("valid_until") or not ev.get("unit"):
        return False
    cur = db.execute(
        "INSERT INTO visitors (pass_id, gate, holder, unit, id_last4, phone_last4, valid_from, valid_until, until_ts,"
        " length, who, registered, event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (pass_id) DO NOTHING",
        (ev["pass"], ev["gate"], ev.get("holder"), ev["unit"], ev.get("id_last4"), ev.get("phone_last4"),
         ev.get("valid_from"), ev["valid_until"], _ts(ev["valid_until"]), ev.get("length"), ev.get("who"), ev["ts"], ev["id"]),
    )
    return cur.rowcount == 1


_COLUMNS = ("pass", "gate", "holder", "unit", "id_last4", "phone_last4", "valid_from", "valid_until", "length", "who", "registered")


def _where(row: Any, db: Any) -> dict[str, Any] | None:
    """The pass's latest movement at any gate (presence log), or None."""
    got = db.one("SELECT body FROM presence_items WHERE key = ?", (f"move:{row[0]}",))
    return json.loads(got[0]) if got else None


def listing(db: Any, now: float, *, since: float | None = None) -> list[dict[str, Any]]:
    """The register (visits ending after ``since``, when given), each with where the
    visitor is (`inside`, `left`, `not_yet`) and whether they overstay."""
    sql = ("SELECT pass_id, gate, holder, unit, id_last4, phone_last4, valid_from, valid_until, length, who, registered,"
           " until_ts FROM visitors")
    args: list[Any] = []
    if since is not None:
        sql += " WHERE until_ts >= ?"
        args.append(since)
    out = []
    for row in db.all(sql + " ORDER BY registered, pass_id", args):
        v = dict(zip(_COLUMNS, row[:-1]))
        move = _where(row, db)
        v["state"] = "not_yet" if move is None else "inside" if move["direction"] == "in" else "left"
        if move is not None:
            v["last_move"] = {"gate": move["gate"], "direction": move["direction"], "at": move["at"]}
        v["overstay"] = v["state"] == "inside" and now > float(row[-1])
        out.append(v)
    return out


def overstays(db: Any, now: float) -> list[dict[str, Any]]:
    """Visitors whose visit has ended and who are still inside (their latest movement at
    any gate of the site is an entry)."""
    out = []
    for row in db.all("SELECT pass_id, gate, holder, unit, id_last4, phone_last4, valid_from, valid_until, length, who,"
                      " registered, until_ts FROM visitors WHERE until_ts < ? ORDER BY until_ts", (now,)):
        move = _where(row, db)
        if move is not None and move["direction"] == "in":
            v = dict(zip(_COLUMNS, row[:-1]))
            v.update(state="inside", overstay=True, over_s=round(now - float(row[-1])),
                     last_move={"gate": move["gate"], "direction": "in", "at": move["at"]})
            out.append(v)
    return out
