"""End-to-end receipts (issue 12): an event is delivered when central has stored
it, whatever the broker said. Real mosquitto, real central, real gate store."""
from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: receipts
        start: "2026-11-22T10:00:00+08:00"
        config: {policy: {passback: "off"}, sync: {receipt_timeout_s: 1.0}}
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
          - {id: r2, holder: 王强, unit: 3-2-502, category: resident}
        """
    )
)


def enter(r: Rehearsal, at: float, pass_id: str = "r1") -> None:
    r.step(Step(at=at, lane="in", qr=pass_id))
    r.step(Step(at=at + 0.5, lane="in", temperature=36.5))


def states(r: Rehearsal) -> dict[str, int]:
    c = sqlite3.connect(r.config.store.path)
    try:
        return dict(c.execute("SELECT state, count(*) FROM outbox WHERE topic IS NULL GROUP BY state").fetchall())
    finally:
        c.close()


def gate_seqs(r: Rehearsal) -> set[int]:
    c = sqlite3.connect(r.config.store.path)
    try:
        return {s for (s,) in c.execute("SELECT seq FROM events")}
    finally:
        c.close()


def test_pending_means_not_yet_stored_at_central(broker: Broker, tmp_path: Path) -> None:
    """The broker acks every event, but until central has stored them they stay
    pending (the guard page's and the status's outbox depth); central's receipt
    then clears them, and the outbox drains."""
    with Rehearsal(DRILL, broker=broker.url) as r:
        assert r.app.sync.link.wait_connected(10)
        for i in range(4):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        pub = r.app.sync.publisher
        # Nobody subscribed: mosquitto acks with 16 "No matching subscribers", a success code.
        assert Listener.wait_for(lambda: pub.counters.get("no_subscribers") >= 4, 10)
        assert not r.drain(2), "drained with nobody storing the events"
        assert states(r).get("pending", 0) == len(gate_seqs(r)) and r.app.open_store().outbox_depth() >= len(gate_seqs(r))
        c = start_central(tmp_path / "central", broker.url, r.keys.central)
        try:
            # Central was not subscribed when they went: the gate sends them again.
            assert r.drain(20), pub.counters.snapshot()
            assert states(r) == {"sent": len(gate_seqs(r))}
            assert {e["seq"] for e in c.store.events("drill")} == gate_seqs(r)
        finally:
            c.stop()


def stream(r: Rehearsal, n: int, start: float = 0.0) -> None:
    for i in range(n):
        enter(r, start + i * 60.0, "r1" if i % 2 == 0 else "r2")


def check_central(r: Rehearsal, central) -> None:  # type: ignore[no-untyped-def]
    rows = central.store.events("drill")
    ids = [e["id"] for e in rows]
    assert len(ids) == len(set(ids)), "central holds an event twice"
    assert set(ids) == {e["id"] for e in r.app.open_store().events()}, "central and the gate disagree"
    assert states(r) == {"sent": len(ids)}


@pytest.mark.parametrize("persistence", [False, True])
def test_broker_restarts_mid_stream_lose_nothing(broker_factory, tmp_path: Path, persistence: bool) -> None:  # type: ignore[no-untyped-def]
    """Events the broker had acked (and, without persistence, forgot in a restart)
    are sent again until central's receipt covers them."""
    extra = [f"persistence {'true' if persistence else 'false'}", f"persistence_location {tmp_path}/"]
    b = broker_factory(extra=extra)
    with Rehearsal(DRILL, broker=b.url) as r:
        central = start_central(tmp_path / "central", b.url, r.keys.central)
        stream(r, 3)
        central.stop()  # the broker now queues for central (or, without persistence, loses it in the restart)
        stream(r, 3, 1000.0)
        assert Listener.wait_for(lambda: r.app.sync.publisher.counters.get("no_subscribers") + len(r.app.sync.publisher._waiting) >= 1, 10)
        b.restart()
        stream(r, 3, 2000.0)
        central = start_central(tmp_path / "central", b.url, r.keys.central)
        stream(r, 3, 3000.0)
        r.finish()
        assert r.drain(60), r.app.sync.publisher.counters.snapshot()
        check_central(r, central)
        central.stop()


def test_through_a_bridge_with_the_site_broker_restarted(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Gate → site mosquitto → bridge → central's mosquitto → central, and the
    receipts back the same way; the site broker (no persistence) restarts mid-stream."""
    central_broker = broker_factory(name="central")
    p = "gate/v1/drill"
    site = broker_factory(name="site", extra=[
        "connection central", f"address 127.0.0.1:{central_broker.port}", "bridge_protocol_version mqttv50",
        "remote_clientid bridge-drill", "cleansession false", "restart_timeout 1",
        f"topic {p}/+/events out 1", f"topic {p}/+/status out 1", f"topic {p}/+/report out 1",
        f"topic {p}/+/snapshot/request out 1", f"topic {p}/passes in 1", f"topic {p}/policy in 1",
        f"topic {p}/+/cmd in 1", f"topic {p}/+/snapshot in 1", f"topic {p}/+/receipt in 1",
    ])
    with Rehearsal(DRILL, broker=site.url) as r:
        central = start_central(tmp_path / "central", central_broker.url, r.keys.central)
        assert Listener.wait_for(lambda: "bridge-drill" in central_broker.log(), 10)
        stream(r, 3)
        site.restart()
        stream(r, 3, 1000.0)
        r.finish()
        assert r.drain(60), r.app.sync.publisher.counters.snapshot()
        check_central(r, central)
        central.stop()


def test_central_asks_for_a_hole_and_the_gate_fills_it(broker: Broker, tmp_path: Path) -> None:
    """Seq 3 never reaches central: its receipt says upto 2, lists 4-5 as stored and
    3 as missing (again a few seconds later while it stays open)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gate.core.tokens import KeyRing
    from sync import receipts

    key = Ed25519PrivateKey.generate()
    central = start_central(tmp_path / "central", broker.url, key)
    ring = KeyRing([key.public_key()])
    gate = Listener(broker.port, topic="gate/v1/drill/g7/receipt", client_id="g7")
    try:
        def ev(seq: int) -> bytes:
            import json
            import uuid

            return json.dumps({"id": str(uuid.uuid4()), "seq": seq, "gate": "g7", "ts": "2026-11-22T10:00:00+08:00",
                               "clock": "ok", "type": "decision", "lane": "in", "pass": "r1", "credential": "qr",
                               "category": "resident", "decision": "allow", "reason": "ok", "temperature_c": 36.5}).encode()

        for seq in (1, 2, 4, 5):
            gate.publish("gate/v1/drill/g7/events", ev(seq))

        def latest() -> receipts.Receipt | None:
            raws = [m for t, m in gate.messages if t.endswith("/receipt")]
            if not raws:
                return None
            import json

            return receipts.read(json.dumps(raws[-1]).encode() if isinstance(raws[-1], dict) else raws[-1], ring, "g7")

        assert Listener.wait_for(lambda: (x := latest()) is not None and x.missing == ((3, 3),), 20), (latest(), central.stats())
        r = latest()
        assert r is not None and r.upto == 2 and (4, 5) in r.ranges
        n = len(gate.messages)
        assert Listener.wait_for(lambda: len(gate.messages) > n, 20), "the hole was not asked for again"
        gate.publish("gate/v1/drill/g7/events", ev(3))
        assert Listener.wait_for(lambda: (x := latest()) is not None and x.upto == 5 and not x.missing, 20), latest()
    finally:
        gate.close()
        central.stop()


def test_a_receipt_naming_another_event_marks_only_what_it_lists(tmp_path: Path) -> None:
    """A gate whose store was replaced starts its seqs again at 1: central's mark for
    seq N names the old event, so the gate does not take it as covering its own."""
    from gate.store.database import Store
    from sync import receipts

    s = Store(tmp_path / "g.db")
    with s.write() as c:
        c.executemany("INSERT INTO outbox(seq, event_id, payload, state, created) VALUES (?,?,'{}','pending',0)",
                      [(i, f"new-{i}") for i in range(1, 6)])
    with s.write() as c:
        marked, trusted = receipts.apply(c, receipts.Receipt("g", 5, "old-5", ((2, 3),)), 1.0)
    assert (marked, trusted) == (2, False)
    with s.write() as c:
        marked, trusted = receipts.apply(c, receipts.Receipt("g", 4, "new-4"), 1.0)
    assert (marked, trusted) == (2, True)
    assert [r[0] for r in s.conn.execute("SELECT seq FROM outbox WHERE state = 'pending'")] == [5]
    s.close()


def test_without_receipts_puback_16_is_still_not_delivery(broker: Broker, tmp_path: Path) -> None:
    """receipts = false (a central that sends none): a PUBACK counts again, but 16
    "No matching subscribers" does not; the events go once someone listens."""
    drill = DRILL.model_copy(update={"config": {**DRILL.config, "sync": {"receipts": False}}})
    with Rehearsal(drill, broker=broker.url) as r:
        stream(r, 2)
        r.finish()
        pub = r.app.sync.publisher
        assert Listener.wait_for(lambda: pub.counters.get("no_subscribers") >= 2, 10)
        assert states(r).get("sent", 0) == 0
        listener = Listener(broker.port, topic="gate/v1/drill/#", client_id="someone")
        assert r.drain(40), pub.counters.snapshot()
        # The broker's PUBACK can reach the gate before the listener has its copy: wait for it.
        assert Listener.wait_for(lambda: {e["seq"] for e in listener.on("/events")} == gate_seqs(r), 10), \
            ({e["seq"] for e in listener.on("/events")}, gate_seqs(r))
        listener.close()
