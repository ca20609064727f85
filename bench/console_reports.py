"""The office console's report page with a year of events from 50 gates (part of the
``console`` group: bench/console.py runs it).

Central's database is filled with a year of decisions from 50 gates (100 a gate a
day; --quick: 30 days, 20 a day) and each gate's daily report, a few gates skipping a
few days (the page names them, with the events central holds from them). Then the
console's ``/reports?day=...`` page (sync/central/console/report_pages.py: the site's
day summed from the gates' reports, the gates that sent none, the charts, the last 14
days) is asked for through the Flask app, signed in, for days across the year.
Reported: the p90 of one page on SQLite, and on PostgreSQL where one can be started.
Baseline: on the same SQLite file, only the queries the site's day took before the
console (every gate by ``DISTINCT gate FROM events``, a silent gate's day by
``substr(ts, 1, 10)``: a scan each), for fewer days. Target: <= 1 s (issue 15).
"""
from __future__ import annotations

import json
import random
import re
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator

from bench.core import Context, Figure

GATES = 50
SKIPS = {7: 10, 23: 31, 41: 3}  # gate index -> it sends no report every Nth day


def _events(gates: int, days: int, per_day: int, first: date) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(5)
    received = 1.0e9
    for gi in range(gates):
        gate, seq = f"gate-{gi:02d}", 0
        for di in range(days):
            day = (first + timedelta(days=di)).isoformat()
            for k in range(per_day):
                seq += 1
                secs = 6 * 3600 + k * (16 * 3600 // per_day)
                ts = f"{day}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}+08:00"
                deny = rng.random() < 0.08
                body = json.dumps({"id": f"{gate}-{seq}", "seq": seq, "gate": gate, "ts": ts, "type": "decision", "lane": "in",
                                   "clock": "ok", "pass": None if deny else f"P{rng.randrange(1_000_000):07d}",
                                   "credential": "card", "category": "resident", "decision": "deny" if deny else "allow",
                                   "reason": "unknown_card" if deny else "ok", "temperature_c": 36.5,
                                   "card": str(10_000_000 + rng.randrange(90_000_000))}, separators=(",", ":"))
                received += 0.01
                yield (f"{gate}-{seq}", gate, seq, ts, "decision", body, received)


def _reports(gates: int, days: int, per_day: int, first: date) -> Iterator[tuple[Any, ...]]:
    for gi in range(gates):
        for di in range(days):
            if gi in SKIPS and di % SKIPS[gi] == 0:
                continue
            day = (first + timedelta(days=di)).isoformat()
            body = {"type": "report", "gate": f"gate-{gi:02d}", "date": day, "events": per_day,
                    "allowed": {"resident": per_day - per_day // 12}, "denied": {"unknown_card": per_day // 12},
                    "fevers": 0, "challenges": 0, "new_cards": [], "unknown_cards": [],
                    "by_hour": [0] * 6 + [per_day // 16] * 16 + [0, 0]}
            yield (f"gate-{gi:02d}", day, json.dumps(body, separators=(",", ":")), 1.0e9)


def _fill(st: Any, gates: int, days: int, per_day: int, first: date) -> None:
    db = st.db
    ev_sql = "INSERT INTO events (id, gate, seq, ts, type, body, received) VALUES (?,?,?,?,?,?,?)"
    rep_sql = "INSERT INTO reports (gate, date, body, received) VALUES (?,?,?,?)"
    if db.pg:
        with db.conn.cursor() as cur, cur.copy("COPY events (id, gate, seq, ts, type, body, received) FROM STDIN") as copy:
            for r in _events(gates, days, per_day, first):
                copy.write_row(r)
        with db.conn.cursor() as cur, cur.copy("COPY reports (gate, date, body, received) FROM STDIN") as copy:
            for r in _reports(gates, days, per_day, first):
                copy.write_row(r)
        db.execute("ANALYZE")
        return
    rows = _events(gates, days, per_day, first)
    while True:
        chunk = [r for _, r in zip(range(200_000), rows)]
        if not chunk:
            break
        with db.tx():
            db.executemany(ev_sql, chunk)
    with db.tx():
        db.executemany(rep_sql, list(_reports(gates, days, per_day, first)))
    db.execute("ANALYZE")


def _client(tmp: Path, db_url: str) -> Any:
    """The console's Flask app on ``db_url``, signed in as a viewer."""
    from gate.core.tokens import new_keypair
    from sync.central.config import load_central_config
    from sync.central.console import users
    from sync.central.console.server import Console
    from sync.central.store import CentralStore

    if not (tmp / "central.key").exists():
        new_keypair(tmp, "central")
    conf = tmp / "central.toml"
    conf.write_text('site = "bench"\nsigning_key = "central.key"\n[console]\nlisten = "127.0.0.1:0"\n', encoding="utf-8")
    st = CentralStore(db_url)
    if users.get(st.db, "bench") is None:
        users.add(st.db, "bench", "viewer", "bench-pass-1")
    st.close()
    console = Console(load_central_config(conf), db_url=db_url)
    c = console.flask.test_client()
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").get_data(as_text=True))
    assert tok, "no sign-in form"
    r = c.post("/login", data={"csrf": tok.group(1), "name": "bench", "password": "bench-pass-1", "next": "/reports"})
    assert r.status_code == 303, r.status_code
    return console, c


def _pages(c: Any, days: list[str]) -> list[float]:
    out = []
    for day in days:
        t0 = time.perf_counter()
        r = c.get(f"/reports?day={day}")
        body = r.get_data()
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200 and b'id="by-gate"' in body, (r.status_code, day)
    return out


def _before(db: Any, day: str) -> float:
    """The baseline: only the queries the site's day took before the console (ms):
    the gates by ``SELECT DISTINCT gate FROM events`` and, for each silent gate, its
    events of the day by ``substr(ts, 1, 10)`` (sync/central/site_report.py as it was)."""
    t0 = time.perf_counter()
    reports = {r[0] for r in db.all("SELECT gate FROM reports WHERE date = ?", (day,))}
    known = {r[0] for r in db.all("SELECT gate FROM status")}
    known |= {r[0] for r in db.all("SELECT DISTINCT gate FROM reports")}
    known |= {r[0] for r in db.all("SELECT DISTINCT gate FROM events")}
    for gate in sorted(known - reports):
        db.one("SELECT count(*) FROM events WHERE gate = ? AND substr(ts, 1, 10) = ?", (gate, day))
    return (time.perf_counter() - t0) * 1000


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run(ctx: Context) -> list[Figure]:
    from sync.central.store import CentralStore

    days, per_day = ctx.reps(30, 365), ctx.reps(20, 100)
    first = date(2026, 1, 1)
    count, base_n = ctx.reps(10, 40), ctx.reps(3, 6)
    rng = random.Random(3)
    asked = [(first + timedelta(days=rng.randrange(days))).isoformat() for _ in range(count)]
    n = GATES * days * per_day
    ctx.log(f"  console: the report page, {GATES} gates x {days} days x {per_day} events ({n:,}); {count} pages")
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-console-reports-") as tmpd:
        tmp = Path(tmpd)
        url = str(tmp / "central.db")
        st = CentralStore(url)
        t0 = time.perf_counter()
        _fill(st, GATES, days, per_day, first)
        ctx.log(f"  console: {n:,} events into SQLite in {time.perf_counter() - t0:.1f} s")
        st.close()
        console, c = _client(tmp, url)
        _pages(c, asked[:2])  # warm the page cache and the templates
        fast = _pages(c, asked)
        st = CentralStore(url)
        slow = [_before(st.db, day) for day in asked[:base_n]]
        st.close()
        console.stop()
        p90, base90 = _p(fast, 0.9), _p(slow, 0.9)
        figures.append(Figure("console.report_page_ms", p90, "ms", base90, p90 / base90,
                              note=f"console report page (the site's day, charts, the last 14 days), SQLite, {GATES} gates x "
                                   f"{days} days x {per_day} events ({n:,}), p90 of {count} days (p50 "
                                   f"{statistics.median(fast):.1f} ms); baseline: the site's day's queries before the console (target <= 1000 ms)"))
        pg_ms = _postgres(tmp, ctx, days, per_day, first, asked)
    if pg_ms:
        figures.append(Figure("console.report_page_pg_ms", _p(pg_ms, 0.9), "ms",
                              note=f"the same on PostgreSQL (local socket), p50 {statistics.median(pg_ms):.1f} ms (target <= 1000 ms)"))
    ctx.implications.append(f"console: report page p90 {p90:.0f} ms with {n:,} events from {GATES} gates (SQLite)"
                            + (f", {_p(pg_ms, 0.9):.0f} ms (PostgreSQL)" if pg_ms else "") + "; target <= 1 s")
    return figures


def _postgres(tmp: Path, ctx: Context, days: int, per_day: int, first: date, asked: list[str]) -> list[float] | None:
    from bench.procs import Postgres, PostgresUnavailable
    from sync.central.store import CentralStore

    try:
        pg = Postgres().start()
    except PostgresUnavailable as exc:
        ctx.log(f"  console: no PostgreSQL figure for the report page ({exc})")
        return None
    try:
        dsn = pg.create_database("reports")
        st = CentralStore(dsn)
        t0 = time.perf_counter()
        _fill(st, GATES, days, per_day, first)
        ctx.log(f"  console: {GATES * days * per_day:,} events into PostgreSQL in {time.perf_counter() - t0:.1f} s")
        st.close()
        console, c = _client(tmp, dsn)
        _pages(c, asked[:2])
        out = _pages(c, asked)
        console.stop()
        return out
    finally:
        pg.stop()
