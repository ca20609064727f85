"""Sync: outbox drain against raw paho, snapshot and delta apply, many gates.

The broker is a real mosquitto on a loopback port (as in the tests)."""
from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import tempfile
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from bench.core import Context, Figure
from bench.procs import CentralProcess
from gate.core.tokens import KeyRing
from gate.store.database import Store
from sync import codec
from sync.downstream import Downstream, Hooks
from sync.link import Link, LinkConfig
from sync.outbox import Publisher, ReceiptSettings
from sync.topics import Topics

TITLE = "sync: outbox, snapshot, delta, many gates"
TOPICS = Topics("gate/v1/bench", "g1")
RAW = Topics("gate/v1/bench", "raw")  # raw paho's events go to central too: the same broker work


def _event(seq: int, event_id: str | None = None, gate: str = "g1") -> str:
    # A typical decision event, ~300 bytes like the real ones.
    return json.dumps({
        "id": event_id or str(uuid.uuid4()), "seq": seq, "gate": gate, "ts": "2026-11-22T08:00:00+08:00", "clock": "ok",
        "type": "decision", "lane": "in", "pass": f"p{seq:07d}", "credential": "qr", "category": "resident",
        "decision": "allow", "reason": "ok", "temperature_c": 36.4,
    }, separators=(",", ":"))


_NEXT_SEQ = [1]  # seqs go on across drains, as at a gate: central's receipts follow them


def _fill_outbox(path: Path, n: int) -> None:
    s = Store(path)
    now = time.time()
    first = _NEXT_SEQ[0]
    _NEXT_SEQ[0] += n
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with s.write() as c:
        c.execute("DELETE FROM outbox")
        c.executemany(
            "INSERT INTO outbox(seq, event_id, payload, state, created) VALUES (?,?,?,'pending',?)",
            [(first + i, ids[i], _event(first + i, ids[i]), now) for i in range(n)],
        )
    s.close()


def drain_ours(port: int, path: Path, n: int, central: "CentralProcess | None" = None) -> float:
    """Events/s from the SQLite outbox until each is receipted by a running central
    (with central=None: until each is PUBACKed, receipts off)."""
    _fill_outbox(path, n)
    link = Link(LinkConfig(host="127.0.0.1", port=port, client_id=f"bench-{uuid.uuid4().hex[:6]}"),
                subscriptions=[(TOPICS.receipt, 1)] if central else [])
    rcpt = ReceiptSettings(central.keyring, TOPICS.gate) if central else ReceiptSettings()
    pub = Publisher(link, lambda: Store(path), TOPICS.events, window=20, receipts=rcpt)
    link._on_state, link._on_ack = pub.on_state, pub.on_ack  # noqa: SLF001 - wire as SyncService does
    link._on_message = lambda topic, payload: pub.on_receipt(payload)  # noqa: SLF001
    pub.start()
    t0 = time.perf_counter()
    link.start()
    ok = pub.wait_drained(300)
    dt = time.perf_counter() - t0
    link.stop()
    pub.stop()
    if not ok:
        raise RuntimeError("outbox did not drain")
    return n / dt


def drain_paho(port: int, n: int) -> float:
    """Raw paho QoS 1: the same payloads, 20 in flight, until every PUBACK is back."""
    payloads = [_event(i, gate=RAW.gate).encode() for i in range(1, n + 1)]
    done = threading.Semaphore(0)
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(20)
    c.on_publish = lambda *a: done.release()
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port)
    c.loop_start()
    for p in payloads:
        c.publish(RAW.events, p, qos=1)
    for _ in range(n):
        if not done.acquire(timeout=60):
            raise RuntimeError("raw paho lost PUBACKs")
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return n / dt


def _wire(i: int) -> dict[str, Any]:
    return {"id": f"s{i:07d}", "holder": "住户", "unit": f"{i % 30}-{i % 6}-{i % 900}", "category": "resident",
            "phone_last4": "1234", "card": str(10_000_000 + i) if i % 3 == 0 else None, "valid_from": None,
            "valid_until": "2026-12-31T23:59:59+08:00", "observation_until": None, "pcr_at": None, "health_code": None,
            "revoked": False}


class _NoLink:
    """Takes the snapshot request as if a broker had: the chunks are fed in directly."""

    connected = True

    def publish(self, *a: Any, **k: Any) -> int:
        return 1


def _downstream(path: Path, key: Ed25519PrivateKey) -> Downstream:
    hooks = Hooks(apply_policy=lambda p, v, **kw: None, open_door=lambda *a: True, report_now=lambda d: None,
                  reload=lambda: None, now=lambda: datetime.now(timezone.utc))
    d = Downstream(_NoLink(), lambda: Store(path), TOPICS, KeyRing([key.public_key()]), hooks)  # type: ignore[arg-type]
    d.store = Store(path)
    return d


def snapshot_apply(path: Path, n: int, chunk: int = 20_000) -> float:
    """Seconds from the first chunk's arrival to the table swapped in: signatures,
    hash, decompression, parsing and the transaction."""
    key = Ed25519PrivateKey.generate()
    lines = [json.dumps(_wire(i), ensure_ascii=False).encode() + b"\n" for i in range(n)]
    data = b"".join(lines)
    sha = hashlib.sha256(data).hexdigest()
    parts = [b"".join(lines[i:i + chunk]) for i in range(0, n, chunk)]
    d = _downstream(path, key)
    d.request_snapshot()
    rid = d._snapshot.request_id  # type: ignore[union-attr]  # noqa: SLF001
    ts = datetime.now(timezone.utc).isoformat()
    raws = [codec.encode(codec.sign({"type": "snapshot_chunk", "request_id": rid, "version": 7, "index": i, "count": len(parts),
                                     "sha256": sha, "data": base64.b64encode(zlib.compress(p)).decode(), "ts": ts}, key))
            for i, p in enumerate(parts)]
    t0 = time.perf_counter()
    for raw in raws:
        d._handle(TOPICS.snapshot, raw)  # noqa: SLF001
    dt = time.perf_counter() - t0
    if d.counters.get("snapshots_applied") != 1 or d.store.pass_count() != n:  # type: ignore[union-attr]
        raise RuntimeError(f"snapshot not applied: {d.counters.snapshot()}")
    d.store.close()  # type: ignore[union-attr]
    return dt


def delta_apply(path: Path, n: int) -> float:
    key = Ed25519PrivateKey.generate()
    d = _downstream(path, key)
    have = d.store.passes_version()  # type: ignore[union-attr]
    batch = {"type": "passes", "from_version": have, "to_version": have + 1, "ts": datetime.now(timezone.utc).isoformat(),
             "changes": [{"op": "upsert", "pass": _wire(i)} for i in range(n)]}
    raw = codec.encode(codec.sign(batch, key))
    t0 = time.perf_counter()
    d._handle(TOPICS.passes, raw)  # noqa: SLF001
    dt = time.perf_counter() - t0
    if d.counters.get("passes_batches") != 1:
        raise RuntimeError(f"delta not applied: {d.counters.snapshot()}")
    d.store.close()  # type: ignore[union-attr]
    return dt


# ---------------------------------------------------------------- the swap's write lock

_STAGE_CHUNK = 50_000


def _pass_rows(n: int, tag: str, start: int, stop: int) -> list[tuple[Any, ...]]:
    now = time.time()
    return [(f"{tag}{i:07d}", "住户", f"{i % 30}-{i % 6}-{i % 900}", "resident", "1234", None, None, None, None,
             "green", 0, now) for i in range(start, min(stop, n))]


def _bindings(n_cards: int, tag: str, start: int, stop: int) -> list[tuple[str, str]]:
    # The same card numbers in every table, each bound to a pass of that table: a
    # table with another tag changes every binding (the old swap's worst case).
    return [(str(10_000_000 + i), f"{tag}{2 * i:07d}") for i in range(start, min(stop, n_cards))]


def _history(c: sqlite3.Connection, n_cards: int, *, with_pass: str | None = None) -> None:
    """Every card swiped before (first_seen, last_seen, swipes), as at a gate in use."""
    for i in range(0, n_cards, _STAGE_CHUNK):
        part = range(i, min(i + _STAGE_CHUNK, n_cards))
        if with_pass is None:
            c.executemany("INSERT INTO cards(number, first_seen, last_seen, swipes) VALUES (?, 1.7e9, 1.7e9, 12)",
                          [(str(10_000_000 + k),) for k in part])
        else:
            c.executemany("INSERT INTO cards(number, pass_id, first_seen, last_seen, swipes) VALUES (?, ?, 1.7e9, 1.7e9, 12)",
                          [(str(10_000_000 + k), f"{with_pass}{2 * k:07d}") for k in part])


def _stage_ours(s: Store, n: int, n_cards: int, tag: str) -> None:
    s.snapshot_begin()
    for i in range(0, n, _STAGE_CHUNK):
        s.snapshot_add(_pass_rows(n, tag, i, i + _STAGE_CHUNK), _bindings(n_cards, tag, i // 2, (i + _STAGE_CHUNK) // 2))


@contextmanager
def _timed_writes(s: Store) -> Iterator[list[tuple[str, float]]]:
    """Each write transaction of the store while inside: (its statements, seconds
    from BEGIN IMMEDIATE to COMMIT done), i.e. how long it held the write lock."""
    real, out, sql = s.write, [], []

    @contextmanager
    def timed() -> Iterator[sqlite3.Connection]:
        sql.clear()
        t0 = time.perf_counter()
        with real() as c:
            yield c
        out.append((" ".join(sql), time.perf_counter() - t0))

    s.conn.set_trace_callback(sql.append)
    s.write = timed  # type: ignore[method-assign]
    try:
        yield out
    finally:
        s.conn.set_trace_callback(None)
        del s.write


def _old_db(path: Path, n: int, n_cards: int) -> sqlite3.Connection:
    """A store at schema m005 (bindings in cards.pass_id) holding table "a"."""
    from sqlite_utils import Database

    from gate.store.migrations import migrations

    db = Database(path)
    migrations.apply(db, stop_before="m006_card_bindings")
    db.conn.close()
    c = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "wal_autocheckpoint=256", "journal_size_limit=1048576"):
        c.execute(f"PRAGMA {pragma}")
    cols = ", ".join(Store.PASS_COLUMNS[:12])  # the twelve columns of schema m005 (attributes came later)
    c.execute("BEGIN IMMEDIATE")
    for i in range(0, n, _STAGE_CHUNK):
        c.executemany(f"INSERT INTO passes ({cols}) VALUES ({', '.join('?' * 12)})", _pass_rows(n, "a", i, i + _STAGE_CHUNK))
    _history(c, n_cards, with_pass="a")
    c.execute("COMMIT")
    return c


def _old_stage_and_swap(c: sqlite3.Connection, n: int, n_cards: int, tag: str) -> float:
    """The code before schema m006: stage (untimed) as it did, then its swap
    transaction, timed: drop the table, rename, rewrite every binding in cards."""
    schema = c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'passes'").fetchone()[0]
    c.execute("PRAGMA cache_size=-65536")
    cols = ", ".join(Store.PASS_COLUMNS[:12])  # the twelve columns of schema m005 (attributes came later)
    c.execute("BEGIN IMMEDIATE")
    c.execute(schema.replace("passes", "passes_new", 1).replace('"passes"', '"passes_new"', 1))
    c.execute("CREATE TABLE snapshot_cards (number TEXT PRIMARY KEY, pass_id TEXT) WITHOUT ROWID")
    c.execute("COMMIT")
    for i in range(0, n, _STAGE_CHUNK):
        c.execute("BEGIN IMMEDIATE")
        c.executemany(f"INSERT INTO passes_new ({cols}) VALUES ({', '.join('?' * 12)})", _pass_rows(n, tag, i, i + _STAGE_CHUNK))
        c.executemany("INSERT OR REPLACE INTO snapshot_cards(number, pass_id) VALUES (?, ?)",
                      _bindings(n_cards, tag, i // 2, (i + _STAGE_CHUNK) // 2))
        c.execute("COMMIT")
    t0 = time.perf_counter()
    c.execute("BEGIN IMMEDIATE")
    c.execute("DROP TABLE passes")
    c.execute("ALTER TABLE passes_new RENAME TO passes")
    c.execute("UPDATE cards SET pass_id = NULL WHERE pass_id IS NOT NULL")
    c.execute("INSERT INTO cards(number, pass_id) SELECT number, pass_id FROM snapshot_cards WHERE true"
              " ON CONFLICT(number) DO UPDATE SET pass_id = excluded.pass_id")
    c.execute("DROP TABLE snapshot_cards")
    c.execute("INSERT INTO meta(key, value) VALUES ('passes_version', '2') ON CONFLICT(key) DO UPDATE SET value = excluded.value")
    c.execute("COMMIT")
    dt = time.perf_counter() - t0
    c.execute("PRAGMA cache_size=-2000")
    return dt


def swap_lock(directory: Path, n: int, n_cards: int, reps: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """The write lock a snapshot's swap holds, n passes and n_cards bound cards (every
    binding changed) replacing a table as large, ours and the old code's alternately
    (A B A B). Returns ours, old, our longest cleanup transaction and our whole cleanup,
    seconds per rep."""
    ours_s = Store(directory / "swap-ours.db")
    _stage_ours(ours_s, n, n_cards, "a")
    ours_s.snapshot_commit(1)
    with ours_s.write() as c:
        _history(c, n_cards)
    old_c = _old_db(directory / "swap-old.db", n, n_cards)
    ours, old, chunk, cleanup = [], [], [], []
    try:
        for k in range(reps):
            tag = "ba"[k % 2]
            _stage_ours(ours_s, n, n_cards, tag)
            with _timed_writes(ours_s) as txns:
                ours_s.snapshot_commit(k + 2)
            swap = [dt for sql, dt in txns if "RENAME TO passes_old" in sql]
            rest = [dt for sql, dt in txns if "RENAME TO passes_old" not in sql]
            if len(swap) != 1 or ours_s.pass_count() != n or ours_s.card_pass("10000000") != f"{tag}0000000":
                raise RuntimeError("snapshot swap not applied")
            ours.append(swap[0])
            chunk.append(max(rest, default=0.0))
            cleanup.append(sum(rest))
            old.append(_old_stage_and_swap(old_c, n, n_cards, tag))
    finally:
        ours_s.close()
        old_c.close()
    return ours, old, chunk, cleanup


def run(ctx: Context) -> list[Figure]:
    from tests.mqtt_broker import Broker

    figures: list[Figure] = []
    n = ctx.reps(2000, 10_000)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp, Broker() as broker:
        path = Path(tmp) / "gate.db"
        central = CentralProcess(Path(tmp) / "central", broker).start()
        ours, raw = [], []
        backlog_curve = []
        try:
            for _ in range(ctx.reps(2, 3)):  # A B A B
                ours.append(drain_ours(broker.port, path, n, central))
                raw.append(drain_paho(broker.port, n))
            for size in ([1000, 10_000] if ctx.quick else [1000, 10_000, 100_000]):
                backlog_curve.append((size, drain_ours(broker.port, path, size, central)))
        finally:
            central.stop()
        import statistics

        o, r = statistics.median(ours), statistics.median(raw)
        figures.append(Figure("outbox.drain_vs_paho", o, "msg/s", r, o / r,
                              note=f"{n:,} events from the SQLite outbox until central's receipt (stored at central)"
                                   " vs raw paho QoS 1 until PUBACK, 20 in flight"))
        for size, rate in backlog_curve:
            figures.append(Figure(f"outbox.drain@{size // 1000}k", rate, "msg/s",
                                  note=f"backlog of {size:,} events, until receipted by central"))
        _plot(backlog_curve, ctx.plot_dir)
        snap_n = ctx.reps(100_000, 1_000_000)
        s = snapshot_apply(Path(tmp) / "snap.db", snap_n)
        figures.append(Figure("snapshot.1m_s" if snap_n == 1_000_000 else "snapshot.100k_s", s, "s",
                              note=f"{snap_n:,}-pass snapshot: verify, hash, inflate, parse, swap (target ≤ 8 s for 1M)", pi4=True))
        dl = delta_apply(Path(tmp) / "snap.db", 10_000)
        figures.append(Figure("delta.10k_s", dl, "s", note="10,000-change signed batch applied (target ≤ 0.5 s)", pi4=True))
        (Path(tmp) / "snap.db").unlink()
        swap_n = ctx.reps(100_000, 1_000_000)
        ours, old, chunk, cleanup = swap_lock(Path(tmp), swap_n, swap_n // 2, ctx.reps(1, 3))
        sw, ol, ch = statistics.median(ours), statistics.median(old), statistics.median(chunk)
        size = f"{swap_n // 1000}k" if swap_n < 1_000_000 else "1m"
        figures.append(Figure(f"snapshot.swap_lock_s.{size}", sw, "s", ol, statistics.median(a / b for a, b in zip(ours, old)),
                              note=f"write lock held by the snapshot swap, {swap_n:,} passes + {swap_n // 2:,} cards replacing"
                                   f" a different table as large (every binding changed); baseline: the old swap (DROP TABLE"
                                   f" passes, rewrite every card row) on the same data", pi4=True))
        figures.append(Figure(f"snapshot.cleanup_chunk_s.{size}", ch, "s", ol, statistics.median(a / b for a, b in zip(chunk, old)),
                              note=f"the longest of the swapped-out tables' cleanup transactions ({statistics.median(cleanup):.2f} s"
                                   f" in all, after the swap); baseline: the old swap", pi4=True))
    ctx.implications.append(f"outbox drains at {o:,.0f} events/s here ({o / r:.0%} of raw paho); a day's traffic at a busy gate is a few thousand")
    ctx.implications.append(f"a {swap_n:,}-pass snapshot holds the write lock {sw * 1e3:.0f} ms to swap in (was {ol:.2f} s) and at most"
                            f" {ch * 1e3:.0f} ms per cleanup transaction: a decision waits no longer than that")
    return figures


def _plot(curve: list[tuple[int, float]], directory: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("events waiting in the outbox")
    ax.set_ylabel("events/s delivered (receipted by central)")
    ax.set_title("Outbox drain (this machine)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "outbox_drain.png", dpi=120)
    plt.close(fig)
