"""Many gates, one broker, two central instances sharing the load.

Each simulated gate is an MQTT v5 client publishing its events at QoS 1, the way
the outbox does; two reference central instances consume them through a shared
subscription and store them by id. Reported: messages per second end to end
(first publish → last event stored), and how many were lost or duplicated."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.core import Context, Figure

TITLE = "fleet: gates → broker → two centrals"


def _gates(port: int, site: str, first: int, count: int, per_gate: int, go: "mp.synchronize.Event") -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []
    acked = threading.Semaphore(0)
    for g in range(first, first + count):
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"g{g:04d}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(20)
        c.on_publish = lambda *a: acked.release()
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append((g, c))
    go.wait()
    for seq in range(1, per_gate + 1):
        for g, c in clients:
            body = {"id": str(uuid.uuid4()), "seq": seq, "gate": f"g{g:04d}", "ts": "2026-11-22T08:00:00+08:00",
                    "clock": "ok", "type": "decision", "lane": "in", "pass": f"p{seq}", "credential": "qr",
                    "category": "resident", "decision": "allow", "reason": "ok", "temperature_c": 36.5}
            c.publish(f"gate/v1/{site}/g{g:04d}/events", json.dumps(body, separators=(",", ":")), qos=1)
    for _ in range(count * per_gate):
        acked.acquire(timeout=120)
    for _, c in clients:
        c.loop_stop()
        c.disconnect()


def run(ctx: Context) -> list[Figure]:
    from gate.core.tokens import new_keypair
    from sync.central import Central, load_central_config
    from tests.mqtt_broker import Broker

    n_gates = ctx.reps(50, 500)
    per_gate = ctx.reps(10, 20)
    total = n_gates * per_gate
    procs = 5
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp, Broker(extra=["max_connections -1"]) as broker:
        d = Path(tmp)
        new_keypair(d, "central")
        centrals = []
        for i in (1, 2):
            conf = d / f"central{i}.toml"
            conf.write_text(f'site = "fleet"\nbroker = "{broker.url}"\ninstance = "{i}"\nsigning_key = "{d / "central.key"}"\n'
                            f'db = "{d / f"central{i}.db"}"\n', encoding="utf-8")
            c = Central(load_central_config(conf))
            c.start()
            if not c.wait_connected(30):
                raise RuntimeError("central did not connect")
            centrals.append(c)
        go = mp.Event()
        per_proc = n_gates // procs
        workers = [mp.Process(target=_gates, args=(broker.port, "fleet", k * per_proc, per_proc, per_gate, go)) for k in range(procs)]
        for w in workers:
            w.start()
        time.sleep(2.0 + n_gates / 200)  # all connected
        t0 = time.perf_counter()
        go.set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sum(c.store.event_count() for c in centrals) < total:
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        for w in workers:
            w.join(60)
        time.sleep(1.0)  # any late duplicates land
        ids: list[str] = []
        for c in centrals:
            c.stop()
        for i in (1, 2):
            con = sqlite3.connect(d / f"central{i}.db")
            ids += [r[0] for r in con.execute("SELECT id FROM events")]
            con.close()
    unique = len(set(ids))
    lost, dup = total - unique, len(ids) - unique
    ctx.implications.append(f"{n_gates} gates × {per_gate} events through one mosquitto into two centrals: "
                            f"{total / dt:,.0f} msg/s, {lost} lost, {dup} duplicated")
    return [
        Figure(f"fleet.{n_gates}_gates_msg_s", total / dt, "msg/s", note=f"{n_gates} gates, {total:,} events, two centrals (shared subscription)"),
        Figure("fleet.lost", float(lost), "events", note="target 0"),
        Figure("fleet.duplicated", float(dup), "events", note="target 0 (central stores by id)"),
    ]
