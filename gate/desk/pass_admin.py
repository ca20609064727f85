"""The pass table at the desk: list, show, export and revoke.

Exports use the roster's English headers, so an exported file imports back
unchanged (``gate passes import`` reads it) and opens in a spreadsheet (CSV files
are written with a UTF-8 byte-order mark, which Excel needs to show Chinese).
Revoking (and taking a revocation back) changes the pass and records an ``admin``
event (who, why) in the same transaction; the event goes upstream.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone, tzinfo
from typing import Any, Iterable

from gate.desk.printing import natural_key, unit_matches

EXPORT_COLUMNS = (
    "id", "name", "unit", "category", "phone_last4", "card", "valid_from", "valid_until",
    "observation_until", "pcr_at", "health_code", "revoked", "updated_at",
)
_TIMES = ("valid_from", "valid_until", "observation_until", "pcr_at", "updated_at")


class PassAdminError(Exception):
    pass


def _local(ts: float | None, tz: tzinfo) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def passes(
    conn: Any,
    tz: tzinfo,
    *,
    units: Iterable[str] = (),
    categories: Iterable[str] = (),
    revoked: bool | None = None,
    search: str | None = None,
    pass_id: str | None = None,
) -> list[dict[str, Any]]:
    """Pass rows (export columns, times local) sorted by unit, then name; only
    ``pass_id``'s if given (looked up by key, not by reading the table)."""
    units, categories = tuple(units), tuple(categories)
    where, args = (" WHERE pass_id = ?", (pass_id,)) if pass_id is not None else ("", ())
    cards: dict[str, list[str]] = {}
    for number, pid in conn.execute(f"SELECT number, pass_id FROM card_bindings{where} ORDER BY number", args):
        cards.setdefault(pid, []).append(number)
    out = []
    for r in conn.execute(
        "SELECT id, holder, unit, category, phone_last4, valid_from, valid_until, observation_until, pcr_at,"
        " health_code, revoked, updated_at FROM passes" + where.replace("pass_id", "id"),
        args,
    ):
        pid, holder, unit, cat = r[0], r[1], r[2], r[3]
        if units and not unit_matches(unit, units):
            continue
        if categories and cat not in categories:
            continue
        if revoked is not None and bool(r[10]) != revoked:
            continue
        if search and not any(search in (x or "") for x in (pid, holder, unit, *cards.get(pid, []))):
            continue
        out.append({
            "id": pid, "name": holder or "", "unit": unit or "", "category": cat, "phone_last4": r[4] or "",
            "card": " ".join(cards.get(pid, [])), "valid_from": _local(r[5], tz), "valid_until": _local(r[6], tz),
            "observation_until": _local(r[7], tz), "pcr_at": _local(r[8], tz), "health_code": r[9] or "",
            "revoked": "yes" if r[10] else "", "updated_at": _local(r[11], tz),
        })
    out.sort(key=lambda p: (natural_key(p["unit"]), p["name"], p["id"]))
    return out


def to_csv(rows: list[dict[str, Any]], columns: Iterable[str] = EXPORT_COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def show(store: Any, pass_id: str, *, events: int = 10) -> dict[str, Any] | None:
    """One pass with its cards, whether it is inside, its latest decisions and the
    desk's actions on it (revocations)."""
    tz = store.tz
    found = next(iter(passes(store.conn, tz, pass_id=pass_id)), None)
    if found is None:
        return None
    cards = [
        {"number": n, "first_seen": _local(f, tz), "last_seen": _local(ls, tz), "swipes": s or 0}
        for n, f, ls, s in store.conn.execute(
            "SELECT b.number, c.first_seen, c.last_seen, c.swipes FROM card_bindings b"
            " LEFT JOIN cards c ON c.number = b.number WHERE b.pass_id = ? ORDER BY b.number",
            (pass_id,),
        )
    ]
    inside = store.conn.execute("SELECT since, lane FROM inside WHERE pass_id = ?", (pass_id,)).fetchone()
    recent = [
        {"time": _local(ts, tz), "lane": lane, "decision": d, "reason": r, "temperature_c": t}
        for ts, lane, d, r, t in store.conn.execute(
            "SELECT ts, lane, decision, reason, temperature_c FROM events WHERE pass_id = ? AND type = 'decision'"
            " ORDER BY seq DESC LIMIT ?",
            (pass_id, events),
        )
    ]
    desk = []
    for ts, body in store.conn.execute(
        "SELECT ts, body FROM events WHERE pass_id = ? AND type = 'admin' ORDER BY seq", (pass_id,)
    ):
        b = json.loads(body)
        desk.append({"time": _local(ts, tz), "action": b.get("action"), "who": b.get("who"), "reason": b.get("reason")})
    return {
        **found,
        "cards": cards,
        "inside": {"since": _local(inside[0], tz), "lane": inside[1]} if inside else None,
        "recent": recent,
        "desk": desk,
    }


def revoke(store: Any, pass_id: str, *, who: str, reason: str, undo: bool = False) -> str:
    """Revoke a pass (or, with undo, take the revocation back), with its event.
    Returns the event id. PassAdminError if there is no such pass or nothing to do."""
    from gate.core.records import AdminRecord

    if not who.strip():
        raise PassAdminError("--by: say who is revoking the pass")
    if not reason.strip():
        raise PassAdminError("--reason: say why")
    row = store.conn.execute("SELECT revoked FROM passes WHERE id = ?", (pass_id,)).fetchone()
    if row is None:
        raise PassAdminError(f"no pass {pass_id!r} in the pass table")
    if bool(row[0]) != undo:
        raise PassAdminError(f"pass {pass_id} is {'already' if not undo else 'not'} revoked; nothing done")
    now = datetime.now(timezone.utc)

    def also(c: Any) -> None:
        n = c.execute(
            "UPDATE passes SET revoked = ?, updated_at = ? WHERE id = ? AND revoked = ?",
            (0 if undo else 1, now.timestamp(), pass_id, 1 if undo else 0),
        ).rowcount
        if n != 1:
            raise PassAdminError(f"pass {pass_id} changed meanwhile; nothing done")

    rec = AdminRecord(
        at=now.astimezone(store.tz), lane="", action="unrevoke" if undo else "revoke", who=who, reason=reason,
        pass_id=pass_id,
    )
    return store.record(rec, also=also).id
