"""Central never stalls on a message (issue 12, finding 1): real mosquitto, real central.

Each poison message lands in quarantine with its raw bytes and is acknowledged;
good events published before and after it, from the same and other gates, are
stored; a database outage is retried, not quarantined."""
from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any


from sync.central import quarantine
from tests.mqtt_broker import Broker
from bench.procs import _pg_bin
from tests.test_central import PREFIX, GateClient, event, keys, make_central, postgres_dsn, wait_for  # noqa: F401

SURROGATE = "\ud800"  # json.dumps writes it as the escape \ud800: valid JSON, not storable as UTF-8


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()  # ensure_ascii: a lone surrogate goes out as its escape


def status(gate: str, **kw: Any) -> dict[str, Any]:
    return {"gate": gate, "online": True, "ts": "2026-12-01T08:00:00+08:00", "passes_version": 0, "outbox_depth": 0, **kw}


def report(gate: str, **kw: Any) -> dict[str, Any]:
    return {"date": "2026-12-01", "gate": gate, "events": 0, "allowed": {}, "denied": {}, "fevers": 0, "challenges": 0,
            "new_cards": [], "unknown_cards": [], "by_hour": [0] * 24, **kw}


def poison(gate: str) -> list[tuple[str, bytes, bool, str]]:
    """(topic, payload, retained, reason) for each poison message of finding 1."""
    t = f"{PREFIX}/{gate}"
    return [
        (f"{t}/events", raw(event(gate, 2**63)), False, "schema"),
        (f"{t}/events", raw(event(gate, 7, reason="ok" + SURROGATE)), False, "malformed"),
        (f"{t}/status", raw(status(gate, software=SURROGATE)), True, "malformed"),
        (f"{t}/report", raw(report(gate, unknown_cards=["12" + SURROGATE])), False, "malformed"),
        (f"{t}/events", raw(event(gate, 8, detail="x" * 1_000_000)), False, "too_large"),
        (f"{t}/events", raw(event(gate, 9, detail="y" * 20_000)), False, "schema"),  # under the size limit, too long a field
        (f"{t}/events", raw(event(gate, 10, extra="z")), False, "schema"),  # unknown property
        (f"{t}/events", b"\x00\x01 not JSON at all", False, "malformed"),
    ]


def test_poison_messages_are_quarantined_and_never_block_the_rest(broker: Broker, make_central, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="sync.central")
    c = make_central(broker)
    g1, g2 = GateClient(broker, "g1"), GateClient(broker, "g2")
    before = [event("g1", 1), event("g2", 1)]
    g1.publish(f"{PREFIX}/g1/events", before[0])
    g2.publish(f"{PREFIX}/g2/events", before[1])
    bad = poison("g1") + poison("g2")[:2]
    for topic, payload, retain, _ in bad:
        gc = g1 if "/g1/" in topic else g2
        rc = gc.publish(topic, payload, retain=retain)
        assert not rc.is_failure, rc
    after = [event("g1", 2), event("g2", 2)]
    g1.publish(f"{PREFIX}/g1/events", after[0])
    g2.publish(f"{PREFIX}/g2/events", after[1])

    wait_for(lambda: c.store.event_count() == 4, what="the good events before and after the poison")
    wait_for(lambda: c.stats().get("quarantined", 0) >= len(bad), what="every poison message quarantined")
    assert sorted((e["gate"], e["seq"]) for e in c.events()) == [("g1", 1), ("g1", 2), ("g2", 1), ("g2", 2)]
    held = quarantine.entries(c.store.db)
    assert len(held) == len(bad)
    assert sorted((e.topic, e.reason) for e in held) == sorted((t, r) for t, _, _, r in bad)
    small = {e.topic + e.reason: e for e in held if e.size < quarantine.RAW_KEEP}
    for topic, payload, _, reason in bad:
        if len(payload) < quarantine.RAW_KEEP:  # kept as it came, byte for byte
            assert any(e.raw == payload for e in held if e.topic == topic), (topic, reason)
    big = next(e for e in held if e.reason == "too_large")
    assert big.size > 1_000_000 and len(big.raw) == quarantine.RAW_KEEP  # the 1 MB field is not stored whole
    assert small
    # a refused event keeps the seq it carried when that is usable: the gate's seq is held, not missing
    assert sorted(e.seq for e in held if e.gate == "g1" and e.seq) == [7, 9, 10]
    st = c.stats()
    assert st["quarantined_g1_malformed"] == 4 and st["quarantined_g1_schema"] == 3 and st["quarantined_g1_too_large"] == 1
    assert st["quarantined_g2_schema"] == 1 and st["quarantined_g2_malformed"] == 1
    # nothing of them got into the tables central serves
    assert "g1" not in c.store.statuses() and c.store.reports() == []
    assert all("1000000" not in json.dumps(e) and "x" * 100 not in json.dumps(e) for e in c.events())
    # logged once each
    lines = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(lines) == len(bad)
    assert all(t.is_alive() for t in c._threads)
    g1.close()
    g2.close()


def test_a_retained_poison_status_does_not_stall_a_restarted_central(broker: Broker, make_central, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="sync.central")
    c = make_central(broker, "1")
    g = GateClient(broker, "g3")
    g.publish(f"{PREFIX}/g3/status", raw(status("g3", software="v" + SURROGATE)), retain=True)
    g.publish(f"{PREFIX}/g3/events", event("g3", 1))
    wait_for(lambda: c.store.event_count() == 1 and c.stats().get("quarantined"), what="event stored, status quarantined")
    c.stop()
    # a new session (and the retained message handed over again), events queued meanwhile
    g.publish(f"{PREFIX}/g3/events", event("g3", 2))
    c2 = make_central(broker, "1")
    g.publish(f"{PREFIX}/g3/events", event("g3", 3))
    wait_for(lambda: c2.store.event_count() == 3, what="events after the restart")
    wait_for(lambda: quarantine.entries(c2.store.db)[0].times >= 2, what="the retained status seen again")
    held = quarantine.entries(c2.store.db)
    assert len(held) == 1 and held[0].kind == "status" and held[0].gate == "g3"
    assert len([r for r in caplog.records if "quarantined" in r.getMessage()]) == 1  # logged once
    g.close()


def test_database_outage_is_retried_not_quarantined(postgres_dsn: str, broker: Broker, make_central) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL stopped under a running central: events wait unacknowledged on the
    broker and are stored once it is back; nothing is quarantined."""
    c = make_central(broker, db=postgres_dsn)
    g = GateClient(broker, "g1")
    g.publish(f"{PREFIX}/g1/events", b"\xff not JSON")  # quarantined in PostgreSQL too (raw bytes as bytea)
    g.publish(f"{PREFIX}/g1/events", event("g1", 1))
    wait_for(lambda: c.store.event_count() == 1 and c.stats().get("quarantined") == 1, what="the first event")
    assert [e.raw for e in quarantine.entries(c.store.db)] == [b"\xff not JSON"]
    data, prefix = _pg_data(postgres_dsn)
    pg_ctl = _pg_bin("pg_ctl")
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], check=True, capture_output=True, timeout=60)
    try:
        for seq in range(2, 7):
            g.publish(f"{PREFIX}/g1/events", event("g1", seq))
        wait_for(lambda: c.stats().get("db_errors", 0) >= 2, 20, "failed attempts while the database is down")
        time.sleep(0.5)
        assert c.stats().get("quarantined", 0) == 1  # the one from before: nothing set aside for the outage
    finally:
        log_path = data.parent / "pg.log"
        port = postgres_dsn.split("port=")[1]
        opts = f"-p {port} -k {data.parent / 'sock'} -c listen_addresses='' -c fsync=off"
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-l", str(log_path), "-w", "-t", "30", "-o", opts, "start"],
                       check=True, capture_output=True, timeout=60)
    from sync.central import CentralStore

    def stored() -> int:
        s = CentralStore(postgres_dsn)
        try:
            return s.event_count()
        finally:
            s.close()

    wait_for(lambda: stored() == 6, 30, "the events held during the outage")
    s = CentralStore(postgres_dsn)
    try:
        assert [e["seq"] for e in s.events("g1")] == [1, 2, 3, 4, 5, 6]
        assert len(quarantine.entries(s.db)) == 1
    finally:
        s.close()
    g.close()


def _pg_data(dsn: str) -> tuple[Path, list[str]]:
    """The data directory of the test cluster (tests/test_central.py::postgres_dsn) and
    the runuser prefix when running as root."""
    import os
    import shutil

    sock = Path(dsn.split("host=")[1].split("&")[0])
    prefix = [shutil.which("runuser") or "runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return sock.parent / "data", prefix


def test_a_message_the_database_refuses_is_set_aside_and_the_rest_stored(broker: Broker, make_central, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Valid on the wire, refused by the store (a constraint, or an error that keeps
    coming while the database takes every other write): quarantined, not retried for ever."""
    import sqlite3

    from sync.central import CentralStore

    real = CentralStore.insert_events

    def picky(self: CentralStore, evs: list[tuple[dict[str, Any], float]]) -> list[bool]:
        seqs = {ev["seq"] for ev, _ in evs}  # central stores a batch's events together: the whole batch fails
        if 3 in seqs:
            raise sqlite3.IntegrityError("CHECK constraint failed")
        if 4 in seqs:
            raise RuntimeError("this one never goes in")
        return real(self, evs)

    monkeypatch.setattr(CentralStore, "insert_events", picky)
    c = make_central(broker)
    g = GateClient(broker, "g1")
    for seq in range(1, 7):
        g.publish(f"{PREFIX}/g1/events", event("g1", seq))
    wait_for(lambda: c.store.event_count() == 4, what="the four storable events")
    wait_for(lambda: c.stats().get("quarantined") == 2, what="the two refused ones set aside")
    assert [e["seq"] for e in c.events()] == [1, 2, 5, 6]
    held = quarantine.entries(c.store.db)
    assert [(json.loads(e.raw)["seq"], e.reason) for e in held] == [(3, "unstorable"), (4, "unstorable")]
    assert "IntegrityError" in held[0].detail and "RuntimeError" in held[1].detail
    g.close()


def test_snapshot_requests_are_answered_once_a_gate_per_interval(broker: Broker, make_central, caplog) -> None:  # type: ignore[no-untyped-def]
    """Finding 10: 300 snapshot requests made central publish 82.6 MB. One answer per
    gate per interval (60 s by default; 6 s here: room for a busy machine), the latest held request answered
    when it ends, another gate not held back, and the log says so."""
    from datetime import datetime, timezone

    caplog.set_level(logging.INFO, logger="sync.central")
    c = make_central(broker, snapshot_chunk=1000, snapshot_interval_s=6.0)
    assert type(c.config).model_fields["snapshot_interval_s"].default == 60.0
    c.upsert_passes([{"id": f"P{i:05d}", "category": "resident", "unit": "2-1", "holder": "住户"} for i in range(2500)])
    g1, g2 = GateClient(broker, "g1"), GateClient(broker, "g2")
    g1.subscribe(f"{PREFIX}/g1/snapshot")
    g2.subscribe(f"{PREFIX}/g2/snapshot")

    def req(gate: str, rid: str) -> bytes:
        return raw({"type": "snapshot_request", "gate": gate, "have_version": 0, "request_id": rid,
                    "ts": datetime.now(timezone.utc).isoformat()})

    t0 = time.monotonic()
    for i in range(300):
        g1.c.publish(f"{PREFIX}/g1/snapshot/request", req("g1", f"r{i}"), qos=1)
    g2.publish(f"{PREFIX}/g2/snapshot/request", req("g2", "only"))
    wait_for(lambda: c.stats().get("snapshot_requests", 0) == 301, what="all requests received")
    wait_for(lambda: len(g2.on("/g2/snapshot")) == 3, what="the other gate's snapshot")
    first = wait_for(lambda: [m for m in g1.on("/g1/snapshot")], what="g1's first snapshot")
    assert {json.loads(m.payload)["request_id"] for m in first} == {"r0"}
    assert time.monotonic() - t0 < 6.0 and len(g1.on("/g1/snapshot")) == 3  # within the interval: one answer
    # when the interval ends, the latest held request (the one the gate waits on) is answered, once
    wait_for(lambda: len(g1.on("/g1/snapshot")) == 6, 15, "the held request answered")
    assert {json.loads(m.payload)["request_id"] for m in g1.on("/g1/snapshot")[3:]} == {"r299"}
    sent = sum(len(m.payload) for m in g1.on("/g1/snapshot"))
    time.sleep(6.5)  # a further interval: nothing more was asked, nothing more is sent
    assert len(g1.on("/g1/snapshot")) == 6
    assert c.stats()["snapshot_requests_held"] == 299 and c.stats()["snapshots"] == 3
    said = [r.getMessage() for r in caplog.records if "at most once every" in r.getMessage()]
    assert len(said) == 1 and "gate g1" in said[0]
    assert any("299 requests" in r.getMessage() for r in caplog.records)
    print(f"300 requests from one gate: {sent} bytes of snapshot published (2 answers)")
    g1.close()
    g2.close()


def test_every_event_a_gate_records_passes_centrals_schema(tmp_path: Path) -> None:
    """The strict schemas refuse unknown properties: every record type the gate stores
    and sends (gate/core/records.py), as stored, and after `gate privacy erase`, is accepted."""
    from datetime import datetime, timedelta, timezone

    from gate.desk.privacy import erase
    from gate.core.records import (
        AckRecord, AdminRecord, AlarmRecord, DecisionRecord, DoorRecord, HealthRecord, OverrideRecord, RegistrationRecord,
    )
    from gate.store.database import Store
    from sync import codec

    at = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    recs = [
        DecisionRecord(at=at, lane="in", pass_id="r1", credential="card", category="resident", decision="allow", reason="ok",
                       temperature_c=36.55, holder="王芳", unit="3-2-501", card="1234567", challenge_id="c1", who="guard", step=7,
                       situation={"x": 1}),
        DecisionRecord(at=at, lane="in", pass_id=None, credential=None, category=None, decision="deny", reason="malformed",
                       temperature_c=None),
        AlarmRecord(at=at, lane="in", kind="fever", detail="37.8 °C", pass_id="r1"),
        DoorRecord(at=at, lane="in", action="unlock"),
        HealthRecord(at=at, lane="in", device="camera", ok=False, detail="no frame for 5 s"),
        OverrideRecord(at=at, lane="in", action="open_door", reason="ambulance", who="central:ops"),
        AckRecord(at=at, lane="in", alarm_id="a1", kind="fever", who="guard"),
        RegistrationRecord(at=at, lane="", pass_id="v1", holder="访客", unit="3-2-501", id_last4="1234", phone_last4="5678",
                           valid_until=at + timedelta(hours=8), who="guard"),
        AdminRecord(at=at, lane="", action="policy_apply", who="desk", reason="night hours", detail="version 3 → 4: " + "x" * 3000),
    ]
    s = Store(tmp_path / "gate.db", gate_id="g1")
    try:
        s.upsert_passes([{"id": "r1", "category": "resident"}], {"1234567": "r1"})
        for rec in recs:
            s.record(rec)
        erase(s, "r1")
        payloads = [r[0] for r in s.conn.execute("SELECT payload FROM outbox ORDER BY seq")]
    finally:
        s.close()
    assert len(payloads) == len(recs)
    for text in payloads:
        codec.decode(text.encode(), "event")  # raises PayloadError if central would refuse it
