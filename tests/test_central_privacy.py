"""Privacy across the site (issue 14): a pass erased at central is erased there and at
every gate (a signed `erase` command, re-sent until each gate confirms), and central's
retention purge; on SQLite and PostgreSQL (tests/test_central.py starts one)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gate.config import ConfigError
from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from sync import codec
from sync.central import CentralStore, load_central_config
from sync.central import privacy
from sync.central.cli import central as central_cli
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central, trust_central
from tests.test_central import postgres_dsn  # noqa: F401  (the PostgreSQL fixture)

NOW = datetime.now(timezone.utc)
TABLES = ("events", "passes", "changes", "policies", "commands", "status", "reports", "tombstones", "presence_items",
          "erasures", "erased_cards", "erasure_gates", "quarantine")


def event(gate: str, seq: int, ts: datetime | None = None, **kw: Any) -> dict[str, Any]:
    ev = {"id": str(uuid.uuid4()), "seq": seq, "gate": gate, "ts": (ts or NOW).isoformat(), "type": "decision",
          "lane": "in", "clock": "ok", "pass": "P1", "credential": "card", "card": "7654321", "category": "resident",
          "decision": "allow", "reason": "ok", "temperature_c": 36.5, "direction": "in"}
    ev.update(kw)
    return ev


def registration(gate: str, seq: int, pass_id: str, holder: str, valid_until: datetime, **kw: Any) -> dict[str, Any]:
    return event(gate, seq, type="registration", lane="", credential=None, card=None, decision=None, reason=None,
                 temperature_c=None, direction=None, **{"pass": pass_id, "category": "visitor", "holder": holder,
                 "unit": "3-2-501", "id_last4": "4321", "phone_last4": "8765", "valid_until": valid_until.isoformat(),
                 "who": "guard"}, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    dsn = request.getfixturevalue("postgres_dsn")
    s = CentralStore(dsn)
    try:
        with s.db.tx():
            for t in TABLES:
                s.db.execute(f"DELETE FROM {t}")
            s.db.execute("UPDATE meta SET value = '0'")
    finally:
        s.close()
    return dsn


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    from gate.core.tokens import new_keypair

    new_keypair(tmp_path / "keys", "central")
    p = tmp_path / "central.toml"
    p.write_text('site = "s1"\nsigning_key = "keys/central.key"\ndb = "central.db"\n', encoding="utf-8")
    return p


def cli(conf: Path, db: str, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(central_cli, ["-c", str(conf), "--db", db, *args], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res.output


def store_events(s: CentralStore, evs: list[dict[str, Any]], received: float | None = None) -> None:
    with s.db.tx():
        for ev in evs:
            s.insert_event(privacy.scrub_incoming(s, ev), received if received is not None else time.time())


# ---------------------------------------------------------------- erase at central


def test_erase_at_central_removes_the_pass_and_keeps_the_counts(db_url: str, conf: Path) -> None:
    s = CentralStore(db_url)
    try:
        s.add_pass(id="P1", category="resident", holder="王芳", unit="3-2-501", card="7654321", phone_last4="1234",
                   valid_until=NOW + timedelta(days=100))
        s.add_pass(id="P2", category="resident", holder="李雷", unit="3-2-502")
        s.upsert_passes([{"id": "P1", "category": "resident", "holder": "王芳", "unit": "3-2-601",  # moved flat
                          "card": "7654321", "phone_last4": "1234", "valid_until": NOW + timedelta(days=100)}])
        store_events(s, [
            event("east", 1), event("east", 2, decision="deny", reason="fever", temperature_c=38.2),
            event("west", 1, credential="qr", card=None),
            event("west", 2, **{"pass": None}, reason="unknown_card", decision="deny"),  # its card before it was bound
            event("west", 3, **{"pass": "P2", "card": None}),
            registration("east", 3, "P1", "王芳", NOW + timedelta(hours=5)),
        ])
        with s.db.tx():
            s.upsert_status({"gate": "east", "online": True, "ts": NOW.isoformat()}, time.time())
            s.upsert_report({"gate": "east", "date": NOW.date().isoformat(), "events": 3, "new_cards": ["7654321", "1"],
                             "unknown_cards": []}, time.time())
        from sync.central import presence_relay
        with s.db.tx():
            presence_relay.record(s.db, event("east", 1))
            # the console's first sighting of P1's card (its "new cards" page) and of another card
            s.db.executemany("INSERT INTO console_cards (card, first_at, gate, day) VALUES (?,?,?,?)",
                             [("7654321", time.time(), "east", NOW.date().isoformat()),
                              ("1", time.time(), "west", NOW.date().isoformat())])
        before_types = sorted((e["gate"], e["type"], e.get("decision") or "") for e in s.events())
    finally:
        s.close()

    exported = json.loads(cli(conf, db_url, "privacy", "export", "--pass", "P1"))
    assert exported["roster"]["holder"] == "王芳" and [c["op"] for c in exported["changes"]] == ["upsert", "upsert"]
    assert {(e["gate"], e["seq"]) for e in exported["events"]} == {("east", 1), ("east", 2), ("west", 1), ("west", 2)}
    assert [r["holder"] for r in exported["registrations"]] == ["王芳"] and exported["cards"] == ["7654321"]
    assert exported["presence"][0]["pass"] == "P1" and exported["reports"][0]["new_cards"] == ["7654321"]
    cli(conf, db_url, "privacy", "export", "--pass", "nobody", code=1)
    cli(conf, db_url, "privacy", "erase", "--pass", "nobody", "--by", "王主任", "--yes", code=1)  # a typo erases nothing

    out = cli(conf, db_url, "privacy", "erase", "--pass", "P1", "--by", "王主任", "--yes", "--no-send")
    assert "erased pass P1" in out and "4 events and 1 registrations" in out

    s = CentralStore(db_url)
    try:
        assert s.get_pass("P1") is None and s.get_pass("P2") is not None
        assert [r[0] for r in s.db.all("SELECT card FROM console_cards ORDER BY card")] == ["1"]  # P1's card forgotten
        # a tombstone every gate gets: the id, its category and until when its QR could be valid
        v, lines = s.snapshot_lines()
        stone = next(json.loads(x) for x in lines if json.loads(x)["id"] == "P1")
        assert stone["removed"] and stone["revoked"] and stone["category"] == "resident" and "holder" not in stone
        history = s.db.all("SELECT op, change FROM changes WHERE pass_id = 'P1' ORDER BY version")
        assert [op for op, _c in history] == ["delete", "delete", "delete"]
        assert all("王芳" not in c and "7654321" not in c and "phone_last4" not in c for _op, c in history)
        # events: the same rows (the reports count them), with nothing left of P1
        assert sorted((e["gate"], e["type"], e.get("decision") or "") for e in s.events()) == before_types
        text = json.dumps(s.events(), ensure_ascii=False)
        assert '"P1"' not in text and "7654321" not in text and "王芳" not in text
        assert all(e.get("id_last4") is None and e.get("phone_last4") is None for e in s.events())
        assert any(e.get("pass") == "P2" for e in s.events())
        assert s.db.all("SELECT key FROM presence_items") == []
        assert s.reports()[0]["new_cards"] == ["1"]
        audit = s.db.all("SELECT pass_id, by_name FROM erasures")
        assert [tuple(a) for a in audit] == [("P1", "王主任")]
        assert [(p["gate"], p["online"], p["sends"]) for p in privacy.pending(s.db)] == [("east", True, 0), ("west", False, 0)]
        # an event dated before the erasure that arrives late (a gate that was offline) is stored scrubbed;
        # one dated after it (the old QR shown, refused) is a new fact and kept
        store_events(s, [event("west", 4, ts=NOW - timedelta(minutes=5)),
                         event("west", 5, ts=datetime.now(timezone.utc) + timedelta(minutes=1), decision="deny",
                               reason="revoked", card=None)])
        late = {e["seq"]: e for e in s.events("west")}
        assert late[4]["pass"] is None and late[4]["card"] is None and late[5]["pass"] == "P1"
        # a gate's privacy_erase admin event confirms it
        ref = s.db.one("SELECT id FROM erasures")[0]
        store_events(s, [{"id": str(uuid.uuid4()), "seq": 9, "gate": "east", "ts": NOW.isoformat(), "type": "admin",
                          "lane": "", "clock": "ok", "action": "privacy_erase", "pass": None, "who": "central:central",
                          "reason": "erasure asked by central", "detail": f"erasure={ref}"}])
        with s.db.tx():
            privacy.acknowledge(s.db, "east", s.events("east")[-1], time.time())
        assert [p["gate"] for p in privacy.pending(s.db)] == ["west"]
    finally:
        s.close()
    again = json.loads(cli(conf, db_url, "privacy", "export", "--pass", "P1"))
    assert again["roster"] is None and again["registrations"] == [] and again["erasures"][0]["by"] == "王主任"
    assert {g: bool(st["done_at"]) for g, st in again["erasures"][0]["gates"].items()} == {"east": True, "west": False}
    assert all(e["pass"] == "P1" and e["reason"] == "revoked" for e in again["events"])  # only the later refusal


# ---------------------------------------------------------------- retention


def test_retention_purge_removes_old_events_and_finished_visits(db_url: str, conf: Path) -> None:
    day = 86400.0
    now = time.time()
    s = CentralStore(db_url)
    try:
        old = [event("east", i, **{"pass": f"R{i}"}) for i in range(1, 8)]
        store_events(s, old, received=now - 40 * day)
        store_events(s, [event("east", 8, **{"pass": "R8"})], received=now - 2 * day)
        store_events(s, [
            registration("east", 9, "V1", "访客刘", datetime.now(timezone.utc) - timedelta(days=39)),  # visit over long ago
            registration("east", 10, "V2", "访客张", datetime.now(timezone.utc) + timedelta(days=5)),  # a long stay: kept
        ], received=now - 40 * day)
        store_events(s, [registration("east", 11, "V3", "访客王", datetime.now(timezone.utc) - timedelta(days=1))],
                     received=now - 1 * day)
        s.add_pass(id="V1", category="visitor", holder="访客刘", valid_until=NOW - timedelta(days=39))
        s.add_pass(id="V3", category="visitor", holder="访客王", valid_until=NOW - timedelta(days=1))
    finally:
        s.close()
    conf.write_text(conf.read_text() + "[retention]\ndays = 30\nchunk = 2\n", encoding="utf-8")  # several chunks
    out = cli(conf, db_url, "privacy", "purge")
    assert "purged 7 events, 1 visitor registrations, 1 ended visitor passes" in out
    s = CentralStore(db_url)
    try:
        left = {e["seq"] for e in s.events()}
        assert left == {8, 10, 11}
        assert s.get_pass("V1") is None and s.get_pass("V3") is not None
        assert all("访客刘" not in c for (c,) in s.db.all("SELECT change FROM changes"))
    finally:
        s.close()
    assert "purged 0 events, 0 visitor registrations, 0 ended" in cli(conf, db_url, "privacy", "purge")


def test_retention_days_is_checked(conf: Path) -> None:
    assert load_central_config(conf).retention.days == 30  # the gate's default
    conf.write_text(conf.read_text() + "[retention]\ndays = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_central_config(conf)
    assert "retention.days" in str(err.value) and "greater than or equal to 1" in str(err.value)
    conf.write_text(conf.read_text().replace("days = 0", 'days = "a month"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="retention.days"):
        load_central_config(conf)


def test_the_running_central_purges_on_its_timer(broker: Broker, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    c = start_central(tmp_path / "c", broker.url, Ed25519PrivateKey.generate(), site="s1",
                      extra="[retention]\ndays = 30\npurge_every_s = 0.3\n")
    try:
        s = CentralStore(c.db_url)
        try:
            store_events(s, [event("east", 1)], received=time.time() - 31 * 86400)
            store_events(s, [event("east", 2)])
        finally:
            s.close()
        assert Listener.wait_for(lambda: [e["seq"] for e in c.store.events()] == [2], 10), c.stats()
        assert c.stats().get("purged_events") == 1
    finally:
        c.stop()


# ---------------------------------------------------------------- every gate erases


def test_the_gate_side_erasure_leaves_nothing_of_the_pass(tmp_path: Path) -> None:
    """gate/store/erasure.py, what `gate privacy erase` and central's command both run:
    also its movements, fever hold, the cards its events show and the pass snapshot."""
    from gate.store.database import Store
    from gate.store.erasure import erase_pass
    from gate.store.integrity import save_snapshot, snapshot_path

    s = Store(tmp_path / "gate.db")
    try:
        s.upsert_passes([{"id": "r1", "category": "resident", "holder": "王芳", "unit": "3-2-501", "phone_last4": "1234"}],
                        {"1234567": "r1"})
        with s.write() as c:
            c.execute("INSERT INTO last_move (pass_id, at, direction, gate) VALUES ('r1', 1, 'in', 'west')")
            c.execute("INSERT INTO fever_holds (pass_id, alarm_id, since, gate) VALUES ('r1', 'a1', 1, 'west')")
        save_snapshot(s.conn, s.path)
        assert "王芳".encode() in snapshot_path(s.path).read_bytes()
        assert erase_pass(s, "r1")["passes"] == 1
        assert erase_pass(s, "r1") == {"passes": 0, "cards": 0, "events": 0}  # again: nothing more to do
        assert s.get_pass("r1").revoked
        for table in ("last_move", "fever_holds", "passes", "card_bindings"):
            assert s.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        assert "王芳".encode() not in snapshot_path(s.path).read_bytes()
    finally:
        s.close()


def drill(passes: bool = True) -> Any:
    start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    rows = ("\n  - {id: r1, holder: 王芳, unit: 3-2-501, category: resident, phone_last4: '1234', card: '1234567'}"
            "\n  - {id: r2, holder: 王强, unit: 3-2-502, category: resident}") if passes else " []"
    return drill_file.parse(f'name: site-privacy\nstart: "{start}"\nconfig: {{policy: {{passback: "off"}}}}\n'
                            f"passes:{rows}\n")


def central_roster(c: Any) -> None:
    c.add_pass(id="r1", holder="王芳", unit="3-2-501", category="resident", phone_last4="1234", card="1234567",
               valid_until=NOW + timedelta(days=300))
    c.add_pass(id="r2", holder="王强", unit="3-2-502", category="resident", valid_until=NOW + timedelta(days=300))


def gate_holds(path: Path, *needles: str) -> list[str]:
    """Rows of the gate's store (any table) that still contain one of the needles."""
    db = sqlite3.connect(path)
    try:
        found = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if table in ("tombstones", "nonces"):
                continue
            for row in db.execute(f'SELECT * FROM "{table}"'):
                text = json.dumps(row, ensure_ascii=False, default=str)
                if any(n in text for n in needles):
                    found.append(f"{table}: {text[:200]}")
        return found
    finally:
        db.close()


def enter(r: Rehearsal, at: float, **how: str) -> None:
    r.step(Step(at=at, lane="in", **how))
    r.step(Step(at=at + 0.5, lane="in", temperature=36.5))


def test_a_gate_erases_when_central_says_so_and_refuses_the_pass(broker: Broker, tmp_path: Path) -> None:
    """Real mosquitto, real central, a real gate: central erases r1; the gate gets the
    signed erase, holds nothing of r1 any more but its tombstone, refuses r1's QR
    `revoked`, confirms (central stops sending), and a replayed command is refused."""
    with trust_central(Rehearsal(drill(), broker=broker.url)) as r:
        assert r.app.sync.link.wait_connected(10)
        c = start_central(tmp_path / "central", broker.url, r.keys.central, extra="erase_resend_s = 1\n")
        cmds = Listener(broker.port, topic="gate/v1/drill/drill/cmd", client_id="cmd-listener")
        try:
            central_roster(c)
            s = r.app.open_store()
            try:
                assert Listener.wait_for(lambda: s.passes_version() == c.passes_version, 20), "the roster"
                enter(r, 0, card="1234567")
                enter(r, 10, qr="r1")
                enter(r, 20, qr="r2")
                assert r.drain(20)
                assert Listener.wait_for(lambda: c.store.event_count() >= 6 and c.store.liveness(time.time(), 900)
                                         .get("drill", {}).get("state") == "online", 20)
                assert gate_holds(Path(r.config.store.path), "王芳", "1234567")  # before: it is there
                down = r.app.sync.downstream
                # the CLI erases in the database and sends the command to the gate (online) at once
                out = CliRunner().invoke(central_cli, ["-c", str(tmp_path / "central" / "central.toml"), "privacy", "erase",
                                                       "--pass", "r1", "--by", "王主任", "--yes"], catch_exceptions=False)
                assert out.exit_code == 0, out.output
                assert "2 events and 0 registrations" in out.output and "erase sent to drill" in out.output
                assert Listener.wait_for(lambda: (down.counters.get("cmd_erase") or 0) >= 1, 20), down.counters.snapshot()
                r.app.join()
                ref = c.store.db.one("SELECT id FROM erasures WHERE pass_id = 'r1'")[0]
                confirmed = lambda: c.store.db.one(  # noqa: E731
                    "SELECT done_at FROM erasure_gates WHERE erasure = ? AND gate = 'drill'", (ref,))[0]
                assert Listener.wait_for(lambda: r.drain(1) and confirmed(), 20), "the gate's privacy_erase event"
                # nothing of r1 at the gate but its tombstone (no personal data), its events kept as counts
                assert gate_holds(Path(r.config.store.path), "王芳", "1234567", '"r1"') == []
                rec = s.get_pass("r1")
                assert rec.revoked and rec.listed and rec.holder is None
                assert s.conn.execute("SELECT count(*) FROM events WHERE type = 'decision' AND decision = 'allow'"
                                      ).fetchone()[0] == 3
                admin = [e for e in s.events() if e["type"] == "admin" and e["action"] == "privacy_erase"]
                assert admin and {(a["who"], a["detail"], a["pass"]) for a in admin} == {("central:central", f"erasure={ref}", None)}
                # central's copy: nothing of r1's person either
                text = json.dumps(c.store.events(), ensure_ascii=False)
                assert "1234567" not in text and "王芳" not in text and '"r1"' not in text
                # the pass shows: refused revoked (new events, after the erasure: kept as they are)
                r.step(Step(at=40, lane="in", qr="r1"))
                r.step(Step(at=50, lane="in", card="1234567"))
                got = [(x.get("pass"), x["decision"], x["reason"]) for x in r.lines if x["type"] == "decision"]
                assert got[-2] == ("r1", "deny", "revoked")
                assert got[-1][1] == "deny"  # the card is no longer bound to anyone
                # confirmed: central sends it no more
                sends = c.store.db.one("SELECT sends FROM erasure_gates WHERE erasure = ?", (ref,))[0]
                time.sleep(2.5)
                assert c.store.db.one("SELECT sends FROM erasure_gates WHERE erasure = ?", (ref,))[0] == sends
                # the erase command captured on the wire and sent again: refused by its nonce
                assert Listener.wait_for(lambda: cmds.on("/cmd"), 5)
                raw = cmds.on("/cmd")[0]
                assert raw["cmd"] == "erase" and raw["pass"] == "r1" and raw["erasure"] == ref
                applied = down.counters.get("cmd_erase")
                cmds.publish("gate/v1/drill/drill/cmd", codec.encode(raw))
                assert Listener.wait_for(lambda: down.counters.get("cmd_replayed") == 1, 10)
                r.app.join()
                assert down.counters.get("cmd_erase") == applied
            finally:
                s.close()
        finally:
            cmds.close()
            c.stop()


def test_an_offline_gate_erases_when_it_comes_back(broker: Broker, tmp_path: Path) -> None:
    """The gate is stopped when central erases: nothing piles up for it while it is away,
    and once it is back (its status online) it gets a fresh erase and confirms it."""
    store_path = tmp_path / "gate.db"
    pub = tmp_path / "central.pub"
    with trust_central(Rehearsal(drill(), broker=broker.url, store_path=store_path)) as r:
        assert r.app.sync.link.wait_connected(10)
        shutil.copy(r.keys.central_pub, pub)
        c = start_central(tmp_path / "central", broker.url, r.keys.central, extra="erase_resend_s = 1\n")
        central_roster(c)
        s = r.app.open_store()
        try:
            assert Listener.wait_for(lambda: s.passes_version() == c.passes_version, 20), "the roster"
        finally:
            s.close()
        enter(r, 0, card="1234567")
        enter(r, 10, qr="r1")
        assert r.drain(20)
        assert Listener.wait_for(lambda: c.store.event_count() >= 4, 20)
    # the gate has stopped: its status says offline
    assert Listener.wait_for(lambda: c.store.liveness(time.time(), 900)["drill"]["state"] == "offline", 10)
    try:
        done = c.erase_pass("r1", "王主任")
        ref = done["erasure"]
        time.sleep(2.5)
        assert c.store.db.one("SELECT sends, done_at FROM erasure_gates WHERE erasure = ?", (ref,)) == (0, None)
        assert gate_holds(store_path, "王芳", "1234567")
        back = trust_central(Rehearsal(drill(passes=False), broker=broker.url, store_path=store_path), keys=[pub])
        with back as r2:
            assert r2.app.sync.link.wait_connected(10)
            down = r2.app.sync.downstream
            assert Listener.wait_for(lambda: down.counters.get("cmd_erase") == 1, 20), down.counters.snapshot()
            r2.app.join()
            assert Listener.wait_for(lambda: r2.drain(1) and c.store.db.one(
                "SELECT done_at FROM erasure_gates WHERE erasure = ?", (ref,))[0], 20), "confirmed"
            assert gate_holds(store_path, "王芳", "1234567", '"r1"') == []
            s = r2.app.open_store()
            try:
                assert s.get_pass("r1").revoked
            finally:
                s.close()
        assert privacy.pending(c.store.db) == []
    finally:
        c.stop()
