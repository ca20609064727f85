"""The office console's community map: a 3,000-household community on a central
holding 1,000,000 passes and a year of events from 50 gates.

Central's tables are filled as a year of running would leave them: 3,000 households
(30 buildings x 2 entrances x 25 floors x 2 flats, one to five people each: resident,
renter or returnee, some under home observation, some revoked, each with a
vaccine_doses attribute), the rest of the 1,000,000 passes visitors' and couriers'
(the map does not read them), a year of events from 50 gates (decisions, and today a
few fever alarms), the latest decision of every pass at each gate it used
(``console_seen``) and at any gate (``console_last_seen``), the site's presence log and the visitor register. Then the map page
(/map, signed in, through Flask: query and render) for each status the office can
choose. Reported: the median of the slowest status, SQLite and (when its server
binaries are here) PostgreSQL. Baseline, in the same run: a plain count of the
households' passes by the same index. Target: <= 500 ms (issue 15).
"""
from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.core import Context, Figure

TITLE = "console: the community map of 3,000 households (1,000,000 passes, a year of 50 gates)"
STATUSES = ("observation", "fever", "visitor", "revoked", "unseen", "rule:vaccinated")
RULE = {"name": "vaccinated", "when": "pass.category in ['resident', 'renter']", "require": "pass.attributes.vaccine_doses >= 2"}
COUNT = "SELECT count(*), count(DISTINCT unit) FROM passes WHERE category IN ('resident','renter','returnee')"
TZ = timezone(timedelta(hours=8))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, TZ).isoformat(timespec="seconds")


def _households(rng: random.Random, now: float) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(pass row, attributes) for 3,000 households."""
    n = 0
    for b in range(1, 31):
        for e in (1, 2):
            for f in range(1, 26):
                for flat in (1, 2):
                    unit = f"{b}-{e}-{f}{flat:02d}"
                    for _ in range(rng.randint(1, 5)):
                        n += 1
                        pid = f"H{n:06d}"
                        cat = rng.choice(("resident", "resident", "renter", "returnee"))
                        wire: dict[str, Any] = {"category": cat, "holder": f"住户{n}", "id": pid, "revoked": rng.random() < 0.01,
                                                "unit": unit}
                        if rng.random() < 0.02:
                            wire["observation_until"] = _iso(now + rng.uniform(-10, 10) * 86400)
                        attrs = {"vaccine_doses": rng.choice((0, 1, 2, 2, 3, 3, 3))}
                        wire["attributes"] = attrs  # as central's roster keeps them: in the wire and its column
                        text = json.dumps(wire, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                        yield ((pid, cat, wire["holder"], unit, None, 1 if wire["revoked"] else 0, n, text,
                                json.dumps(attrs, sort_keys=True, separators=(",", ":"))), attrs)


def build(db: Any, total: int, days: int, gates: int, rng: random.Random, now: float, ctx: Context) -> None:
    """Fill central's tables (the same rows on SQLite and PostgreSQL)."""
    t0 = time.perf_counter()
    homes = list(_households(rng, now))
    rows = [h[0] for h in homes]
    people = [r[0] for r in rows]
    for i in range(total - len(rows)):
        pid = f"V{i:07d}"
        cat = "visitor" if i % 5 else "courier"
        unit = f"{rng.randint(1, 30)}-{rng.randint(1, 2)}-{rng.randint(1, 25)}{rng.randint(1, 2):02d}" if cat == "visitor" else None
        rows.append((pid, cat, f"访客{i}", unit, None, 0, len(rows) + 1,
                     json.dumps({"category": cat, "id": pid, "revoked": False, "unit": unit}, separators=(",", ":")), None))
    copy(db, "passes (id, category, holder, unit, card, revoked, version, wire, attributes)", rows)
    db.execute("INSERT INTO policies (version, payload, ts) VALUES (?,?,?)",
               (1, json.dumps({"version": 1, "policy": {"rules": [RULE]}}), now))
    # A year of events (decisions each day, and today's fever alarms), streamed in; what
    # central's writer keeps as they arrive: each pass's latest decision at each gate.
    seen: dict[tuple[str, str], tuple[Any, ...]] = {}
    count = [0]

    def events() -> Iterator[tuple[Any, ...]]:
        seq = 0
        for d in range(days, -1, -1):
            for g in range(gates):
                for _ in range(per_day):
                    seq += 1
                    at = now - d * 86400 - rng.uniform(0, 86000 if d else 3000)
                    pid, ts = rng.choice(people), _iso(at)
                    body = (f'{{"id":"e{seq}","gate":"g{g}","seq":{seq},"type":"decision","pass":"{pid}","decision":"allow",'
                            f'"reason":"ok","lane":"in","direction":"in","ts":"{ts}"}}')
                    seen[(pid, f"g{g}")] = (pid, f"g{g}", at, ts, "allow", "ok", "in", "in")
                    count[0] += 1
                    yield (f"e{seq}", f"g{g}", seq, ts, "decision", body, at + 1)
        for k in range(20):
            seq += 1
            pid, ts = rng.choice(people), _iso(now - 600)
            count[0] += 1
            yield (f"a{k}", "g0", seq, ts, "alarm", json.dumps({"id": f"a{k}", "gate": "g0", "seq": seq, "type": "alarm",
                                                             "kind": "fever", "pass": pid, "ts": ts}, separators=(",", ":")), now - 599)

    per_day = max(1, ctx.reps(40, 300))
    copy(db, "events (id, gate, seq, ts, type, body, received)", events())
    for r in rows[len(homes):len(homes) + 300_000]:  # visitors' passes, seen once
        seen[(r[0], "g1")] = (r[0], "g1", now - rng.uniform(0, days) * 86400, _iso(now), "allow", "ok", "in", "in")
    copy(db, "console_seen (pass_id, gate, at, ts, decision, reason, lane, direction)", list(seen.values()))
    last: dict[str, float] = {}
    for pid, _g, at, *_ in seen.values():
        last[pid] = max(at, last.get(pid, at))
    copy(db, "console_last_seen (pass_id, at)", list(last.items()))
    # The visitor register of the last days and where each visitor is.
    vis, moves = [], []
    for i in range(ctx.reps(300, 3000)):
        pid, until = f"VR{i}", now + rng.uniform(-3, 1) * 86400
        unit = f"{rng.randint(1, 30)}-{rng.randint(1, 2)}-{rng.randint(1, 25)}{rng.randint(1, 2):02d}"
        vis.append((pid, "g0", "客", unit, None, None, None, _iso(until), until, "today", "guard", _iso(until - 3600), f"r{i}"))
        moves.append((f"move:{pid}", i + 1, json.dumps({"kind": "move", "pass": pid, "direction": rng.choice(("in", "out")),
                                                        "at": _iso(now), "gate": "g0"})))
    copy(db, "visitors (pass_id, gate, holder, unit, id_last4, phone_last4, valid_from, valid_until, until_ts, length, who,"
             " registered, event_id)", vis)
    copy(db, "presence_items (key, seq, body)", moves)
    db.execute("ANALYZE")
    ctx.log(f"  console_map: {len(rows):,} passes ({len(homes):,} people of {len({r[3] for r, _ in homes}):,} households),"
            f" {count[0]:,} events, {len(seen):,} seen rows in {time.perf_counter() - t0:.0f} s")


def copy(db: Any, into: str, rows: Iterable[tuple[Any, ...]]) -> None:
    if db.pg:
        with db.conn.cursor() as cur, cur.copy(f"COPY {into} FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        return
    marks = ",".join("?" * (into.count(",") + 1))
    with db.tx():
        db.executemany(f"INSERT INTO {into} VALUES ({marks})", rows)


def measure(url: str, reps: int) -> tuple[dict[str, float], list[float], float]:
    """Median ms of the map page per status, the per-pair ratios against the count, the count's median ms."""
    from sync.central.config import CentralConfig, ConsoleConfig
    from sync.central.console import users
    from sync.central.console.server import Console
    from sync.central.store import CentralStore

    st = CentralStore(url)
    users.add(st.db, "bench", "viewer", "bench-password")
    conf = CentralConfig(site="bench", signing_key=Path("unused.key"), db=url, console=ConsoleConfig())
    console = Console(conf, db_url=url)
    web = console.flask.test_client()
    login = web.get("/login").get_data(as_text=True)
    token = login.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert web.post("/login", data={"csrf": token, "name": "bench", "password": "bench-password", "next": "/map"}).status_code == 303
    times: dict[str, list[float]] = {s: [] for s in STATUSES}
    base, ratios = [], []
    for _ in range(reps):
        for s in STATUSES:
            t0 = time.perf_counter()
            st.db.one(COUNT)
            b = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            resp = web.get(f"/map?status={s}&days=7")
            ms = (time.perf_counter() - t0) * 1000
            assert resp.status_code == 200 and b'id="boards"' in resp.data, (s, resp.status_code)
            times[s].append(ms)
            base.append(b)
            ratios.append(ms / b)
    for s in list(console._stores):
        s.close()
    st.close()
    return {s: statistics.median(v) for s, v in times.items()}, ratios, statistics.median(base)


def _figures(name: str, where: str, med: dict[str, float], ratios: list[float], base: float, scale: str) -> Figure:
    worst = max(med, key=lambda s: med[s])
    per = ", ".join(f"{s.split(':')[0]} {v:.0f}" for s, v in med.items())
    return Figure(name, med[worst], "ms", base, statistics.median(ratios),
                  note=f"the community map page (/map: query and render), {where}, {scale}; the slowest status ({worst}); "
                       f"per status ms: {per}; baseline: a count of the households' passes (target <= 500 ms)", pi4=True)


def run(ctx: Context) -> list[Figure]:
    total = ctx.reps(100_000, 1_000_000)
    days = ctx.reps(30, 365)
    gates = 50
    reps = ctx.reps(3, 9)
    now = time.time()
    scale = f"{total:,} passes, {days} days of {gates} gates"
    ctx.log(f"  console_map: {scale}, {reps} rounds of {len(STATUSES)} statuses")
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        from sync.central.store import CentralStore

        url = str(Path(tmp) / "central.db")
        st = CentralStore(url)
        build(st.db, total, days, gates, random.Random(5), now, ctx)
        st.close()
        med, ratios, base = measure(url, reps)
        figures.append(_figures("console.map_3000_ms", "SQLite", med, ratios, base, scale))
    try:
        from bench.procs import Postgres, PostgresUnavailable

        with Postgres() as pg:
            from sync.central.store import CentralStore

            url = pg.create_database("map")
            st = CentralStore(url)
            build(st.db, total, days, gates, random.Random(5), now, ctx)
            st.close()
            med, ratios, base = measure(url, reps)
            figures.append(_figures("console.map_3000_pg_ms", f"PostgreSQL {pg.version}", med, ratios, base, scale))
    except PostgresUnavailable as exc:
        ctx.log(f"  console_map: no PostgreSQL figure ({exc})")
    ctx.implications.append("console: the community map of 3,000 households " + ", ".join(
        f"{f.value:.0f} ms ({'PostgreSQL' if 'pg' in f.name else 'SQLite'})" for f in figures) + f" ({scale}); target <= 500 ms")
    return figures
