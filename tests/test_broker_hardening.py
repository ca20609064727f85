"""The broker cannot be turned against the site (issue 12, findings 2, 3 and 4),
each tried against a real mosquitto started from the shipped docs/mosquitto.conf
and docs/mosquitto.acl (tests/docs_broker.py), with a real gate and central."""
from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from tests.docs_broker import docs_broker, docs_lines
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central

USERS = {"drill": "gate-pw", "rogue": "rogue-pw", "central": "central-pw"}
PREFIX = "gate/v1/drill"


def gate_drill(b: Broker, d: Path, receipt_timeout_s: float = 1.0) -> drill_file.Drill:
    """A gate on broker b as user `drill`. A short receipt timeout makes a lost event
    be sent again soon; a test that asserts nothing was sent again gives central's
    receipt longer than a busy machine's stall (a swallowed event is still resent
    well within its drain)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "gate.pw").write_text("gate-pw\n", encoding="utf-8")
    return drill_file.parse(textwrap.dedent(f"""
        name: hardening
        start: "2026-11-22T10:00:00+08:00"
        config:
          policy: {{passback: "off"}}
          sync: {{broker: "{b.url}", username: drill, password_file: "{d / 'gate.pw'}", receipt_timeout_s: {receipt_timeout_s},
                  backoff_s: [0.2, 1.0]}}
        passes:
          - {{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}
          - {{id: r2, holder: 王强, unit: 3-2-502, category: resident}}
        """))


def central_for(d: Path, b: Broker, key: Ed25519PrivateKey, *, wait: bool = True) -> Any:
    (d / "central.pw").parent.mkdir(parents=True, exist_ok=True)
    (d / "central.pw").write_text("central-pw\n", encoding="utf-8")
    return start_central(d, b.url, key, extra=f'username = "central"\npassword_file = "{d / "central.pw"}"\n', wait=wait)


def enter(r: Rehearsal, at: float, pass_id: str) -> None:
    r.step(Step(at=at, lane="in", qr=pass_id))
    r.step(Step(at=at + 0.5, lane="in", temperature=36.5))


def gate_ids(r: Rehearsal) -> set[str]:
    s = r.app.open_store()
    try:
        return {row[0] for row in s.conn.execute("SELECT id FROM events")}
    finally:
        s.close()


class Client:
    """A raw MQTT v5 client logged in as some user (a compromised gate, or a gate's publisher)."""

    def __init__(self, b: Broker, user: str, client_id: str, *, clean_start: bool = True) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, USERS[user])
        self.got: list[str] = []
        self.acks: dict[int, Any] = {}
        self.connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        self.c.on_message = lambda c, u, m: self.got.append(m.topic)
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean_start else 3600
        self.c.connect(b.host, b.port, clean_start=clean_start, properties=props)
        self.c.loop_start()
        assert self.connected.wait(5), f"{user} could not connect"

    def publish(self, topic: str, payload: bytes) -> Any:
        info = self.c.publish(topic, payload, qos=1)
        assert Listener.wait_for(lambda: info.mid in self.acks, 5)
        return self.acks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_the_shipped_config_is_what_is_tested() -> None:
    lines = docs_lines()
    for must in ("allow_anonymous false", "use_username_as_clientid true", "persistence true", "autosave_on_changes true"):
        assert must in lines, must
    acl = (Path(__file__).resolve().parents[1] / "docs" / "mosquitto.acl").read_text(encoding="utf-8")
    assert "pattern read gate/v1/+/%u/receipt" in acl


def test_finding_2_a_rogue_share_subscriber_swallows_no_event(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A compromised gate subscribes to central's shared subscription under the group
    name the docs used to give ("central") and under its own: every event still reaches
    central on its first try, and the rogue receives none of them."""
    b = docs_broker(broker_factory, tmp_path / "broker", USERS)
    with Rehearsal(gate_drill(b, tmp_path / "gate", receipt_timeout_s=10.0), broker=None) as r:
        central = central_for(tmp_path / "central", b, r.keys.central)
        rogue = Client(b, "rogue", "rogue")
        for topic in (f"$share/central/{PREFIX}/+/events", "$share/central/gate/v1/+/+/events",
                      f"$share/x/{PREFIX}/+/events", f"{PREFIX}/+/events"):
            rogue.c.subscribe(topic, qos=1)
        time.sleep(0.3)
        assert r.app.sync.link.wait_connected(10)
        for i in range(9):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        pub = r.app.sync.publisher
        assert r.drain(30), pub.counters.snapshot()
        stored = {e["id"] for e in central.store.events("drill")}
        assert stored == gate_ids(r) and len(stored) >= 18
        # Nothing had to be sent twice: the rogue took no share.
        assert not pub.counters.get("resent") and not pub.counters.get("asked_again"), pub.counters.snapshot()
        assert not [t for t in rogue.got if t.endswith("/events")]
        rogue.close()
        central.stop()


def test_finding_3_broker_restart_while_central_is_offline_loses_nothing(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """mosquitto 2.0 does not restore an offline session's shared subscription after a
    restart: the gates' events get PUBACK 16 "No matching subscribers" (a success code)
    and are dropped. They are not delivered until central has stored them."""
    b = docs_broker(broker_factory, tmp_path / "broker", USERS, persistence=True)
    with Rehearsal(gate_drill(b, tmp_path / "gate")) as r:
        central = central_for(tmp_path / "central", b, r.keys.central)
        central.stop()  # its persistent session stays on the broker
        b.restart()
        assert Listener.wait_for(lambda: r.app.sync.link.connected, 15)
        for i in range(5):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        pub = r.app.sync.publisher
        assert Listener.wait_for(lambda: pub.counters.get("no_subscribers") >= 1, 10), pub.counters.snapshot()
        central = central_for(tmp_path / "central", b, r.keys.central)
        assert r.drain(60), pub.counters.snapshot()
        assert {e["id"] for e in central.store.events("drill")} == gate_ids(r)
        assert len([e for e in central.store.events("drill") if e["type"] == "decision"]) == 5
        central.stop()


def test_finding_4_a_gate_cannot_take_centrals_session(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A gate connecting with central's client id (the configured one, or its user
    name) neither knocks central off nor wipes the queue the broker keeps for it."""
    b = docs_broker(broker_factory, tmp_path / "broker", USERS, persistence=True)
    key = Ed25519PrivateKey.generate()
    central = central_for(tmp_path / "central", b, key)
    for cid in (central.client_id, "central"):
        Client(b, "rogue", cid).close()
    time.sleep(0.5)
    assert "already connected, closing old connection" not in b.log(), b.log()[-2000:]
    assert central.peer.connected.is_set()
    central.stop()  # the broker queues the gates' events for it
    gate = Client(b, "drill", "drill")
    ids = []
    for seq in range(1, 12):
        ev = {"id": str(uuid.uuid4()), "seq": seq, "gate": "drill", "ts": datetime.now(timezone.utc).isoformat(),
              "clock": "ok", "type": "decision", "lane": "in", "pass": "r1", "credential": "qr", "category": "resident",
              "decision": "allow", "reason": "ok", "temperature_c": 36.5}
        ids.append(ev["id"])
        assert not gate.publish(f"{PREFIX}/drill/events", json.dumps(ev).encode()).is_failure
    gate.close()
    # The takeover: a clean start under central's ids would throw its queue away.
    for cid in (central.client_id, "central"):
        Client(b, "rogue", cid, clean_start=True).close()
    central = central_for(tmp_path / "central", b, key)
    assert Listener.wait_for(lambda: central.store.event_count("drill") == 11, 15), central.store.event_count("drill")
    assert {e["id"] for e in central.store.events("drill")} == set(ids)
    central.stop()
