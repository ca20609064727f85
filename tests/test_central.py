"""The reference central against a real mosquitto (tests/mqtt_broker.py)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest

from gate.config import ConfigError, PolicyConfig
from gate.core.tokens import KeyRing, load_public, new_keypair
from sync import codec
from sync.central import (
    Central, CentralConfig, CentralStore, RosterError, Signer, build_snapshot, load_central_config, read_snapshot,
    wire_pass,
)
from sync.codec import PayloadError
from tests.mqtt_broker import Broker, make_password_file  # fixtures broker, broker_factory: tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
SITE = "s1"
PREFIX = f"gate/v1/{SITE}"


# ---------------------------------------------------------------- helpers


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def event(gate: str, seq: int, **kw: Any) -> dict[str, Any]:
    ev = {
        "id": str(uuid.uuid4()), "seq": seq, "gate": gate, "ts": datetime.now(timezone.utc).isoformat(),
        "type": "decision", "lane": "in", "clock": "ok", "pass": "P1", "credential": "qr",
        "category": "resident", "decision": "allow", "reason": "ok", "temperature_c": 36.5,
    }
    ev.update(kw)
    return ev


class GateClient:
    """What a gate looks like on the wire: an MQTT v5 client that records PUBACK reason codes."""

    def __init__(self, b: Broker, gate: str = "g1", username: str | None = None, password: str | None = None) -> None:
        self.gate = gate
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{gate}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        if username:
            self.c.username_pw_set(username, password)
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, Any] = {}
        self.subacks: dict[int, list[Any]] = {}
        self.lock = threading.Lock()
        self.c.on_message = lambda c, u, m: self._got(m)
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(mid, rcs)
        self.connected = threading.Event()
        self.disconnects = 0
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        self.c.on_disconnect = self._gone
        self.c.reconnect_delay_set(0.05, 1)
        self.c.connect(b.host, b.port)
        self.c.loop_start()
        assert self.connected.wait(5), "gate client could not connect"

    def _gone(self, *args: Any) -> None:
        self.connected.clear()
        self.disconnects += 1

    def _got(self, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(m)

    def subscribe(self, topic: str) -> list[Any]:
        assert self.connected.wait(5)
        _, mid = self.c.subscribe(topic, qos=1)
        return wait_for(lambda: self.subacks.get(mid), 5, f"SUBACK for {topic}")

    def publish(self, topic: str, payload: Any, retain: bool = False) -> Any:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        assert self.connected.wait(5)
        info = self.c.publish(topic, raw, qos=1, retain=retain)
        return wait_for(lambda: self.acks.get(info.mid), 5, f"PUBACK for {topic}")

    def on(self, topic_suffix: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, KeyRing]:
    priv, pub = new_keypair(tmp_path / "keys", "central")
    return priv, KeyRing([load_public(pub)])


@pytest.fixture
def make_central(tmp_path: Path, keys: tuple[Path, KeyRing]):  # type: ignore[no-untyped-def]
    started: list[Central] = []

    def make(b: Broker, instance: str = "1", db: str | None = None, **kw: Any) -> Central:
        conf = CentralConfig(
            site=SITE, broker=b.url, instance=instance, signing_key=keys[0],
            db=db or str(tmp_path / f"central-{instance}.db"), poll_s=0.1, **kw,
        )
        c = Central(conf).start()
        started.append(c)
        assert c.wait_connected(10), "central did not connect and subscribe"
        return c

    yield make
    for c in started:
        if c._threads:
            c.stop()


# ---------------------------------------------------------------- no broker


def test_config_example_and_errors(tmp_path: Path) -> None:
    conf = load_central_config(ROOT / "config" / "central.example.toml")
    assert conf.site == "sunny-garden" and conf.topics.prefix == "gate/v1/sunny-garden"
    assert conf.mqtt_client_id == "central-sunny-garden-1"
    bad = tmp_path / "c.toml"
    bad.write_text('site = "x"\nsigning_key = "k.key"\nbatch_sise = 3\n')
    with pytest.raises(ConfigError, match="batch_sise: unknown key"):
        load_central_config(bad)
    ok = tmp_path / "c2.toml"
    ok.write_text('site = "x"\nsigning_key = "k.key"\ndb = "data/c.db"\n')
    conf = load_central_config(ok, {"broker": "mqtt://10.0.0.1:1884", "db": None})
    assert conf.db == str(tmp_path / "data" / "c.db") and conf.signing_key == tmp_path / "k.key"
    assert conf.endpoint() == ("10.0.0.1", 1884, False)


def test_wire_pass_validation() -> None:
    w = wire_pass({"id": "P1", "category": "resident", "holder": "李雷", "card": "", "valid_until": "2026-12-31T23:59:59+08:00"})
    assert w == {"id": "P1", "category": "resident", "holder": "李雷", "valid_until": "2026-12-31T23:59:59+08:00", "revoked": False}
    for bad in ({"id": "P1", "category": "alien"}, {"id": "", "category": "resident"},
                {"id": "P1", "category": "resident", "card": "12ab"},
                {"id": "P1", "category": "resident", "valid_until": "2026-12-31T00:00:00"}):
        with pytest.raises(ValueError):
            wire_pass(bad)


def test_roster_versions_and_changes(tmp_path: Path) -> None:
    s = CentralStore(str(tmp_path / "c.db"))
    assert s.passes_version == 0
    assert s.upsert_passes([{"id": f"P{i}", "category": "resident", "unit": "1-1"} for i in range(3)]) == (0, 3)
    assert s.upsert_passes([{"id": "P0", "category": "resident", "unit": "1-1"}]) == (3, 3)  # unchanged: no version
    assert s.add_pass(id="P9", category="visitor", card="1234") == 4
    with pytest.raises(RosterError, match="already bound"):
        s.add_pass(id="P8", category="visitor", card="1234")
    assert s.passes_version == 4  # the failed change left no trace
    assert s.revoke_pass("P1") == 5 and s.get_pass("P1")["revoked"] is True
    assert s.delete_pass("P2") == 6 and s.get_pass("P2") is None
    with pytest.raises(RosterError):
        s.revoke_pass("nope")
    ops = [json.loads(c) for _, c in s.changes_after(0, 100)]
    assert [c["op"] for c in ops] == ["upsert"] * 5 + ["delete"]
    v, lines = s.snapshot_lines()
    assert v == 6 and [json.loads(line)["id"] for line in lines] == ["P0", "P1", "P9", "P2"]
    # P2 is gone from the roster but not forgotten: a tombstone, no personal data
    assert json.loads(lines[-1]) == {"id": "P2", "category": "resident", "revoked": True, "removed": True}
    assert ops[-1] == {"op": "delete", "id": "P2", "category": "resident", "until": None}
    s.close()


def test_snapshot_build_and_read(keys: tuple[Path, KeyRing]) -> None:
    lines = [json.dumps({"id": f"P{i:05d}", "category": "resident", "revoked": False}) for i in range(2500)]
    snap = build_snapshot(7, lines, 1000)
    assert len(snap.datas) == 3
    signer = Signer(keys[0], None)  # type: ignore[arg-type]
    chunks = [codec.decode(codec.encode(c), "snapshot_chunk", keys[1]) for c in signer.snapshot_chunks("r1", 7, snap.sha256, list(snap.datas))]
    v, recs = read_snapshot(list(reversed(chunks)))
    assert v == 7 and len(recs) == 2500 and recs[0]["id"] == "P00000"
    with pytest.raises(PayloadError, match="need 0..2"):
        read_snapshot(chunks[:2])
    empty = build_snapshot(0, [], 1000)
    assert len(empty.datas) == 1
    assert read_snapshot(list(signer.snapshot_chunks("r", 0, empty.sha256, list(empty.datas)))) == (0, [])
    # a chunk whose data was swapped for another (validly signed) snapshot's fails the hash
    other = build_snapshot(7, lines[:10] + lines[11:], 1000)
    mixed = [dict(chunks[0], data=other.datas[0])] + chunks[1:]
    with pytest.raises(PayloadError, match="sha256"):
        read_snapshot(mixed)


# ---------------------------------------------------------------- events


def test_events_stored_once(broker: Broker, make_central) -> None:  # type: ignore[no-untyped-def]
    c = make_central(broker)
    g = GateClient(broker, "g1")
    ev = event("g1", 1)
    for _ in range(2):
        assert not g.publish(f"{PREFIX}/g1/events", ev).is_failure
    ev2 = event("g1", 2, type="alarm", kind="fever", detail="38.1")
    del ev2["decision"]
    g.publish(f"{PREFIX}/g1/events", ev2)
    wait_for(lambda: c.stats().get("received", 0) >= 3, what="3 messages")
    assert c.stats()["duplicates"] == 1 and c.stats()["events"] == 2
    assert [e["id"] for e in c.events()] == [ev["id"], ev2["id"]]
    assert c.store.db.one("SELECT count(*) FROM events")[0] == 2
    # status and reports are kept too
    g.publish(f"{PREFIX}/g1/status", {"gate": "g1", "online": True, "ts": ev["ts"], "passes_version": 0, "outbox_depth": 0}, retain=True)
    report = {"date": "2026-01-02", "gate": "g1", "events": 0, "allowed": {}, "denied": {}, "fevers": 0,
              "challenges": 0, "new_cards": [], "unknown_cards": [], "by_hour": [0] * 24}
    g.publish(f"{PREFIX}/g1/report", report)
    g.publish(f"{PREFIX}/g1/report", report)
    wait_for(lambda: c.stats().get("reports", 0) >= 2 and c.stats().get("status"), what="status and reports")
    assert c.store.statuses()["g1"]["online"] is True
    assert c.store.reports("g1") == [report]
    g.close()


def test_shared_subscription_splits_between_two_instances(broker: Broker, make_central, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_central(broker, "a")
    b = make_central(broker, "b")
    gates = [GateClient(broker, f"g{i}") for i in range(4)]
    sent: dict[str, dict[str, Any]] = {}
    for seq in range(1, 101):
        for g in gates:
            ev = event(g.gate, seq)
            sent[ev["id"]] = ev
            g.c.publish(f"{PREFIX}/{g.gate}/events", json.dumps(ev), qos=1)
    wait_for(lambda: a.store.event_count() + b.store.event_count() >= len(sent), 20, "400 events over two instances")
    time.sleep(0.3)
    ids_a = {e["id"] for e in a.events()}
    ids_b = {e["id"] for e in b.events()}
    assert ids_a and ids_b, f"both instances take a share: {len(ids_a)} / {len(ids_b)}"
    assert not ids_a & ids_b
    assert ids_a | ids_b == set(sent)
    assert a.stats().get("duplicates", 0) + b.stats().get("duplicates", 0) == 0
    for g in gates:
        g.close()


def test_bad_payloads_are_counted_and_ignored(broker: Broker, make_central) -> None:  # type: ignore[no-untyped-def]
    c = make_central(broker)
    g = GateClient(broker, "g1")
    t = f"{PREFIX}/g1/events"
    bad = [
        (t, b"\xff\xfe not json"),
        (t, b"[1,2,3]"),
        (t, b"{" * 5000),
        (t, json.dumps({"id": "x", "seq": 1}).encode()),  # schema
        (t, json.dumps(event("g1", 0)).encode()),  # seq must be >= 1
        (t, json.dumps(event("g2", 1)).encode()),  # says it is another gate
        (f"{PREFIX}/g1/status", b'{"gate": "g1"}'),
        (f"{PREFIX}/g1/report", b"null"),
        (f"{PREFIX}/g1/snapshot/request", b'{"type": "snapshot_request"}'),
    ]
    for topic, payload in bad:
        g.publish(topic, payload)
    good = event("g1", 1)
    g.publish(t, good)
    wait_for(lambda: c.stats().get("events") == 1, what="the good event after the bad ones")
    st = c.stats()
    assert st["bad"] == len(bad), st
    assert st["bad_event_malformed"] == 3 and st["bad_event_schema"] == 2 and st["bad_event_gate_mismatch"] == 1
    assert [e["id"] for e in c.events()] == [good["id"]]
    assert all(t.is_alive() for t in c._threads)
    g.close()


def test_events_queued_while_central_is_down_and_after_broker_restart(broker: Broker, make_central, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = make_central(broker, "1")
    c.stop()  # its persistent session stays on the broker and queues for it
    g = GateClient(broker, "g1")
    evs = [event("g1", i) for i in range(1, 51)]
    for ev in evs:
        rc = g.publish(f"{PREFIX}/g1/events", ev)
        assert rc.value == 0, f"queued for central's session, not 'no subscribers': {rc}"
    g.close()
    c2 = make_central(broker, "1")
    wait_for(lambda: c2.store.event_count() == 50, what="queued events")
    broker.restart()  # persistence false: sessions are gone; central reconnects and subscribes again
    assert c2.wait_connected(10)
    wait_for(lambda: c2.peer.generation >= 2 and c2._subscribed.is_set(), what="resubscribe")
    g = GateClient(broker, "g1")
    g.publish(f"{PREFIX}/g1/events", event("g1", 51))
    wait_for(lambda: c2.store.event_count() == 51, what="event after the broker restart")
    assert [e["seq"] for e in c2.events()] == list(range(1, 52))
    g.close()


def test_storage_failure_is_retried_and_never_acked_early(broker: Broker, make_central, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    failures = {"n": 2}
    real = CentralStore.insert_events

    def flaky(self: CentralStore, evs: list[tuple[dict[str, Any], float]]) -> list[bool]:
        if failures["n"] > 0:
            failures["n"] -= 1
            raise RuntimeError("disk on fire")
        return real(self, evs)

    monkeypatch.setattr(CentralStore, "insert_events", flaky)
    c = make_central(broker)
    g = GateClient(broker, "g1")
    ev = event("g1", 1)
    g.publish(f"{PREFIX}/g1/events", ev)
    wait_for(lambda: c.store.event_count() == 1, what="the event after two failed commits")
    assert c.stats()["db_errors"] == 2 and c.stats()["events"] == 1
    g.close()


# ---------------------------------------------------------------- passes, snapshot, policy, commands


def test_pass_changes_go_out_as_signed_batches(broker: Broker, make_central, keys: tuple[Path, KeyRing]) -> None:  # type: ignore[no-untyped-def]
    ring = keys[1]
    c = make_central(broker, batch_size=3)
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/passes")
    c.upsert_passes([{"id": f"P{i}", "category": "resident", "unit": f"1-{i}", "holder": f"h{i}"} for i in range(7)])
    wait_for(lambda: len(g.on("/passes")) >= 3, what="3 batches")
    batches = [codec.decode(m.payload, "passes", ring) for m in g.on("/passes")]
    assert [(b["from_version"], b["to_version"]) for b in batches] == [(0, 3), (3, 6), (6, 7)]
    assert [ch["pass"]["id"] for b in batches for ch in b["changes"]] == [f"P{i}" for i in range(7)]
    c.revoke_pass("P3")
    wait_for(lambda: len(g.on("/passes")) >= 4, what="the revocation")
    last = codec.decode(g.on("/passes")[-1].payload, "passes", ring)
    assert (last["from_version"], last["to_version"]) == (7, 8)
    assert last["changes"] == [{"op": "upsert", "pass": c.store.get_pass("P3")}] and last["changes"][0]["pass"]["revoked"]
    # the latest batch is retained: a gate that connects now learns the head version
    late = GateClient(broker, "g2")
    late.subscribe(f"{PREFIX}/passes")
    wait_for(lambda: late.on("/passes"), what="the retained head batch")
    assert codec.decode(late.on("/passes")[0].payload, "passes", ring)["to_version"] == 8
    # forged: signed by another key, or changed after signing
    stranger = Signer(new_keypair(Path(tempfile.mkdtemp()), "x")[0], c.topics)
    with pytest.raises(PayloadError) as exc:
        codec.decode(codec.encode(stranger.passes_batch(8, 9, [])), "passes", ring)
    assert exc.value.reason == "forged"
    tampered = dict(last, to_version=9)
    with pytest.raises(PayloadError, match="bad signature"):
        codec.decode(codec.encode(tampered), "passes", ring)
    g.close()
    late.close()


def test_snapshot_request_is_answered_with_signed_chunks(broker: Broker, make_central, keys: tuple[Path, KeyRing]) -> None:  # type: ignore[no-untyped-def]
    ring = keys[1]
    c = make_central(broker, snapshot_chunk=1000)
    c.upsert_passes([{"id": f"P{i:05d}", "category": "resident", "unit": "2-1", "holder": "住户"} for i in range(2500)], {"777": "P00007"})
    c.revoke_pass("P00003")
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/g1/snapshot")
    req = {"type": "snapshot_request", "gate": "g1", "have_version": 0, "request_id": "req-1", "ts": datetime.now(timezone.utc).isoformat()}
    g.publish(f"{PREFIX}/g1/snapshot/request", req)
    g.publish(f"{PREFIX}/g1/snapshot/request", req)  # a repeat within seconds is answered once
    wait_for(lambda: len(g.on("/snapshot")) >= 3, what="3 chunks")
    chunks = [codec.decode(m.payload, "snapshot_chunk", ring) for m in g.on("/snapshot")]
    assert {ch["request_id"] for ch in chunks} == {"req-1"} and chunks[0]["count"] == 3
    version, recs = read_snapshot(chunks)
    assert version == c.passes_version == 2501
    assert len(recs) == 2500
    by_id = {r["id"]: r for r in recs}
    assert by_id["P00003"]["revoked"] is True and by_id["P00007"]["card"] == "777"
    assert by_id["P00010"] == c.store.get_pass("P00010")
    time.sleep(0.3)
    assert len(g.on("/snapshot")) == 3
    # a request naming another gate than its topic is refused
    g.publish(f"{PREFIX}/g1/snapshot/request", dict(req, gate="g2", request_id="req-2"))
    wait_for(lambda: c.stats().get("bad_snapshot_request_gate_mismatch"), what="refusal")
    g.close()


def test_policy_is_published_retained_and_signed(broker: Broker, make_central, keys: tuple[Path, KeyRing], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ring = keys[1]
    pol = tmp_path / "policy.toml"
    pol.write_text("[policy]\nversion = 3\nfever_c = 37.5\n[policy.categories.visitor]\nhours = \"07:00-22:00\"\n")
    make_central(broker, policy_file=pol)  # publishes the policy as it starts
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/policy")
    wait_for(lambda: g.on("/policy"), what="the policy")
    # A gate that connects later gets it from the broker's retained store.
    late = GateClient(broker, "g-late")
    late.subscribe(f"{PREFIX}/policy")
    wait_for(lambda: late.on("/policy"), what="the retained policy")
    m = late.on("/policy")[0]
    assert m.retain
    late.close()
    p = codec.decode(m.payload, "policy", ring)
    assert p["version"] == 3 and p["by"] == "central"
    conf = PolicyConfig.model_validate(p["policy"])
    assert conf.fever_c == 37.5 and conf.category("visitor").hours == "07:00-22:00" and conf.version == 3
    # the file changes with a higher version: published again; same version: not
    pol.write_text("[policy]\nversion = 3\nfever_c = 37.0\n")
    os.utime(pol, (time.time() + 5, time.time() + 5))
    time.sleep(0.5)
    assert len(g.on("/policy")) == 1
    pol.write_text("[policy]\nversion = 4\nfever_c = 37.2\n")
    os.utime(pol, (time.time() + 10, time.time() + 10))
    wait_for(lambda: len(g.on("/policy")) >= 2, what="policy v4")
    assert codec.decode(g.on("/policy")[-1].payload, "policy", ring)["policy"]["fever_c"] == 37.2
    # a forged policy fails at the gate
    with pytest.raises(PayloadError, match="bad signature"):
        codec.decode(codec.encode(dict(p, policy=dict(p["policy"], fever_c=45.0))), "policy", ring)
    g.close()


def test_commands_are_signed_with_nonce_and_expiry(broker: Broker, make_central, keys: tuple[Path, KeyRing]) -> None:  # type: ignore[no-untyped-def]
    ring = keys[1]
    c = make_central(broker, command_ttl_s=120)
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/g1/cmd")
    sent = c.send_command("g1", "open_door", lane="in", reason="ambulance")
    c.send_command("g1", "resync")
    c.send_command("g1", "report_now", day="2026-03-01")
    c.send_command("g1", "reload")
    wait_for(lambda: len(g.on("/cmd")) >= 4, what="4 commands")
    cmds = [codec.decode(m.payload, "cmd", ring) for m in g.on("/cmd")]
    assert [x["cmd"] for x in cmds] == ["open_door", "resync", "report_now", "reload"]
    first = cmds[0]
    assert first == sent and first["lane"] == "in" and first["reason"] == "ambulance" and first["gate"] == "g1"
    assert len({x["nonce"] for x in cmds}) == 4 and all(len(x["nonce"]) == 32 for x in cmds)
    ts, exp = datetime.fromisoformat(first["ts"]), datetime.fromisoformat(first["expires"])
    assert exp - ts == timedelta(seconds=120)
    assert cmds[2]["date"] == "2026-03-01"
    assert c.store.db.one("SELECT count(*) FROM commands")[0] == 4
    with pytest.raises(ValueError, match="lane and a reason"):
        c.send_command("g1", "open_door", lane="in")
    with pytest.raises(ValueError, match="unknown command"):
        c.send_command("g1", "self_destruct")
    with pytest.raises(PayloadError, match="bad signature"):
        codec.decode(codec.encode(dict(first, gate="g2")), "cmd", ring)
    g.close()


# ---------------------------------------------------------------- bridge and ACL


def test_bridge_from_site_broker_to_central_broker(broker_factory, make_central, keys: tuple[Path, KeyRing]) -> None:  # type: ignore[no-untyped-def]
    central_broker = broker_factory(name="central")
    site = broker_factory(name="site", extra=[
        "connection central",
        f"address 127.0.0.1:{central_broker.port}",
        "bridge_protocol_version mqttv50",
        "remote_clientid bridge-s1",
        "cleansession false",
        "restart_timeout 1",
        f"topic {PREFIX}/+/events out 1",
        f"topic {PREFIX}/+/status out 1",
        f"topic {PREFIX}/+/report out 1",
        f"topic {PREFIX}/+/snapshot/request out 1",
        f"topic {PREFIX}/passes in 1",
        f"topic {PREFIX}/policy in 1",
        f"topic {PREFIX}/+/cmd in 1",
        f"topic {PREFIX}/+/snapshot in 1",
    ])
    c = make_central(central_broker)
    wait_for(lambda: "bridge-s1" in central_broker.log(), what="the bridge to connect")
    g = GateClient(site, "g1")  # the gate only knows the site broker
    g.subscribe(f"{PREFIX}/passes")
    g.subscribe(f"{PREFIX}/g1/cmd")
    ev = event("g1", 1)
    assert not g.publish(f"{PREFIX}/g1/events", ev).is_failure
    wait_for(lambda: c.store.event_count() == 1, what="the event across the bridge")
    assert c.events()[0] == ev
    time.sleep(0.3)  # let the bridge's "in" subscriptions settle on the central broker
    c.add_pass(id="P1", category="resident", unit="1-1")
    c.send_command("g1", "resync")
    wait_for(lambda: g.on("/passes") and g.on("/cmd"), what="passes and a command back across the bridge")
    assert codec.decode(g.on("/passes")[0].payload, "passes", keys[1])["to_version"] == 1
    assert codec.decode(g.on("/cmd")[0].payload, "cmd", keys[1])["cmd"] == "resync"
    g.close()


def test_acl_keeps_a_gate_to_its_own_topics(broker_factory, make_central, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = Path(tempfile.mkdtemp(prefix="acl-"))
    pw = make_password_file(d / "passwd", {"g1": "pw1", "g2": "pw2", "central": "pwc"})
    acl = d / "acl"
    shutil.copy(ROOT / "docs" / "mosquitto.acl", acl)
    b = broker_factory(name="acl", allow_anonymous=False, extra=[f"password_file {pw}", f"acl_file {acl}"])
    (tmp_path / "central.password").write_text("pwc\n")
    c = make_central(b, username="central", password_file=tmp_path / "central.password")
    assert not c.stats().get("subscribe_refused")
    g1 = GateClient(b, "g1", "g1", "pw1")
    own = g1.publish(f"{PREFIX}/g1/events", event("g1", 1))
    assert not own.is_failure
    other = g1.publish(f"{PREFIX}/g2/events", event("g2", 1))
    assert other.is_failure and other.value == 135, other  # MQTT v5: "Not authorized"
    # (mosquitto 2.0.11 then closes the connection; paho reconnects)
    assert g1.publish(f"{PREFIX}/passes", b"{}").value == 135  # only central writes passes
    # mosquitto grants any subscription but delivers only what the ACL lets the user read
    for topic in (f"{PREFIX}/g2/cmd", f"{PREFIX}/g1/cmd", f"{PREFIX}/policy"):
        assert not g1.subscribe(topic)[0].is_failure
    g2 = GateClient(b, "g2", "g2", "pw2")
    g2.subscribe(f"{PREFIX}/g2/cmd")
    c.send_command("g2", "resync")
    c.send_command("g1", "reload")
    wait_for(lambda: g2.on("/cmd") and g1.on("/cmd"), what="each gate's own command")
    time.sleep(0.3)
    assert [m.topic for m in g1.on("/cmd")] == [f"{PREFIX}/g1/cmd"]  # never g2's
    assert [m.topic for m in g2.on("/cmd")] == [f"{PREFIX}/g2/cmd"]
    wait_for(lambda: c.store.event_count() == 1, what="the allowed event")
    assert [e["gate"] for e in c.events()] == ["g1"]
    g1.close()
    g2.close()


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def postgres_dsn():  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL (bench/procs.py's, fsync off); skipped only where none can run."""
    from bench.procs import Postgres, PostgresUnavailable

    pg = Postgres(durable=False)
    try:
        pg.start()
    except PostgresUnavailable as exc:
        pg.stop()
        pytest.skip(f"{exc}; the SQLite path is covered by the other tests")
    try:
        yield pg.dsn("postgres")
    finally:
        pg.stop()


def test_postgresql_backend(postgres_dsn: str, broker: Broker, make_central, keys: tuple[Path, KeyRing]) -> None:  # type: ignore[no-untyped-def]
    s = CentralStore(postgres_dsn)
    with s.db.tx():
        for tbl in ("events", "passes", "changes", "policies", "commands", "status", "reports", "tombstones"):
            s.db.execute(f"DELETE FROM {tbl}")
        s.db.execute("UPDATE meta SET value = '0'")
    assert s.upsert_passes([{"id": f"P{i}", "category": "resident"} for i in range(5)], {"42": "P1"}) == (0, 5)
    assert s.revoke_pass("P2") == 6 and s.delete_pass("P4") == 7
    v, lines = s.snapshot_lines()
    assert v == 7 and [json.loads(x)["id"] for x in lines] == ["P0", "P1", "P2", "P3", "P4"]  # P4: its tombstone
    assert json.loads(lines[-1])["removed"] is True
    with pytest.raises(RosterError):
        s.add_pass(id="P9", category="visitor", card="42")
    c = make_central(broker, "pg", db=postgres_dsn)
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/passes")
    ev = event("g1", 1)
    g.publish(f"{PREFIX}/g1/events", ev)
    g.publish(f"{PREFIX}/g1/events", ev)
    wait_for(lambda: c.stats().get("received", 0) >= 2, what="two copies")
    assert s.event_count() == 1 and s.events()[0] == ev
    c.add_pass(id="P5", category="staff")
    wait_for(lambda: any(codec.decode(m.payload, "passes", keys[1])["to_version"] == 8 for m in g.on("/passes")), what="batch to v8")
    g.close()
    s.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_batch_of_events_is_stored_as_one_after_another_would_be(backend: str, request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    """insert_events and presence_relay.record_many (a batch in a few statements, for
    PostgreSQL's round trips) store what insert_event and record() would, one by one."""
    from sync.central import presence_relay

    url = str(tmp_path / "c.db") if backend == "sqlite" else request.getfixturevalue("postgres_dsn")
    s = CentralStore(url)
    try:
        with s.db.tx():
            for tbl in ("events", "presence_items"):
                s.db.execute(f"DELETE FROM {tbl}")
            s.db.execute("UPDATE meta SET value = '0' WHERE key = 'presence_seq'")
        a, b, c = (event("g1", 1, direction="in", **{"pass": "P1"}), event("g1", 2, direction="out", **{"pass": "P1"}),
                   event("g2", 1, direction="in", **{"pass": "P2", "temperature_c": None}))
        with s.db.tx():
            assert s.insert_events([(a, 1.0), (b, 2.0), (a, 3.0)]) == [True, True, False]  # a's second copy
            assert presence_relay.record_many(s.db, [a, b]) == 2
        with s.db.tx():
            assert s.insert_events([(b, 4.0), (c, 5.0)]) == [False, True]
            assert s.insert_events([]) == []
            assert presence_relay.record_many(s.db, [c]) == 1
        assert s.event_count() == 3 and s.events("g1") == [a, b] and s.events("g2") == [c]
        assert sorted(r[0] for r in s.db.all("SELECT received FROM events")) == [1.0, 2.0, 5.0]
        # P1 moved in, then out: one item per pass and kind, the later one, as two record() calls leave it
        items = {r[0]: (int(r[1]), json.loads(r[2])) for r in s.db.all("SELECT key, seq, body FROM presence_items")}
        assert {k: v[0] for k, v in items.items()} == {"move:P1": 2, "move:P2": 3}
        assert items["move:P1"][1]["direction"] == "out" and items["move:P1"][1]["seq"] == 2
        assert s.get_meta("presence_seq") == "3"
    finally:
        s.close()
