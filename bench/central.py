"""Central's ingest: how fast two `gate central` processes on one shared
subscription store what the gates send, against what the same broker delivers to a
bare subscriber in the same run.

Events are made by the gate's own code (``Store.record``: the outbox payloads a gate
publishes, decisions with a direction, so central also logs presence), one SQLite
file per simulated gate. Several publisher clients (the gates, QoS 1, 20 in flight
each like the outbox's window) publish them as fast as the broker takes them, from
processes of their own. Measured, from the publishers' go to the last event:

* the bare subscriber: one paho client subscribed to ``{prefix}/+/events`` (QoS 1),
  counting messages until it has all N;
* central: two ``gate central`` processes (instances a and b, one database, the
  shared subscription they always use), counting rows in ``events`` until all N are
  stored (committed, acknowledged to the broker, receipted to the gates);

on SQLite (one WAL file, ``synchronous=FULL``) and on PostgreSQL (a local cluster
with the server's defaults: fsync on). Each run uses a site (topic prefix) of its
own and a fresh database, so the same N events are new every time. Reported: stored
msg/s per backend, the bare subscriber's msg/s, and their ratio: the median over
central's runs of its rate over the mean of the bare runs just before and after it
(bare and central runs alternate, B S B P B ...), so the machine's drift moves both."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from bench.core import Context, Figure

TITLE = "central: ingest through a shared subscription, SQLite and PostgreSQL"
TARGET = 0.5  # stored msg/s over the bare subscriber's, on PostgreSQL (issue 17)
WINDOW = 20  # in flight per gate, as the outbox's window


def make_events(directory: Path, gates: int, per_gate: int) -> dict[str, list[bytes]]:
    """{gate id: its outbox payloads in seq order}, written by the gate's own store."""
    from gate.core.records import DecisionRecord
    from gate.store.database import Store
    from sync import codec

    out: dict[str, list[bytes]] = {}
    start = datetime(2026, 11, 22, 7, 0, tzinfo=timezone(timedelta(hours=8)))
    for g in range(gates):
        gate = f"g{g + 1:02d}"
        s = Store(directory / f"{gate}.db", gate_id=gate)
        try:
            for i in range(per_gate):
                allow = i % 10 != 9  # one in ten refused: no direction, no presence item
                rec = DecisionRecord(at=start + timedelta(seconds=i), lane="in" if i % 2 == 0 else "out",
                                     pass_id=f"p{(g * per_gate + i) % 800:04d}", credential="qr", category="resident",
                                     decision="allow" if allow else "deny", reason="ok" if allow else "expired",
                                     temperature_c=36.4)
                s.record(rec, direction=("in" if i % 2 == 0 else "out") if allow else None)
            rows = s.conn.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
        finally:
            s.close()
        out[gate] = [r[0].encode("utf-8") for r in rows]
        for raw in out[gate]:
            codec.decode(raw, "event")  # what central will check: refuse to measure payloads it would quarantine
    return out


def _publish(port: int, prefix: str, run: str, events: dict[str, list[bytes]], ready: Any, go: Any, results: Any) -> None:
    """One publisher process: a client per gate, all its events at QoS 1."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    acked = threading.Semaphore(0)
    failures: list[str] = []

    def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if rc is not None and (rc.is_failure or rc.value == 16):  # 16: nobody subscribed, the message is gone
            failures.append(str(rc))
        acked.release()

    clients = []
    for gate in events:
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{run}-{gate}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(WINDOW)
        c.on_publish = on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((f"{prefix}/{gate}/events", c, events[gate]))
    ready.put(len(clients))
    go.wait()
    longest = max(len(p) for _, _, p in clients)
    for i in range(longest):
        for topic, c, payloads in clients:
            if i < len(payloads):
                c.publish(topic, payloads[i], qos=1)
    n = sum(len(p) for _, _, p in clients)
    got = sum(acked.acquire(timeout=300) for _ in range(n))
    results.put((time.monotonic(), n - got, failures[:5], len(failures)))
    for _, c, _ in clients:
        c.disconnect()
        c.loop_stop()


class _Publishers:
    """The gates split over ``procs`` processes, connected and waiting for go()."""

    def __init__(self, port: int, prefix: str, run: str, events: dict[str, list[bytes]], procs: int) -> None:
        ctx = mp.get_context("fork")  # the payloads are inherited, not pickled
        self.go_event, self.ready, self.results = ctx.Event(), ctx.Queue(), ctx.Queue()
        gates = sorted(events)
        parts = [gates[k::procs] for k in range(procs)]
        self.workers = [ctx.Process(target=_publish, args=(port, prefix, run, {g: events[g] for g in part}, self.ready,
                                                           self.go_event, self.results), daemon=True)
                        for part in parts if part]
        for w in self.workers:
            w.start()
        for _ in self.workers:
            self.ready.get(timeout=60)

    def go(self) -> float:
        t0 = time.monotonic()
        self.go_event.set()
        return t0

    def finish(self) -> tuple[int, list[str]]:
        """(PUBACKs missing, failure reason codes): both should be nothing."""
        missing, reasons = 0, []
        for _ in self.workers:
            _, m, some, _n = self.results.get(timeout=330)
            missing += m
            reasons += some
        for w in self.workers:
            w.join(30)
        return missing, reasons


def _wait_subscribed(broker: Any, client_ids: list[str], topic_part: str, timeout: float = 30.0) -> None:
    """mosquitto logs each SUBSCRIBE (log_type subscribe): wait for every client's."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in broker.log().splitlines() if topic_part in ln]
        if all(any(f" {cid} " in ln for ln in lines) for cid in client_ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client_ids} did not subscribe to {topic_part} (broker log: {broker.log_path})")
        time.sleep(0.05)


def bare_run(broker: Any, events: dict[str, list[bytes]], site: str, procs: int, timeout: float) -> float:
    """msg/s the broker delivers to one plain QoS 1 subscriber: go → the N-th message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"gate/v1/{site}"
    n = sum(len(p) for p in events.values())
    got = [0]
    done = threading.Event()
    last = [0.0]

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        got[0] += 1
        if got[0] >= n:
            last[0] = time.monotonic()
            done.set()

    pubs = _Publishers(broker.port, prefix, site, events, procs)  # forked before this process has threads of paho's
    subscribed = threading.Event()
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{site}-bare", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        sub.subscribe(f"{prefix}/+/events", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("the bare subscriber got no SUBACK")
        t0 = pubs.go()
        finished = done.wait(timeout)
        missing, reasons = pubs.finish()
        if not finished:
            raise RuntimeError(f"the bare subscriber got {got[0]} of {n} in {timeout:.0f} s")
        if missing or reasons:
            raise RuntimeError(f"publishers: {missing} PUBACKs missing, {reasons}")
        return n / (last[0] - t0)
    finally:
        sub.disconnect()
        sub.loop_stop()


def central_run(broker: Any, events: dict[str, list[bytes]], site: str, procs: int, timeout: float,
                directory: Path, db: str, count: Callable[[], int]) -> tuple[float, list[int]]:
    """Stored msg/s by two central processes on one database: go → all N rows in
    ``events``. Returns (msg/s, events each instance stored); raises if fewer than N
    within timeout."""
    from bench.procs import CentralProcess

    prefix = f"gate/v1/{site}"
    n = sum(len(p) for p in events.values())
    centrals = [CentralProcess(directory, broker, site=site, instance=i, db=db, conf_name=f"{site}-{i}") for i in ("a", "b")]
    try:
        for c in centrals:
            c.start()
        _wait_subscribed(broker, [c.client_id for c in centrals], f"{prefix}/+/events")
        pubs = _Publishers(broker.port, prefix, site, events, procs)
        t0 = pubs.go()
        deadline = t0 + timeout
        stored = 0
        while True:
            stored = count()
            now = time.monotonic()
            if stored >= n or now > deadline:
                break
            time.sleep(0.02)
        missing, reasons = pubs.finish()
        if stored < n:
            raise RuntimeError(f"central stored {stored} of {n} events in {timeout:.0f} s (logs: {directory})")
        if missing or reasons:
            raise RuntimeError(f"publishers: {missing} PUBACKs missing, {reasons}")
        rate = n / (now - t0)
    finally:
        for c in centrals:
            c.stop()
    split = [_final_stats(c.log_path) for c in centrals]
    if any(s.get("quarantined") or s.get("bad") for s in split):
        raise RuntimeError(f"central refused some of the bench's events: {split}")
    return rate, [int(s.get("events", 0)) for s in split]


def _final_stats(log: Path) -> dict[str, int]:
    """The counters `gate central` prints when it stops."""
    for line in reversed(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith("central stopped: "):
            return json.loads(line.split(": ", 1)[1])
    return {}


def _sqlite_counter(path: Path) -> Callable[[], int]:
    def count() -> int:
        if not path.exists():
            return 0
        con = sqlite3.connect(path, timeout=30)
        try:
            return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()
    return count


def _pg_counter(dsn: str) -> tuple[Callable[[], int], Callable[[], None]]:
    import psycopg

    con = psycopg.connect(dsn, autocommit=True)

    def count() -> int:
        try:
            return int(con.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return 0
    return count, con.close


def run(ctx: Context) -> list[Figure]:
    from bench.procs import Postgres, PostgresUnavailable
    from tests.mqtt_broker import DEFAULT_LOG_TYPES, Broker

    gates = 8
    per_gate = ctx.reps(500, 2500)
    n = gates * per_gate
    reps = ctx.reps(1, 3)  # central runs per backend
    procs = 2
    timeout = ctx.reps(120, 300)
    rates: dict[str, list[float]] = {"bare": [], "sqlite": [], "postgres": []}
    ratios: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    pg_error = ""
    pg_version = ""
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp, \
            Broker(extra=["set_tcp_nodelay true"], log_types=(*DEFAULT_LOG_TYPES, "subscribe"), name="central-bench") as broker:
        d = Path(tmp)
        (d / "gates").mkdir()
        t = time.perf_counter()
        events = make_events(d / "gates", gates, per_gate)
        ctx.log(f"  {n:,} events from {gates} gates made by the gate's store in {time.perf_counter() - t:.1f} s")
        pg: Postgres | None = None
        try:
            pg = Postgres().start()
            pg_version = pg.version.split()[0]
        except PostgresUnavailable as exc:
            pg_error = str(exc)
            ctx.log(f"  PostgreSQL: {pg_error}; measuring SQLite only")
        try:
            # B S B P B P B S B ...: each central run between two bare runs, its baseline their mean,
            # so the machine's drift (another job starting) moves both sides of a ratio alike.
            backends = ["sqlite", "postgres"] if pg is not None else ["sqlite"]
            plan = [b for k in range(reps) for b in (backends if k % 2 == 0 else backends[::-1])]

            def bare_now(i: int) -> float:
                rate = bare_run(broker, events, f"bare{i}", procs, timeout)
                rates["bare"].append(rate)
                ctx.log(f"  bare subscriber {rate:,.0f} msg/s")
                return rate

            before = bare_now(0)
            for i, backend in enumerate(plan):
                site = f"{backend}{i}"
                if backend == "sqlite":
                    path = d / f"{site}.db"
                    rate, split = central_run(broker, events, site, procs, timeout, d / "central", str(path),
                                              _sqlite_counter(path))
                else:
                    assert pg is not None
                    dsn = pg.create_database(site)
                    from sync.central.store import CentralStore

                    CentralStore(dsn).close()  # the schema, so the counter can count from the start
                    count, close = _pg_counter(dsn)
                    try:
                        rate, split = central_run(broker, events, site, procs, timeout, d / "central", dsn, count)
                    finally:
                        close()
                        pg.drop_database(site)
                after = bare_now(i + 1)
                bare = (before + after) / 2
                rates[backend].append(rate)
                ratios[backend].append(rate / bare)
                ctx.log(f"  central on {backend} {rate:,.0f} msg/s ({rate / bare:.2f} of the bare runs around it;"
                        f" instances a/b stored {split[0]:,}/{split[1]:,})")
                before = after
        finally:
            if pg is not None:
                pg.stop()
    bare_m = statistics.median(rates["bare"])
    figures = [Figure("central.ingest_bare_msg_s", bare_m, "msg/s",
                      note=f"{n:,} events from {gates} gates (QoS 1, {WINDOW} in flight each, {procs} publisher processes)"
                           " received by one plain paho subscriber on the same broker: the baseline")]
    for backend, what in (("sqlite", "SQLite (WAL, synchronous=FULL), one file"),
                          ("postgres", f"PostgreSQL {pg_version} (fsync on), one database")):
        if not rates[backend]:
            continue
        rate, ratio = statistics.median(rates[backend]), statistics.median(ratios[backend])
        figures.append(Figure(f"central.ingest_msg_s.{backend}", rate, "msg/s", bare_m, ratio,
                              note=f"{n:,} events stored by two `gate central` processes on a shared subscription, {what};"
                                   f" baseline: the bare subscriber{'; target ratio ≥ 0.5' if backend == 'postgres' else ''}"))
        figures.append(Figure(f"central.ingest_ratio.{backend}", ratio, "ratio",
                              note=f"stored msg/s on {backend} / the bare subscriber's, median of {len(ratios[backend])}"
                                   " run(s), each against the mean of the bare runs just before and after it"
                                   + ("; target ≥ 0.5" if backend == "postgres" else "")))
    line = (f"two centrals store {n:,} events at {statistics.median(rates['sqlite']):,.0f} msg/s on SQLite"
            f" ({statistics.median(ratios['sqlite']):.2f} of a bare subscriber's {bare_m:,.0f} msg/s)")
    if rates["postgres"]:
        pr = statistics.median(ratios["postgres"])
        line += (f", {statistics.median(rates['postgres']):,.0f} msg/s on PostgreSQL ({pr:.2f};"
                 f" target ≥ {TARGET}{'' if pr >= TARGET else ': BELOW'})")
    else:
        line += f"; PostgreSQL not measured: {pg_error}"
    ctx.implications.append(line)
    return figures
