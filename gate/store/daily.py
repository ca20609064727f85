"""The daily report (日报告, 零报告): published every day, even a day with nothing in it."""
from __future__ import annotations

from typing import Any

from gate.store.database import Store


def daily(store: Store, day: str) -> dict[str, Any]:
    """The report for one local date (YYYY-MM-DD) from the events in the store."""
    c = store.conn
    events = c.execute("SELECT count(*) FROM events WHERE day = ?", (day,)).fetchone()[0]
    allowed = dict(
        c.execute(
            "SELECT coalesce(category, 'none'), count(*) FROM events WHERE day = ? AND type = 'decision'"
            " AND decision = 'allow' GROUP BY 1 ORDER BY 1",
            (day,),
        ).fetchall()
    )
    denied = dict(
        c.execute(
            "SELECT reason, count(*) FROM events WHERE day = ? AND type = 'decision' AND decision = 'deny'"
            " GROUP BY 1 ORDER BY 1",
            (day,),
        ).fetchall()
    )
    fevers = c.execute(
        "SELECT count(*) FROM events WHERE day = ? AND type = 'alarm' AND kind = 'fever'", (day,)
    ).fetchone()[0]
    challenges = c.execute(
        "SELECT count(*) FROM events WHERE day = ? AND type = 'decision' AND decision = 'challenge'", (day,)
    ).fetchone()[0]
    start, end = _day_bounds(store, day)
    new_cards = [
        r[0]
        for r in c.execute(
            "SELECT number FROM cards WHERE first_seen >= ? AND first_seen < ? ORDER BY first_seen, number",
            (start, end),
        )
    ]
    unknown_cards = [
        r[0]
        for r in c.execute(
            "SELECT DISTINCT card FROM events WHERE day = ? AND type = 'decision' AND reason = 'unknown_card'"
            " AND card IS NOT NULL ORDER BY card",
            (day,),
        )
    ]
    # Refusals by the community's rules, by rule name (present only when there were any).
    rules = dict(
        c.execute(
            "SELECT json_extract(body, '$.rule'), count(*) FROM events WHERE day = ? AND type = 'decision'"
            " AND decision = 'deny' AND reason = 'rule' GROUP BY 1 ORDER BY 1",
            (day,),
        ).fetchall()
    )
    # Entries decided without fresh news of the site (policy.presence_stale_s): passback was
    # judged on what this gate alone knew (present only when there were any).
    stale = c.execute(
        "SELECT count(*) FROM events WHERE day = ? AND type = 'decision' AND json_extract(body, '$.presence') = 'stale'",
        (day,),
    ).fetchone()[0]
    # Named guards' shifts (gate/web/shifts.py): who took over when.
    shifts = [
        {"at": _hm(store, ts), "who": who}
        for ts, who in c.execute(
            "SELECT ts, json_extract(body, '$.who') FROM events WHERE day = ? AND type = 'admin'"
            " AND json_extract(body, '$.action') = 'shift_start' ORDER BY seq",
            (day,),
        )
    ]
    by_hour = [0] * 24
    for hour, n in c.execute(
        "SELECT hour, count(*) FROM events WHERE day = ? AND type = 'decision' GROUP BY hour", (day,)
    ):
        by_hour[hour] = n
    return {
        "date": day,
        "gate": store.gate_id,
        "events": events,
        "allowed": allowed,
        "denied": denied,
        "fevers": fevers,
        "challenges": challenges,
        "new_cards": new_cards,
        "unknown_cards": unknown_cards,
        "by_hour": by_hour,
        **({"rules": rules} if rules else {}),
        **({"presence_stale": stale} if stale else {}),
        **({"shifts": shifts} if shifts else {}),
    }


def _hm(store: Store, ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, store.tz).strftime("%H:%M")


def _day_bounds(store: Store, day: str) -> tuple[float, float]:
    from datetime import date, datetime, time, timedelta

    d = date.fromisoformat(day)
    start = datetime.combine(d, time(0), store.tz)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


# ---------------------------------------------------------------- events for spreadsheets

RANGE_COLUMNS = (
    "seq", "time", "day", "hour", "type", "lane", "pass", "unit", "credential", "category", "decision", "reason",
    "temperature_c", "card", "kind", "action", "detail", "who", "id",
)


def events_range(store: Store, since: str, until: str) -> Any:
    """Every event of the local days since..until (inclusive, YYYY-MM-DD), oldest first,
    as flat rows (RANGE_COLUMNS) for a spreadsheet. The unit comes from the pass table."""
    import json
    from datetime import datetime, timezone

    units = dict(store.conn.execute("SELECT id, unit FROM passes").fetchall())
    cur = store.conn.execute(
        "SELECT seq, ts, day, hour, type, lane, pass_id, credential, category, decision, reason, temperature_c, card,"
        " kind, action, body, id FROM events WHERE day >= ? AND day <= ? ORDER BY seq",
        (since, until),
    )
    for seq, ts, day, hour, typ, lane, pass_id, cred, cat, decision, reason, temp, card, kind, action, body, eid in cur:
        b = json.loads(body)
        yield {
            "seq": seq,
            "time": datetime.fromtimestamp(ts, timezone.utc).astimezone(store.tz).isoformat(timespec="seconds"),
            "day": day, "hour": hour, "type": typ, "lane": lane or "", "pass": pass_id or "",
            "unit": units.get(pass_id, "") if pass_id else "", "credential": cred or "", "category": cat or "",
            "decision": decision or "", "reason": reason or "", "temperature_c": "" if temp is None else f"{temp:.2f}",
            "card": card or "", "kind": kind or "", "action": action or "", "detail": b.get("detail") or "",
            "who": b.get("who") or "", "id": eid,
        }
