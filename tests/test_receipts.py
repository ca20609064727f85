"""End-to-end receipts (issue 12): an event is delivered when central has stored
it, whatever the broker said. Real mosquitto, real central, real gate store."""
from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path

from gate import drill_file
from gate.drill import Rehearsal
from gate.drill_file import Step
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
