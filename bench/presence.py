"""Presence across a site: an entry decided at gate A, applied at gate B, with many
gates on the broker and many people inside.

Gates A and B are real gates (the drill runner's app with sync, as in
tests/test_site_presence.py); the other gates of the site are MQTT v5 clients that
follow central's presence topics the way a gate does (they only listen: the broker's
fan-out to every gate is the load that matters). One reference central (SQLite: two
instances share a presence log only through PostgreSQL) holds a presence log seeded
with the people inside; A and B catch up from it first through the real replay, so
B's store also holds everyone inside when the timing starts.

Measured per sample: the wall time from A's lane deciding `allow` to B's sync having
applied that movement to B's store (the moment B would refuse the pass for
passback). Baseline, interleaved in the same run: the broker's own round trip, a QoS 1
publish from one client to another through the same mosquitto."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import statistics
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core import Context, Figure

TITLE = "presence: an entry at gate A applied at gate B, many gates, many inside"
SITE = "drill"


def _followers(port: int, first: int, count: int, ready: Any, stop: Any) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []
    for g in range(first, first + count):
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"f{g:04d}", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(f"gate/v1/{SITE}/presence", 1),
                                                             (f"gate/v1/{SITE}/presence/head", 1)])
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    ready.set()
    stop.wait()
    for c in clients:
        c.loop_stop()
        c.disconnect()


def _seed(db: Path, inside: int) -> None:
    """`inside` people in central's presence log (as if they had entered at a gate that
    is not in the bench), published already: only replays carry them."""
    at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    con = sqlite3.connect(db, timeout=30)
    with con:
        con.executemany("INSERT INTO presence_items (key, seq, body) VALUES (?,?,?)", (
            (f"move:s{i}", i, json.dumps({"kind": "move", "pass": f"s{i}", "direction": "in", "at": at,
                                          "gate": "seed", "seq": i}, separators=(",", ":")))
            for i in range(1, inside + 1)))
        con.execute("UPDATE meta SET value = ? WHERE key IN ('presence_seq', 'presence_published')", (str(inside),))
    con.close()


class _RoundTrip:
    """The broker's own round trip: QoS 1 from one client to another."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.got = threading.Event()
        self.rx = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="rtt-rx", protocol=mqtt.MQTTv5)
        self.rx.on_message = lambda *a: self.got.set()
        subscribed = threading.Event()
        self.rx.on_subscribe = lambda *a: subscribed.set()
        self.rx.on_connect = lambda c, *a: c.subscribe("bench/rtt", 1)
        self.tx = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="rtt-tx", protocol=mqtt.MQTTv5)
        for c in (self.rx, self.tx):
            c.connect("127.0.0.1", port)
            c.loop_start()
        subscribed.wait(10)

    def once(self) -> float:
        self.got.clear()
        t0 = time.perf_counter()
        self.tx.publish("bench/rtt", b"x" * 200, qos=1)
        if not self.got.wait(10):
            raise RuntimeError("the broker round trip timed out")
        return time.perf_counter() - t0

    def close(self) -> None:
        for c in (self.rx, self.tx):
            c.loop_stop()
            c.disconnect()


DRILL = """
    name: bench gate
    start: "{start}"
    config:
      gate: {{id: {gate}, site: drill}}
      policy: {{passback: hard}}
    passes:
{passes}
    steps: []
"""


def _gate(name: str, broker_url: str, pub: Path, store: Path, samples: int, on_line: Any = None) -> Any:
    from gate.drill import file as drill_file
    from gate.drill.runner import Rehearsal
    from tests.sync_helpers import trust_central

    start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    passes = "\n".join(f"      - {{id: p{i}, holder: h{i}, unit: 1-1-{i}, category: resident}}" for i in range(samples))
    text = textwrap.dedent(DRILL.format(gate=name, start=start, passes=passes))
    r = Rehearsal(drill_file.parse(text), broker=broker_url, store_path=store, on_line=on_line)
    trust_central(r, [pub])
    return r


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))]


def run(ctx: Context) -> list[Figure]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gate.drill.file import Step
    from sync.central import Central, load_central_config
    from tests.mqtt_broker import Broker

    n_gates = ctx.reps(50, 500)
    inside = ctx.reps(10_000, 100_000)
    samples = ctx.reps(30, 200)
    procs = 4
    with tempfile.TemporaryDirectory(prefix="bench-presence-") as tmp, Broker(extra=["max_connections -1"]) as broker:
        d = Path(tmp)
        key = Ed25519PrivateKey.generate()
        (d / "central.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        pub = d / "central.pub"
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        conf = d / "central.toml"
        conf.write_text(f'site = "{SITE}"\nbroker = "{broker.url}"\nsigning_key = "central.key"\ndb = "central.db"\n'
                        'poll_s = 0.5\npresence_heartbeat_s = 10\n', encoding="utf-8")
        central = Central(load_central_config(conf)).start()
        stop = mp.Event()
        readies = [mp.Event() for _ in range(procs)]
        others = n_gates - 2
        per = [others // procs + (1 if k < others % procs else 0) for k in range(procs)]
        workers = [mp.Process(target=_followers, args=(broker.port, sum(per[:k]), per[k], readies[k], stop))
                   for k in range(procs)]
        decided: dict[str, float] = {}

        def on_line(line: dict[str, Any]) -> None:
            if line.get("type") == "decision" and line.get("decision") == "allow":
                decided[line["pass"]] = time.perf_counter()

        a = _gate("gate-a", broker.url, pub, d / "a.db", samples, on_line)
        b = _gate("gate-b", broker.url, pub, d / "b.db", samples)
        b.app.keyring.add(a.keys.central.public_key())
        b.tokens = dict(a.tokens)
        lat: list[float] = []
        rtt: list[float] = []
        rt = None
        try:
            if not central.wait_connected(30):
                raise RuntimeError("central did not connect")
            _seed(d / "central.db", inside)
            for w in workers:
                w.start()
            with a, b:
                for g in (a, b):
                    if not g.app.sync.link.wait_connected(30):
                        raise RuntimeError("a gate did not connect")
                t0 = time.monotonic()
                for g in (a, b):  # both learn who is inside from central's log (the real replay)
                    if not g.app.sync.presence_caught_up(600):
                        raise RuntimeError("a gate did not catch up with central's presence log")
                caught = time.monotonic() - t0
                ctx.log(f"  presence: two gates caught up with {inside:,} inside in {caught:.1f} s")
                for ready in readies:
                    ready.wait(60)
                time.sleep(2.0 + n_gates / 200)  # every follower connected and subscribed
                rt = _RoundTrip(broker.port)
                applied = b.app.sync.downstream.counters
                for i in range(samples):
                    rtt.append(rt.once())
                    before = applied.get("presence_applied")
                    a.step(Step(at=10.0 * i, lane="in", qr=f"p{i}"))
                    a.step(Step(at=10.0 * i + 0.5, lane="in", temperature=36.5))
                    deadline = time.monotonic() + 30
                    while applied.get("presence_applied") <= before and time.monotonic() < deadline:
                        time.sleep(0.0002)
                    done = time.perf_counter()
                    if f"p{i}" not in decided or applied.get("presence_applied") <= before:
                        raise RuntimeError(f"sample {i}: the entry at A did not reach B")
                    lat.append(done - decided[f"p{i}"])
                    time.sleep(0.05)
                store_b = b.app.open_store()
                try:
                    n_inside = store_b.conn.execute("SELECT count(*) FROM inside").fetchone()[0]
                finally:
                    store_b.close()
        finally:
            if rt is not None:
                rt.close()
            stop.set()
            for w in workers:
                w.join(30)
            central.stop()
    p50, p99 = statistics.median(lat), _pct(lat, 0.99)
    r50, r99 = statistics.median(rtt), _pct(rtt, 0.99)
    cond = f"{n_gates} gates on one broker, {n_inside:,} inside at B, one central (SQLite)"
    ctx.implications.append(f"presence: an entry at gate A is applied at gate B in {p50 * 1000:.1f} ms (p50), "
                            f"{p99 * 1000:.1f} ms (p99) over {samples} entries; {cond}; target p99 < 1 s")
    return [
        Figure("presence.latency_p50_s", p50, "s", baseline=r50, ratio=p50 / r50,
               note=f"entry decided at A → applied at B, median of {samples}; {cond}; baseline: broker QoS 1 round trip"),
        Figure("presence.latency_p99_s", p99, "s", baseline=r99, ratio=p99 / r99,
               note="the same, p99; target < 1 s; baseline: broker QoS 1 round trip p99"),
    ]
