"""Sync against a real mosquitto: every event delivered, passes, policy and
commands from central applied only when signed, the outbox surviving outages."""
from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from sync import codec
from sync.topics import Topics
from tests.conftest import ROOT
from tests.mqtt_broker import Broker, make_password_file
from tests.sync_helpers import Listener, central_pub, start_central, trust_central

DRILL = drill_file.parse(
    textwrap.dedent(
        """
        name: sync
        start: "2026-11-22T10:00:00+08:00"
        config: {policy: {passback: "off"}}
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, card: "1234567"}
          - {id: r2, holder: 王强, unit: 3-2-502, category: resident}
        """
    )
)
PREFIX = "gate/v1/drill"


def decisions(r: Rehearsal) -> list[tuple[str | None, str, str]]:
    return [(l["pass"], l["decision"], l["reason"]) for l in r.lines if l["type"] == "decision"]


def enter(r: Rehearsal, at: float, pass_id: str = "r1", temp: float = 36.5) -> None:
    r.step(Step(at=at, lane="in", qr=pass_id))
    r.step(Step(at=at + 0.5, lane="in", temperature=temp))


def outbox_states(r: Rehearsal) -> dict[str, int]:
    c = sqlite3.connect(r.config.store.path)
    try:
        return dict(c.execute("SELECT state, count(*) FROM outbox WHERE topic IS NULL GROUP BY state").fetchall())
    finally:
        c.close()


def test_events_reach_the_broker_once_each_in_seq_order(broker: Broker, tmp_path: Path) -> None:
    listener = Listener(broker.port)
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:  # drained = receipted = stored at central
        central = start_central(tmp_path / "central", broker.url, r.keys.central)
        for i in range(5):
            enter(r, i * 100.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        assert r.drain(30)
        stored = outbox_states(r)
        assert len(central.store.events("drill")) == stored["sent"]  # drained = stored at central
        central.stop()
    assert listener.wait_for(lambda: len(listener.on("/drill/events")) >= stored.get("sent", 0), 10)
    events = listener.on("/drill/events")
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len({e["id"] for e in events}) == len(events)
    assert stored == {"sent": len(events)}
    for e in events:
        codec.decode(json.dumps(e).encode(), "event")  # every payload matches its schema
        assert e["clock"] == "ok" and "holder" not in e
    # stopped cleanly: its offline status (the will's words, sent on the way out) comes at once
    assert listener.wait_for(lambda: (s := listener.on("/drill/status")) and s[-1]["online"] is False, 10), \
        listener.on("/drill/status")[-3:]
    status = listener.on("/drill/status")
    beats = [st for st in status if st["online"]]
    assert beats and "outbox_depth" in beats[-1]
    listener.close()


def test_broker_down_then_back_delivers_everything(broker: Broker, tmp_path: Path) -> None:
    # Central's keys known: drained means receipted, i.e. stored at central.
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        central = start_central(tmp_path / "central", broker.url, r.keys.central)
        enter(r, 0)
        assert r.drain(30)
        before = outbox_states(r)["sent"]
        broker.stop()
        for i in range(1, 6):
            enter(r, i * 60.0, "r2" if i % 2 else "r1")
        r.finish()
        assert outbox_states(r).get("pending", 0) > 0  # decisions went on without the broker
        assert [d[1] for d in decisions(r)].count("allow") >= 3
        broker.start()
        listener = Listener(broker.port)
        assert r.drain(60), "the outbox did not drain after the broker came back"
        total = sum(outbox_states(r).values())
        assert outbox_states(r) == {"sent": total}
        assert {e["seq"] for e in central.store.events("drill")} == set(range(1, total + 1))
        central.stop()
    # Everything written while the broker was down arrives (the first events went before the stop).
    assert listener.wait_for(lambda: {e["seq"] for e in listener.on("/drill/events")} >= set(range(before + 1, total + 1)), 10)
    listener.close()


def test_acl_denied_publish_is_never_marked_sent(broker_factory) -> None:  # type: ignore[no-untyped-def]
    b0 = Broker()
    pw = make_password_file(b0.dir / "passwd", {"drill": "secret", "other": "x"})
    acl = b0.dir / "acl"
    # The gate may write only another gate's topics: its own events are refused.
    acl.write_text("user drill\ntopic write gate/v1/drill/someone-else/#\ntopic read gate/v1/#\n", encoding="utf-8")
    b0.close() if hasattr(b0, "close") else None
    b = broker_factory(extra=[f"password_file {pw}", f"acl_file {acl}", "allow_anonymous false"])
    store_dir = Path(b.dir) / "gate"
    cfg_over = {"sync": {"broker": b.url, "username": "drill", "password_file": str(_write(store_dir / "pw", "secret")),
                         "central_keys": [central_pub(store_dir)]}}
    drill = drill_file.parse(DRILL.model_dump_json())
    drill = drill.model_copy(update={"config": {**DRILL.config, **cfg_over}})
    with Rehearsal(drill) as r:
        enter(r, 0)
        r.finish()
        pub = r.app.sync.publisher
        assert Listener.wait_for(lambda: pub.counters.get("refused") >= 1, 20)
        states = outbox_states(r)
    assert states.get("sent", 0) == 0 and states.get("pending", 0) >= 1


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_sync_drain_cli_publishes_a_stored_backlog(broker: Broker, tmp_path: Path) -> None:
    store = tmp_path / "gate.db"
    with Rehearsal(DRILL, store_path=store) as r:  # no broker: events pile up
        enter(r, 0)
        enter(r, 100, "r2")
        r.finish()
        central_key, central_pub = r.keys.central, r.keys.central_pub.read_bytes()
    pending = sqlite3.connect(store).execute("SELECT count(*) FROM outbox WHERE state='pending'").fetchone()[0]
    assert pending >= 4
    cfg = tmp_path / "gate.toml"
    (tmp_path / "central.pub").write_bytes(central_pub)
    cfg.write_text(
        f'[gate]\nid = "drill"\nsite = "drill"\n[store]\npath = "{store}"\n[keys]\ntrusted = ["{tmp_path / "central.pub"}"]\n'
        '[[lanes]]\nname = "in"\ndirection = "in"\n',
        encoding="utf-8",
    )
    # No broker at all: a clear failure naming what is left, not a hang, and nothing lost.
    res = subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "sync", "--drain", "-c", str(cfg), "--broker", "mqtt://127.0.0.1:1", "--timeout", "2"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert res.returncode == 1 and f"{pending} pending" in res.stderr and "Connection refused" in res.stderr
    listener = Listener(broker.port)
    central = start_central(tmp_path / "central", broker.url, central_key)
    res = subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "sync", "--drain", "-c", str(cfg), "--broker", broker.url, "--timeout", "60"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert len(central.store.events("drill")) == pending  # "drained" means stored at central
    central.stop()
    assert res.returncode == 0, res.stderr
    assert "outbox drained" in res.stdout
    left = sqlite3.connect(store).execute("SELECT count(*) FROM outbox WHERE state!='sent'").fetchone()[0]
    assert left == 0
    assert listener.wait_for(lambda: len(listener.on("/drill/events")) >= pending, 10)
    listener.close()


# ---------------------------------------------------------------- downstream


def signed(obj: dict, key: Ed25519PrivateKey) -> bytes:  # type: ignore[type-arg]
    return codec.encode(codec.sign(obj, key))


def now_iso() -> str:
    return datetime.now().astimezone().isoformat()


def pass_wire(pid: str, **kw: object) -> dict:  # type: ignore[type-arg]
    base = {"id": pid, "holder": "新人", "unit": "9-9-909", "category": "resident", "phone_last4": "0000", "card": None,
            "valid_from": None, "valid_until": None, "observation_until": None, "pcr_at": None, "health_code": None, "revoked": False}
    return {**base, **kw}


def test_signed_batches_apply_gaps_ask_for_a_snapshot_forgeries_are_refused(broker: Broker) -> None:
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        assert r.app.sync.link.wait_connected(10)
        central = r.keys.central
        pub = Listener(broker.port, topic=f"{PREFIX}/drill/snapshot/request", client_id="central-test")
        down = r.app.sync.downstream
        batch = {"type": "passes", "from_version": 0, "to_version": 1, "ts": now_iso(),
                 "changes": [{"op": "upsert", "pass": pass_wire("n9", card="4242")}, {"op": "upsert", "pass": pass_wire("r2", revoked=True)}]}
        pub.publish(f"{PREFIX}/passes", signed(batch, central))
        assert Listener.wait_for(lambda: down.counters.get("passes_batches") == 1, 10)
        # A forged batch (a stranger's key) and a tampered one change nothing.
        stranger = Ed25519PrivateKey.generate()
        forged = {**batch, "from_version": 1, "to_version": 2, "changes": [{"op": "delete", "id": "r1"}]}
        pub.publish(f"{PREFIX}/passes", signed(forged, stranger))
        tampered = json.loads(signed(forged, central))
        tampered["changes"] = [{"op": "delete", "id": "r2"}]
        pub.publish(f"{PREFIX}/passes", codec.encode(tampered))
        pub.publish(f"{PREFIX}/passes", b"{not json")
        assert Listener.wait_for(lambda: down.counters.get("passes_forged") == 2 and down.counters.get("passes_malformed") == 1, 10)
        # The new card works at the lane; the revoked pass is refused; r1 still exists.
        r.step(Step(at=0, lane="in", card="4242"))
        r.step(Step(at=0.5, lane="in", temperature=36.6))
        r.step(Step(at=10, lane="in", qr="r2"))
        r.step(Step(at=20, lane="in", qr="r1"))
        r.step(Step(at=20.5, lane="in", temperature=36.6))
        assert decisions(r) == [("n9", "allow", "ok"), ("r2", "deny", "revoked"), ("r1", "allow", "ok")]
        # A gap (we have 1, this says 5->6): the gate asks for a snapshot.
        gap = {**batch, "from_version": 5, "to_version": 6}
        pub.publish(f"{PREFIX}/passes", signed(gap, central))
        assert pub.wait_for(lambda: pub.on("/snapshot/request"), 10)
        req = pub.on("/snapshot/request")[0]
        assert req["have_version"] == 1 and req["gate"] == "drill"
        # Central answers in two chunks; the gate checks hash and signatures and swaps the table.
        import base64
        import hashlib
        import zlib
        lines = [json.dumps(pass_wire(f"s{i}", card=str(9000 + i))).encode() + b"\n" for i in range(50)]
        data = b"".join(lines)
        sha = hashlib.sha256(data).hexdigest()
        for idx, part in enumerate((data[: len(lines[0]) * 20], data[len(lines[0]) * 20 :])):
            chunk = {"type": "snapshot_chunk", "request_id": req["request_id"], "version": 6, "index": idx, "count": 2,
                     "sha256": sha, "data": base64.b64encode(zlib.compress(part)).decode(), "ts": now_iso()}
            pub.publish(f"{PREFIX}/drill/snapshot", signed(chunk, central))
        assert Listener.wait_for(lambda: down.counters.get("snapshots_applied") == 1, 10)
        store = r.app.open_store()
        try:
            assert store.passes_version() == 6
            assert store.pass_count() == 50
            assert store.card_pass("9007") == "s7" and store.card_pass("4242") is None
        finally:
            store.close()
        pub.close()


def test_policy_and_commands_from_central(broker: Broker, tmp_path: Path) -> None:
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        assert r.app.sync.link.wait_connected(10)
        central = r.keys.central
        stores = start_central(tmp_path / "central", broker.url, central)
        c = Listener(broker.port, topic=f"{PREFIX}/drill/events", client_id="central-test")
        down = r.app.sync.downstream
        # A stricter fever line, signed: 37.0 now means a retest.
        policy = {"type": "policy", "version": 3, "ts": now_iso(), "by": "health-office", "policy": {"fever_c": 37.0}}
        c.publish(f"{PREFIX}/policy", signed(policy, central), retain=True)
        assert Listener.wait_for(lambda: down.counters.get("policies_applied") == 1, 10)
        forged_policy = {**policy, "version": 4, "policy": {"fever_c": 42.0}}
        c.publish(f"{PREFIX}/policy", signed(forged_policy, Ed25519PrivateKey.generate()))
        assert Listener.wait_for(lambda: down.counters.get("policy_forged") == 1, 10)
        r.step(Step(at=0, lane="in", qr="r1"))
        r.step(Step(at=0.5, lane="in", temperature=37.1))
        assert decisions(r) == [("r1", "retest", "high_temperature")]
        assert r.app.policy_version() == 3
        s = r.app.open_store()
        try:
            admin = [e for e in s.events() if e["type"] == "admin"]
        finally:
            s.close()
        assert [(a["action"], a["who"]) for a in admin] == [("policy_apply", "central:health-office")]
        assert "fever_c: 37.3 → 37.0" in admin[0]["detail"]
        # open_door: an override event with who and why, and the relay unlocks.
        exp = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat()
        cmd = {"type": "cmd", "cmd": "open_door", "gate": "drill", "lane": "in", "reason": "ambulance", "nonce": secrets.token_hex(16),
               "ts": now_iso(), "expires": exp, "by": "duty-officer"}
        raw = signed(cmd, central)
        c.publish(f"{PREFIX}/drill/cmd", raw)
        assert Listener.wait_for(lambda: down.counters.get("cmd_open_door") == 1, 10)
        r.app.join()
        assert any(l["type"] == "door" and l["action"] == "unlock" for l in r.lines)
        # The same command again (a replay) is refused; an expired one too; a forged one too.
        c.publish(f"{PREFIX}/drill/cmd", raw)
        old = {**cmd, "nonce": secrets.token_hex(16), "expires": (datetime.now().astimezone() - timedelta(seconds=1)).isoformat()}
        c.publish(f"{PREFIX}/drill/cmd", signed(old, central))
        c.publish(f"{PREFIX}/drill/cmd", signed({**cmd, "nonce": secrets.token_hex(16)}, Ed25519PrivateKey.generate()))
        assert Listener.wait_for(
            lambda: (down.counters.get("cmd_replayed"), down.counters.get("cmd_expired"), down.counters.get("cmd_forged")) == (1, 1, 1), 10
        )
        assert down.counters.get("cmd_open_door") == 1
        assert r.drain(30)
        assert Listener.wait_for(lambda: any(e.get("type") == "override" for e in c.on("/events")), 10)
        override = next(e for e in c.on("/events") if e.get("type") == "override")
        assert override["who"] == "central:duty-officer" and override["reason"] == "ambulance"
        c.close()
        stores.stop()


def test_central_sets_a_door_mode_with_a_signed_command(broker: Broker, tmp_path: Path) -> None:
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        stores = start_central(tmp_path / "central", broker.url, r.keys.central)  # receipts: what drains the outbox
        assert r.app.sync.link.wait_connected(10)
        c = Listener(broker.port, topic=f"{PREFIX}/drill/events", client_id="central-test")
        down = r.app.sync.downstream
        exp = (datetime.now().astimezone() + timedelta(minutes=5)).isoformat()
        cmd = {"type": "cmd", "cmd": "door_mode", "gate": "drill", "lane": "all", "mode": "locked",
               "reason": "lockdown ordered by the district", "nonce": secrets.token_hex(16), "ts": now_iso(),
               "expires": exp, "by": "duty-officer"}
        c.publish(f"{PREFIX}/drill/cmd", signed(cmd, r.keys.central))
        assert Listener.wait_for(lambda: down.counters.get("cmd_door_mode") == 1, 10)
        r.app.join()
        assert {lane.door_mode for lane in r.app.lanes.values()} == {"locked"}
        # A mode central does not know, or a forged one, changes nothing.
        c.publish(f"{PREFIX}/drill/cmd", signed({**cmd, "mode": "party", "nonce": secrets.token_hex(16)}, r.keys.central))
        c.publish(f"{PREFIX}/drill/cmd", signed({**cmd, "mode": "open", "nonce": secrets.token_hex(16)}, Ed25519PrivateKey.generate()))
        assert Listener.wait_for(lambda: down.counters.get("cmd_forged") == 1, 10)
        r.app.join()
        assert {lane.door_mode for lane in r.app.lanes.values()} == {"locked"}
        assert r.drain(30)
        assert Listener.wait_for(lambda: len([e for e in c.on("/events") if e.get("type") == "mode"]) == 2, 10)
        modes = [e for e in c.on("/events") if e.get("type") == "mode"]
        assert {(m["lane"], m["mode"], m["who"], m["why"]) for m in modes} == {
            (lane, "locked", "central:duty-officer", "lockdown ordered by the district") for lane in ("in", "out")
        }
        c.close()
        stores.stop()


def test_publisher_survives_a_store_error_and_link_survives_missing_tls_files(broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading as _t

    from gate.store.database import Store

    real_write = Store.write
    failed = []

    def flaky_write(self):  # type: ignore[no-untyped-def]
        if _t.current_thread().name == "outbox" and not failed:
            failed.append(1)
            raise sqlite3.OperationalError("disk I/O error")
        return real_write(self)

    monkeypatch.setattr(Store, "write", flaky_write)
    with Rehearsal(DRILL, broker=broker.url) as r:
        central = start_central(tmp_path / "central", broker.url, r.keys.central)
        enter(r, 0)
        r.finish()
        assert r.drain(30), "the publisher did not recover from one store error"
        central.stop()
        assert failed and r.app.sync.publisher.alive and r.app.sync.publisher.counters.get("errors") == 1
    # A CA file that is not there: the link keeps trying (and says why) instead of dying.
    d = DRILL.model_copy(update={"config": {**DRILL.config, "sync": {"broker": f"mqtts://127.0.0.1:{broker.port}", "ca_file": str(tmp_path / "missing-ca.crt"),
                                                                     "central_keys": [central_pub(tmp_path)]}}})
    with Rehearsal(d) as r:
        link = r.app.sync.link
        assert Listener.wait_for(lambda: "missing-ca.crt" in link.last_error or "No such file" in link.last_error, 10), link.last_error
        assert link.alive and r.app.sync.alive


def test_the_daily_report_goes_up_once_the_day_is_over(tmp_path: Path) -> None:
    """Day D's report is queued at report_at on D+1, with D's last minutes in it."""
    from datetime import datetime as _dt
    from zoneinfo import ZoneInfo

    from gate.store.database import Store
    from sync.status import Heartbeat

    tz = ZoneInfo("Asia/Shanghai")
    store = Store(tmp_path / "g.db", gate_id="g", tz=tz)
    clock = {"now": _dt(2026, 11, 22, 23, 58, tzinfo=tz)}
    hb = Heartbeat(None, lambda: store, Topics("gate/v1/s", "g"), every_s=60, report_at="00:05",  # type: ignore[arg-type]
                   now=lambda: clock["now"], devices=dict, policy_version=lambda: 0, time_floor=lambda: None)
    store.set_meta("report_sent_through", "2026-11-21")

    def queued() -> list[str]:
        return [json.loads(p)["date"] for (p,) in store.conn.execute("SELECT payload FROM outbox WHERE topic LIKE '%/report'")]

    hb._reports(store)  # noqa: SLF001
    assert queued() == []  # 23:58: the 22nd is not over yet
    clock["now"] = _dt(2026, 11, 23, 0, 6, tzinfo=tz)
    hb._reports(store)  # noqa: SLF001
    assert queued() == ["2026-11-22"]
    hb._reports(store)  # noqa: SLF001
    assert queued() == ["2026-11-22"]  # once
    store.close()


def test_central_does_not_downgrade_a_newer_policy_applied_at_the_desk(broker: Broker) -> None:
    with trust_central(Rehearsal(DRILL, broker=broker.url)) as r:
        assert r.app.sync.link.wait_connected(10)
        s = r.app.open_store()
        try:
            s.set_meta("policy_json", '{"fever_c": 37.0}')
            s.set_meta("policy_version", "10")
        finally:
            s.close()
        assert r.app.pick_up_stored_policy() and r.app.policy_version() == 10
        c = Listener(broker.port, topic="none", client_id="central-test")
        old = {"type": "policy", "version": 4, "ts": now_iso(), "by": "central", "policy": {"fever_c": 38.0}}
        c.publish(f"{PREFIX}/policy", signed(old, r.keys.central))
        down = r.app.sync.downstream
        assert Listener.wait_for(lambda: down.counters.get("policy_old") == 1, 10)
        assert r.app.policy_version() == 10 and r.app.policy.fever_c == 37.0
        c.close()


def test_a_snapshot_that_cannot_stage_beside_a_desk_import_is_dropped_cleanly(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A desk import swapping a table in holds the staging lock: the snapshot from
    # central is dropped (and asked for again at the next gap), never staged beside it.
    import base64
    import hashlib
    import zlib
    from datetime import datetime, timezone

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gate.core.tokens import KeyRing
    from gate.store.database import Store
    from sync import codec
    from sync.downstream import Downstream, Hooks
    from sync.topics import Topics

    class NoLink:
        connected = True

        def publish(self, *a, **k):  # type: ignore[no-untyped-def]
            return 1

    key = Ed25519PrivateKey.generate()
    topics = Topics("gate/v1/test", "g1")
    hooks = Hooks(apply_policy=lambda p, v, **kw: None, open_door=lambda *a: True, report_now=lambda d: None,
                  reload=lambda: None, now=lambda: datetime.now(timezone.utc))
    path = tmp_path / "gate.db"
    desk = Store(path)
    desk.snapshot_begin()  # the desk's import is staging
    d = Downstream(NoLink(), lambda: Store(path), topics, KeyRing([key.public_key()]), hooks)  # type: ignore[arg-type]
    d.store = Store(path)
    monkeypatch.setattr(Store, "STAGING_WAIT_S", 0.0)
    try:
        d.request_snapshot()
        data = b'{"id": "s1", "category": "resident"}\n'
        raw = codec.encode(codec.sign({
            "type": "snapshot_chunk", "request_id": d._snapshot.request_id, "version": 3, "index": 0, "count": 1,  # noqa: SLF001
            "sha256": hashlib.sha256(data).hexdigest(), "data": base64.b64encode(zlib.compress(data)).decode(),
            "ts": datetime.now(timezone.utc).isoformat()}, key))
        d._handle(topics.snapshot, raw)  # noqa: SLF001
        assert d.counters.get("snapshot_busy") == 1 and d._snapshot is None  # noqa: SLF001
        assert desk.snapshot_leftovers() == ["card_bindings_new", "passes_new", "tombstones_new"]  # the desk's, untouched
        assert d.store.passes_version() == 0
    finally:
        desk.snapshot_abort()
        desk.close()
        d.store.close()
