"""What the console's reports pages read from central's database (the same SQL on
SQLite and PostgreSQL), each on an index (report_schema.py):

- ``site_day``: the site's day (sync/central/site_report.py: every gate's report summed,
  the gates that sent none, with the events central holds from them).
- ``gate_day``: one gate's report of one day, as the gate sent it.
- ``range_rows``: every event of a period, one a row, with the columns of
  ``gate report range`` (gate/store/daily.py RANGE_COLUMNS) and the gate's id first.
- ``cards_first_seen``: the cards first seen on a day at any gate, against the register
  (central's roster): bound to a pass, or unknown. Kept in ``console_cards`` from the
  decisions as they arrive (``refresh_cards``: idempotent, so events read twice, or late,
  change nothing: a card keeps its earliest sighting).
- ``missing_days``: for each gate, the days of a month it sent no report.
"""
from __future__ import annotations

import json
import threading
import time
from calendar import monthrange
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Iterator

from gate.store.daily import RANGE_COLUMNS
from sync.central.site_report import day_range, events_held, known_gates, site_daily

COLUMNS = ("gate", *RANGE_COLUMNS)
MAX_RANGE_DAYS = 366
OVERLAP_S = 600.0  # events are read again this far back: a transaction committed late is not missed
CHUNK = 5000
_cards_lock = threading.Lock()


def site_day(store: Any, day: str, site: str) -> dict[str, Any]:
    return site_daily(store, day, site)


def recent_days(db: Any, last: str, days: int = 14) -> list[dict[str, Any]]:
    """The site's last ``days`` days up to ``last``: events, allowed and denied summed from
    the gates' reports, and how many gates reported (the trend under the day's charts)."""
    first = (date.fromisoformat(last) - timedelta(days=days - 1)).isoformat()
    out = {(date.fromisoformat(first) + timedelta(days=i)).isoformat(): {"events": 0, "allowed": 0, "denied": 0, "gates": 0}
           for i in range(days)}
    for day, body in db.all("SELECT date, body FROM reports WHERE date >= ? AND date <= ?", (first, last)):
        rep, d = json.loads(body), out.get(day)
        if d is None:
            continue
        d["events"] += int(rep.get("events", 0))
        d["allowed"] += sum(rep.get("allowed", {}).values())
        d["denied"] += sum(rep.get("denied", {}).values())
        d["gates"] += 1
    return [{"date": k, **v} for k, v in out.items()]


def gate_day(db: Any, gate: str, day: str) -> dict[str, Any] | None:
    """The report ``gate`` sent for ``day`` (None when it sent none), with what central holds."""
    row = db.one("SELECT body, received FROM reports WHERE gate = ? AND date = ?", (gate, day))
    held = events_held(db, gate, day)
    if row is None:
        return None if not held else {"date": day, "gate": gate, "missing": True, "events_held": held}
    rep = json.loads(row[0])
    return {**rep, "gate": gate, "missing": False, "events_held": held, "received": float(row[1])}


# ---------------------------------------------------------------- the range export


def _row(ev: dict[str, Any], units: dict[str, str], db: Any, tz: tzinfo) -> dict[str, Any]:
    pid = ev.get("pass")
    if pid and pid not in units:
        r = db.one("SELECT unit FROM passes WHERE id = ?", (pid,))
        units[pid] = (r[0] or "") if r else ""
    ts = str(ev.get("ts", ""))
    try:
        at = datetime.fromisoformat(ts).astimezone(tz).isoformat(timespec="seconds")
    except ValueError:
        at = ts
    temp = ev.get("temperature_c")
    return {
        "gate": ev.get("gate", ""), "seq": ev.get("seq", ""), "time": at, "day": ts[:10], "hour": int(ts[11:13]) if ts[11:13].isdigit() else "",
        "type": ev.get("type", ""), "lane": ev.get("lane") or "", "pass": pid or "", "unit": units.get(pid, "") if pid else "",
        "credential": ev.get("credential") or "", "category": ev.get("category") or "", "decision": ev.get("decision") or "",
        "reason": ev.get("reason") or "", "temperature_c": "" if temp is None else f"{float(temp):.2f}",
        "card": ev.get("card") or "", "kind": ev.get("kind") or "", "action": ev.get("action") or "",
        "detail": ev.get("detail") or "", "who": ev.get("who") or "", "id": ev.get("id", ""),
    }


def range_rows(db: Any, since: str, until: str, tz: tzinfo, gate: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event of the gates' local days since..until (inclusive), gate by gate, each
    gate's in its own time order; read in chunks (a year is not held in memory)."""
    cond, bounds = day_range(db, since, until)
    units: dict[str, str] = {}
    for g in ([gate] if gate else sorted(known_gates(db))):
        cur = db.execute(f"SELECT body FROM events WHERE gate = ? AND {cond} ORDER BY gate, ts", (g, *bounds))
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                break
            for (body,) in rows:
                yield _row(json.loads(body), units, db, tz)


def range_count(db: Any, since: str, until: str, gate: str | None = None) -> int:
    cond, bounds = day_range(db, since, until)
    return sum(int(db.one(f"SELECT count(*) FROM events WHERE gate = ? AND {cond}", (g, *bounds))[0])
               for g in ([gate] if gate else sorted(known_gates(db))))


# ---------------------------------------------------------------- cards first seen


def refresh_cards(db: Any, budget_s: float = 2.0) -> bool:
    """Brings ``console_cards`` up to the decisions central holds (on the
    ``events_type_received`` index, from where it last stopped less ``OVERLAP_S``). True
    when it caught up, False when the time budget ran out first (a first reading of a
    long history: the next call goes on from there)."""
    with _cards_lock:
        t0 = time.monotonic()
        mark = db.one("SELECT value FROM meta WHERE key = 'console_cards_through'")
        through = float(mark[0]) if mark else None
        start, last_id = (through - OVERLAP_S, "") if through is not None else (-1.0, "")
        newest = through or 0.0
        while True:
            rows = db.all("SELECT id, gate, ts, body, received FROM events WHERE type = 'decision' AND"
                          " (received > ? OR (received = ? AND id > ?)) ORDER BY received, id LIMIT ?",
                          (start, start, last_id, CHUNK))
            seen: dict[str, tuple[float, str, str]] = {}
            for eid, gate, ts, body, received in rows:
                if '"card"' not in body:
                    continue
                card = json.loads(body).get("card")
                if not card:
                    continue
                try:
                    at = datetime.fromisoformat(ts).timestamp()
                except ValueError:
                    continue
                if card not in seen or at < seen[card][0]:
                    seen[card] = (at, gate, ts[:10])
            with db.tx():
                db.executemany(
                    "INSERT INTO console_cards (card, first_at, gate, day) VALUES (?,?,?,?) ON CONFLICT (card) DO UPDATE"
                    " SET first_at = excluded.first_at, gate = excluded.gate, day = excluded.day"
                    " WHERE excluded.first_at < console_cards.first_at",
                    [(card, *v) for card, v in seen.items()])
                if rows:
                    start, last_id = float(rows[-1][4]), rows[-1][0]
                    newest = max(newest, start)
                    db.execute("INSERT INTO meta (key, value) VALUES ('console_cards_through', ?) ON CONFLICT (key)"
                               " DO UPDATE SET value = excluded.value", (repr(newest),))
            if len(rows) < CHUNK:
                return True
            if time.monotonic() - t0 > budget_s:
                return False


def cards_first_seen(db: Any, day: str) -> list[dict[str, Any]]:
    """The cards first seen (at any gate) on the local day ``day``, each with the pass it
    is bound to in central's roster (or none: unknown), first unknown ones."""
    out = []
    for card, first_at, gate in db.all("SELECT card, first_at, gate FROM console_cards WHERE day = ? ORDER BY first_at, card", (day,)):
        p = db.one("SELECT id, holder, unit, category, revoked FROM passes WHERE card = ?", (card,))
        out.append({"card": card, "first_at": float(first_at), "gate": gate,
                    "pass": None if p is None else {"id": p[0], "holder": p[1], "unit": p[2], "category": p[3], "revoked": bool(p[4])}})
    out.sort(key=lambda c: (c["pass"] is not None, c["first_at"]))
    return out


# ---------------------------------------------------------------- days with no report


def missing_days(db: Any, month: str, today: date) -> dict[str, Any]:
    """For ``month`` (YYYY-MM): each gate's days, each one ``ok`` (its report is here),
    ``missing`` (due and not sent; with the events central holds from it that day),
    ``before`` (before the gate was first heard of) or ``due`` (today and later: a day's
    report goes up the next morning)."""
    y, m = (int(x) for x in month.split("-"))
    first, ndays = date(y, m, 1), monthrange(y, m)[1]
    days = [(first + timedelta(days=i)).isoformat() for i in range(ndays)]
    got: dict[str, set[str]] = {}
    for gate, day in db.all("SELECT gate, date FROM reports WHERE date >= ? AND date <= ?", (days[0], days[-1])):
        got.setdefault(gate, set()).add(day)
    gates = []
    for gate in sorted(known_gates(db) | set(got)):
        since = _first_day(db, gate)
        row = []
        for d in days:
            if d >= today.isoformat():
                row.append({"day": d, "state": "due"})
            elif d in got.get(gate, ()):
                row.append({"day": d, "state": "ok"})
            elif since is None or d < since:
                row.append({"day": d, "state": "before"})
            else:
                row.append({"day": d, "state": "missing", "held": events_held(db, gate, d)})
        gates.append({"gate": gate, "days": row, "missing": [c["day"] for c in row if c["state"] == "missing"]})
    return {"month": month, "days": days, "gates": gates}


def _first_day(db: Any, gate: str) -> str | None:
    """The first day central knows of ``gate``: its first report or its first event."""
    r = db.one("SELECT min(date) FROM reports WHERE gate = ?", (gate,))
    e = db.one("SELECT ts FROM events WHERE gate = ? ORDER BY seq LIMIT 1", (gate,))  # events_gate_seq
    found = [x for x in ((r[0] if r else None), (e[0][:10] if e and e[0] else None)) if x]
    return min(found) if found else None
