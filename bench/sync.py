"""Sync: outbox drain against raw paho, snapshot and delta apply, many gates.

The broker is a real mosquitto on a loopback port (as in the tests)."""
from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing as mp
import tempfile
import threading
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from bench.core import Context, Figure
from gate.config import PolicyConfig
from gate.passes import KeyRing
from gate.store import Store
from sync import codec
from sync.downstream import Downstream, Hooks
from sync.link import Link, LinkConfig
from sync.outbox import Publisher
from sync.topics import Topics

TITLE = "sync: outbox, snapshot, delta, many gates"
TOPICS = Topics("gate/v1/bench", "g1")


def _event(seq: int) -> str:
    # A typical decision event, ~300 bytes like the real ones.
    return json.dumps({
        "id": str(uuid.uuid4()), "seq": seq, "gate": "g1", "ts": "2026-11-22T08:00:00+08:00", "clock": "ok",
        "type": "decision", "lane": "in", "pass": f"p{seq:07d}", "credential": "qr", "category": "resident",
        "decision": "allow", "reason": "ok", "temperature_c": 36.4,
    }, separators=(",", ":"))


def _fill_outbox(path: Path, n: int) -> None:
    s = Store(path)
    now = time.time()
    with s.write() as c:
        c.execute("DELETE FROM outbox")
        c.executemany(
            "INSERT INTO outbox(seq, event_id, payload, state, created) VALUES (?,?,?,'pending',?)",
            [(i, str(i), _event(i), now) for i in range(1, n + 1)],
        )
    s.close()


def drain_ours(port: int, path: Path, n: int) -> float:
    _fill_outbox(path, n)
    link = Link(LinkConfig(host="127.0.0.1", port=port, client_id=f"bench-{uuid.uuid4().hex[:6]}"))
    pub = Publisher(link, lambda: Store(path), TOPICS.events, window=20)
    link._on_state, link._on_ack = pub.on_state, pub.on_ack  # noqa: SLF001 - wire as SyncService does
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
    payloads = [_event(i).encode() for i in range(1, n + 1)]
    done = threading.Semaphore(0)
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(20)
    c.on_publish = lambda *a: done.release()
    t0 = time.perf_counter()
    c.connect("127.0.0.1", port)
    c.loop_start()
    for p in payloads:
        c.publish(TOPICS.events, p, qos=1)
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


def run(ctx: Context) -> list[Figure]:
    from tests.mqtt_broker import Broker

    figures: list[Figure] = []
    n = ctx.reps(2000, 10_000)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp, Broker() as broker:
        path = Path(tmp) / "gate.db"
        ours, raw = [], []
        for _ in range(ctx.reps(2, 3)):  # A B A B
            ours.append(drain_ours(broker.port, path, n))
            raw.append(drain_paho(broker.port, n))
        import statistics

        o, r = statistics.median(ours), statistics.median(raw)
        figures.append(Figure("outbox.drain_vs_paho", o, "msg/s", r, o / r,
                              note=f"{n:,} events from the SQLite outbox (PUBACK → marked sent) vs raw paho QoS 1, 20 in flight"))
        backlog_curve = []
        for size in ([1000, 10_000] if ctx.quick else [1000, 10_000, 100_000]):
            rate = drain_ours(broker.port, path, size)
            backlog_curve.append((size, rate))
            figures.append(Figure(f"outbox.drain@{size // 1000}k", rate, "msg/s", note=f"backlog of {size:,} events"))
        _plot(backlog_curve, ctx.plot_dir)
        snap_n = ctx.reps(100_000, 1_000_000)
        s = snapshot_apply(Path(tmp) / "snap.db", snap_n)
        figures.append(Figure("snapshot.1m_s" if snap_n == 1_000_000 else "snapshot.100k_s", s, "s",
                              note=f"{snap_n:,}-pass snapshot: verify, hash, inflate, parse, swap (target ≤ 10 s for 1M)", pi4=True))
        dl = delta_apply(Path(tmp) / "snap.db", 10_000)
        figures.append(Figure("delta.10k_s", dl, "s", note="10,000-change signed batch applied (target ≤ 0.5 s)", pi4=True))
    ctx.implications.append(f"outbox drains at {o:,.0f} events/s here ({o / r:.0%} of raw paho); a day's traffic at a busy gate is a few thousand")
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
    ax.set_ylabel("events/s delivered (PUBACKed)")
    ax.set_title("Outbox drain (this machine)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "outbox_drain.png", dpi=120)
    plt.close(fig)
