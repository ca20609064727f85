"""The office console at central: pass search on 1,000,000 passes (and the report page:
bench/console_reports.py).

Central's pass table is filled with 1,000,000 passes (a community of buildings,
entrances, floors and units; Chinese names; seven in ten with a card), then the
console's search (sync/central/console/search.py) answers a mix of queries the office
types: a name (surname and given name), a unit or its building-entrance prefix, a card
number, a pass id, and a few that find nothing. Reported: the p50 and p99 of one search
on SQLite, and on PostgreSQL when its server binaries are here. Baseline: the same
queries on the same table without the indexes the console adds (passes by holder and
unit), fewer of them (each is a scan). Target: p99 <= 100 ms (issue 15).
"""
from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from bench import console_roster
from bench.core import Context, Figure

TITLE = "console: pass search on 1,000,000 passes"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬斌宇浩凯鹏飞鑫波宁欣怡梅琳雪晨曦子涵佳琪思雨"


def _rows(n: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    cards = rng.sample(range(10_000_000, 99_999_999), n)
    for i in range(n):
        building, rest = divmod(i, 2400)  # 2,400 people a building: 4 entrances x 20 floors x 6 flats x 5 people
        entrance, rest = divmod(rest, 600)
        floor, rest = divmod(rest, 30)
        flat = rest // 5
        unit = f"{building + 1}-{entrance + 1}-{floor + 1}{flat + 1:02d}"
        holder = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        card = str(cards[i]) if rng.random() < 0.7 else None
        pid = f"P{i:07d}"
        wire = f'{{"category":"resident","holder":"{holder}","id":"{pid}","revoked":false,"unit":"{unit}"}}'
        yield (pid, "resident", holder, unit, card, 0, i + 1, wire)


def _queries(n: int, rows: list[tuple[Any, ...]], rng: random.Random, count: int) -> list[str]:
    out = []
    for k in range(count):
        r = rows[rng.randrange(n)]
        kind = k % 6
        if kind == 0:
            out.append(r[2])  # a whole name
        elif kind == 1:
            out.append(r[3])  # a whole unit
        elif kind == 2:
            out.append(r[3].rsplit("-", 1)[0])  # a building-entrance: "12-3"
        elif kind == 3:
            out.append(r[4] or r[0])  # a card (or the id when it has none)
        elif kind == 4:
            out.append(r[0])  # an id
        else:
            out.append(rng.choice(["赵钱孙李周吴郑", "99-9", "00000000", "Q123"]))  # finds nothing
    return out


def _sample(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    return list(_rows(n, random.Random(seed)))


def _time(db: Any, queries: list[str]) -> list[float]:
    from sync.central.console.search import search

    out = []
    for q in queries:
        t0 = time.perf_counter()
        search(db, q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _sqlite(tmp: Path, rows: list[tuple[Any, ...]], queries: list[str], base_n: int, ctx: Context) -> tuple[list[float], list[float]]:
    from sync.central.store import CentralStore

    st = CentralStore(str(tmp / "central.db"))
    t0 = time.perf_counter()
    with st.db.tx():
        st.db.executemany("INSERT INTO passes (id, category, holder, unit, card, revoked, version, wire) VALUES (?,?,?,?,?,?,?,?)", rows)
    st.db.execute("ANALYZE")
    ctx.log(f"  console: {len(rows):,} passes into SQLite in {time.perf_counter() - t0:.1f} s")
    _time(st.db, queries[:20])  # warm the page cache
    fast = _time(st.db, queries)
    st.db.execute("DROP INDEX passes_holder_search")
    st.db.execute("DROP INDEX passes_unit_search")
    slow = _time(st.db, queries[:base_n])
    st.close()
    return fast, slow


def _postgres(tmp: Path, rows: list[tuple[Any, ...]], queries: list[str], ctx: Context) -> list[float] | None:
    """The same search on a throwaway PostgreSQL cluster (bench/procs.py; None when there is none to start)."""
    from bench.procs import Postgres, PostgresUnavailable

    try:
        pg = Postgres().start()
    except PostgresUnavailable as exc:
        ctx.log(f"  console: no PostgreSQL figure ({exc})")
        return None
    try:
        from sync.central.store import CentralStore

        st = CentralStore(pg.create_database("console_search"))
        t0 = time.perf_counter()
        with st.db.conn.cursor() as cur, cur.copy(
                "COPY passes (id, category, holder, unit, card, revoked, version, wire) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        st.db.execute("ANALYZE passes")
        ctx.log(f"  console: {len(rows):,} passes into PostgreSQL in {time.perf_counter() - t0:.1f} s")
        _time(st.db, queries[:20])
        out = _time(st.db, queries)
        st.close()
        return out
    finally:
        pg.stop()


def run(ctx: Context) -> list[Figure]:
    n = 1_000_000
    count = ctx.reps(300, 1200)
    base_n = ctx.reps(12, 30)
    ctx.log(f"  console: {n:,} passes, {count} searches (baseline: {base_n} without the console's indexes)")
    rows = _sample(n)
    queries = _queries(n, rows, random.Random(11), count)
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        fast, slow = _sqlite(Path(tmp), rows, queries, base_n, ctx)
        p99, base99 = _p(fast, 0.99), _p(slow, 0.99)
        figures.append(Figure("console.search_p99_ms", p99, "ms", base99, p99 / base99,
                              note=f"console pass search, SQLite, {n:,} passes, p99 of {count} mixed queries "
                                   f"(p50 {statistics.median(fast):.2f} ms); baseline: without the console's indexes "
                                   "(target <= 100 ms)", pi4=True))
        figures += console_roster.run(ctx, Path(tmp) / "central.db", rows)
        pg = _postgres(Path(tmp), rows, queries, ctx)
    if pg:
        figures.append(Figure("console.search_pg_p99_ms", _p(pg, 0.99), "ms",
                              note=f"the same on PostgreSQL (local socket), p50 {statistics.median(pg):.2f} ms "
                                   "(target <= 100 ms)"))
    ctx.implications.append(f"console: pass search p99 {p99:.1f} ms on 1,000,000 passes (SQLite)"
                            + (f", {_p(pg, 0.99):.1f} ms (PostgreSQL)" if pg else "") + "; target <= 100 ms")
    from bench import console_reports

    return figures + console_reports.run(ctx)  # the report page with a year of events from 50 gates
