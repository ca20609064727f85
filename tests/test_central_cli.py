"""`gate central ...` (sync/central/cli.py)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.core.tokens import KeyRing, load_public, new_keypair
from sync import codec
from sync.central import CentralStore
from sync.central.cli import central
from tests.mqtt_broker import Broker  # fixtures broker, broker_factory: tests/conftest.py
from tests.test_central import PREFIX, SITE, GateClient, event, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(tmp_path: Path, broker: Broker):  # type: ignore[no-untyped-def]
    priv, pub = new_keypair(tmp_path / "keys", "central")
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "{SITE}"\nbroker = "{broker.url}"\nsigning_key = "keys/central.key"\ndb = "central.db"\npoll_s = 0.1\n')
    return conf, KeyRing([load_public(pub)]), tmp_path / "central.db"


def run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(central, list(args), catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_passes_add_revoke_import_list(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf, _, db = setup
    out = run("-c", str(conf), "passes", "add", "--id", "P1", "--holder", "李雷", "--unit", "3-2-501",
              "--category", "resident", "--phone-last4", "1234", "--card", "900001", "--valid-until", "2026-12-31")
    assert "roster version 1" in out.output
    # -c may also come after the sub-command
    run("passes", "revoke", "P1", "-c", str(conf))
    csv = tmp_path / "roster.csv"
    csv.write_text("编号,姓名,房号,类别,门禁卡号\nA1,韩梅梅,1-1-101,常住,900002\nA2,王五,1-1-102,访客,\n", encoding="utf-8")
    assert "2 changes, roster version 2 -> 4" in run("-c", str(conf), "passes", "import", str(csv)).output
    assert "0 changes" in run("-c", str(conf), "passes", "import", str(csv)).output  # unchanged: no new versions
    listed = [json.loads(line) for line in run("-c", str(conf), "passes", "list", "--json").output.splitlines()]
    assert [p["id"] for p in listed] == ["A1", "A2", "P1"]
    p1 = listed[2]
    assert p1["revoked"] is True and p1["card"] == "900001" and p1["valid_until"] == "2026-12-31T23:59:59+08:00"
    assert listed[0]["card"] == "900002" and listed[1]["category"] == "visitor"
    assert "1 changes" in run("-c", str(conf), "passes", "import", "--replace", str(csv)).output  # P1 deleted
    bad = run("-c", str(conf), "passes", "add", "--id", "P2", "--holder", "x", "--unit", "1", "--category", "staff",
              "--card", "900002", ok=False)
    assert bad.exit_code == 2 and "already bound to pass A1" in bad.output
    assert run("-c", str(conf), "passes", "revoke", "nope", ok=False).exit_code == 2
    backwards = run("-c", str(conf), "passes", "add", "--id", "P3", "--holder", "x", "--unit", "1", "--category", "staff",
                    "--valid-from", "2026-12-31", "--valid-until", "2026-12-01", ok=False)
    assert backwards.exit_code == 2 and "--valid-from 2026-12-31" in backwards.output and "is after its end" in backwards.output
    s = CentralStore(str(db))
    assert s.passes_version == 5  # nothing of the refused ones was stored
    s.close()


def test_events_listing_and_errors(setup) -> None:  # type: ignore[no-untyped-def]
    conf, _, db = setup
    s = CentralStore(str(db))
    evs = [event("g2", 2), event("g1", 2), event("g2", 1), event("g1", 1)]
    with s.db.tx():
        for ev in evs:
            s.insert_event(ev, 0.0)
    s.close()
    lines = run("-c", str(conf), "events", "--json").output.splitlines()
    assert [(json.loads(x)["gate"], json.loads(x)["seq"]) for x in lines] == [("g1", 1), ("g1", 2), ("g2", 1), ("g2", 2)]
    only = run("-c", str(conf), "events", "--json", "--gate", "g2").output.splitlines()
    assert [json.loads(x) for x in only] == [evs[2], evs[0]]
    assert "g1" in run("-c", str(conf), "events").output
    res = CliRunner(env={"GATE_CENTRAL_CONFIG": None}).invoke(central, ["events"])
    assert res.exit_code == 2 and "gate central -c CENTRAL.toml" in res.output
    bad = conf.parent / "bad.toml"
    bad.write_text('site = "s"\nsigning_key = "k"\nbrokr = "x"\n')
    res = CliRunner().invoke(central, ["-c", str(bad), "events"])
    assert res.exit_code == 2 and "brokr: unknown key" in res.output


def test_cmd_and_policy_publish(setup, broker: Broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf, ring, _ = setup
    g = GateClient(broker, "g1")
    g.subscribe(f"{PREFIX}/g1/cmd")
    out = run("-c", str(conf), "cmd", "open-door", "--gate", "g1", "--lane", "in", "--reason", "ambulance", "--ttl", "60").output
    assert "open_door sent to g1" in out
    run("-c", str(conf), "cmd", "resync", "--gate", "g1")
    run("-c", str(conf), "cmd", "report-now", "--gate", "g1", "--date", "2026-03-01")
    run("-c", str(conf), "cmd", "reload", "--gate", "g1")
    run("-c", str(conf), "cmd", "door-mode", "--gate", "g1", "--lane", "all", "--mode", "open", "--reason", "evacuation drill")
    wait_for(lambda: len(g.on("/cmd")) == 5, what="5 commands")
    cmds = [codec.decode(m.payload, "cmd", ring) for m in g.on("/cmd")]
    assert [c["cmd"] for c in cmds] == ["open_door", "resync", "report_now", "reload", "door_mode"]
    assert (cmds[4]["lane"], cmds[4]["mode"], cmds[4]["reason"]) == ("all", "open", "evacuation drill")
    assert cmds[0]["reason"] == "ambulance" and cmds[2]["date"] == "2026-03-01"
    assert CliRunner().invoke(central, ["-c", str(conf), "cmd", "open-door", "--gate", "g1", "--lane", "in"]).exit_code == 2
    pol = tmp_path / "policy.toml"
    pol.write_text("[policy]\nversion = 2\nfever_c = 37.4\n")
    assert "policy version 2 published" in run("-c", str(conf), "policy", "publish", str(pol)).output
    late = GateClient(broker, "g2")
    late.subscribe(f"{PREFIX}/policy")
    wait_for(lambda: late.on("/policy"), what="retained policy")
    assert codec.decode(late.on("/policy")[0].payload, "policy", ring)["policy"]["fever_c"] == 37.4
    again = CliRunner().invoke(central, ["-c", str(conf), "policy", "publish", str(pol)])
    assert again.exit_code == 2 and "bump it" in again.output
    # broker unreachable: a clear error, exit 1
    res = CliRunner().invoke(central, ["-c", str(conf), "--broker", "mqtt://127.0.0.1:1", "cmd", "reload", "--gate", "g1"])
    assert res.exit_code == 1 and "not sent" in res.output
    g.close()
    late.close()


def test_run_stores_events_until_sigterm(setup, broker: Broker) -> None:  # type: ignore[no-untyped-def]
    conf, ring, db = setup
    code = "import sys; from sync.central.cli import central; central(prog_name='gate central')"
    proc = subprocess.Popen([sys.executable, "-c", code, "-c", str(conf), "--db", str(db)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        g = GateClient(broker, "g1")
        g.subscribe(f"{PREFIX}/passes")
        wait_for(lambda: "central-s1-1" in broker.log() or proc.poll() is not None, what="central to connect")
        assert proc.poll() is None
        ev = event("g1", 1)

        def sent() -> bool:
            # Central's session connects before it subscribes: until it has, the broker
            # answers PUBACK 16 "No matching subscribers" and drops the event, and a gate
            # (sync/link.py) sends it again; so does this one.
            if getattr(g.publish(f"{PREFIX}/g1/events", ev), "value", 0) == 16:
                time.sleep(0.1)
                return False
            return True

        wait_for(sent, what="central subscribed to the events")
        wait_for(lambda: run("-c", str(conf), "events", "--json").output.strip(), what="the event in the db")
        # a roster change made by the CLI is published by the running central
        run("-c", str(conf), "passes", "add", "--id", "P1", "--holder", "h", "--unit", "u", "--category", "staff")
        wait_for(lambda: g.on("/passes"), what="the batch")
        assert codec.decode(g.on("/passes")[0].payload, "passes", ring)["to_version"] == 1
        g.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "central central-s1-1 for site s1" in err and '"events": 1' in err


def test_the_site_day_sums_every_gates_report_and_names_the_silent_gate(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf, _, db = setup
    day = "2026-11-22"

    def report(gate: str, allowed: dict, denied: dict, fevers: int, cards: list[str]) -> dict:
        hours = [0] * 24
        hours[8] = sum(allowed.values()) + sum(denied.values())
        return {"date": day, "gate": gate, "events": hours[8] * 2, "allowed": allowed, "denied": denied, "fevers": fevers,
                "challenges": 0, "new_cards": cards, "unknown_cards": [], "by_hour": hours}

    s = CentralStore(str(db))
    with s.db.tx():
        s.upsert_report(report("east", {"resident": 40, "visitor": 3}, {"fever": 1}, 1, ["900001"]), 0.0)
        s.upsert_report(report("west", {"resident": 12}, {"unknown_card": 2}, 0, ["900002", "900001"]), 0.0)
        s.upsert_report(report("north", {"staff": 1}, {}, 0, []) | {"date": "2026-11-21"}, 0.0)  # the day before only
        s.insert_event(event("north", 7, ts="2026-11-22T09:15:00+08:00"), 0.0)
    s.close()
    rep = json.loads(run("-c", str(conf), "report", "daily", "--date", day, "--json").output)
    assert rep["gates"] == ["east", "north", "west"] and rep["missing"] == ["north"]
    assert rep["allowed"] == {"resident": 52, "visitor": 3} and rep["denied"] == {"fever": 1, "unknown_card": 2}
    assert rep["fevers"] == 1 and rep["new_cards"] == ["900001", "900002"] and rep["by_hour"][8] == 58
    assert rep["by_gate"]["north"] == {"reported": False, "events_held": 1}
    assert rep["by_gate"]["east"]["allowed"] == 43
    out = run("-c", str(conf), "report", "daily", "--date", day, "--png", str(tmp_path / "site.png")).output
    assert "north" in out and "NO REPORT" in out
    assert (tmp_path / "site.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quarantine_list_and_clear(setup, broker: Broker) -> None:  # type: ignore[no-untyped-def]
    from sync.central import Central, load_central_config

    conf, _, _db = setup
    c = Central(load_central_config(conf)).start()
    try:
        assert c.wait_connected(10)
        g = GateClient(broker, "g1")
        g.publish(f"{PREFIX}/g1/events", json.dumps(event("g1", 2**63)).encode())
        g.publish(f"{PREFIX}/g1/events", b"not json")
        g.publish(f"{PREFIX}/g1/events", event("g1", 1))
        wait_for(lambda: c.stats().get("quarantined") == 2 and c.stats().get("events") == 1, what="2 quarantined, 1 stored")
        g.close()
    finally:
        c.stop()
    out = run("-c", str(conf), "quarantine")
    assert "g1: malformed 1 message(s)" in out.output and "g1: schema 1 message(s)" in out.output
    assert "2 message(s) in quarantine" in out.output and "9223372036854775808" in out.output
    rows = [json.loads(line) for line in run("-c", str(conf), "quarantine", "list", "--json").stdout.splitlines()]
    assert {r["reason"] for r in rows} == {"malformed", "schema"}
    assert next(r for r in rows if r["reason"] == "malformed")["raw"] == "not json"
    assert run("-c", str(conf), "quarantine", "clear", ok=False).exit_code == 2  # says what to clear
    assert "1 message(s) cleared" in run("-c", str(conf), "quarantine", "clear", "--reason", "schema").output
    assert "1 message(s) cleared" in run("-c", str(conf), "quarantine", "clear", "--all").output
    assert "0 message(s) in quarantine" in run("-c", str(conf), "quarantine", "list").output


def test_status_tells_online_offline_stale_and_silent_gates(setup) -> None:  # type: ignore[no-untyped-def]
    import time

    conf, _, db = setup
    now = time.time()
    s = CentralStore(str(db))
    with s.db.tx():
        for gate, online, ago in (("fresh", True, 5), ("quiet", True, 200), ("gone", True, 2000), ("stopped", False, 50)):
            s.upsert_status({"gate": gate, "online": online, "ts": "2026-11-22T08:00:00+08:00", "heartbeat_s": 30}, now - ago)
    s.close()
    rows = {json.loads(x)["gate"]: json.loads(x) for x in run("-c", str(conf), "status", "--json").output.splitlines()}
    assert {g: r["state"] for g, r in rows.items()} == {"fresh": "online", "quiet": "stale", "gone": "silent", "stopped": "offline"}
    res = CliRunner().invoke(central, ["-c", str(conf), "status"], catch_exceptions=False)
    assert "STALE" in res.output and "SILENT" in res.output and "OFFLINE" in res.output
    assert "ALARM: no heartbeat from gone" in res.output


def test_a_gate_that_stops_cleanly_is_offline_at_central(setup, broker: Broker) -> None:  # type: ignore[no-untyped-def]
    from gate.drill.runner import Rehearsal
    from sync.central import Central, load_central_config
    from tests.sync_helpers import trust_central
    from tests.test_sync import DRILL

    conf, _, db = setup
    conf.write_text(conf.read_text().replace('site = "s1"', 'site = "drill"'))  # the drill gate's site
    c = Central(load_central_config(conf)).start()
    try:
        r = trust_central(Rehearsal(DRILL, broker=broker.url))
        with r:
            assert r.app.sync.link.wait_connected(10)
            wait_for(lambda: c.store.statuses().get("drill", {}).get("online") is True, what="the gate online")
        # Stopped cleanly: its will (offline, retained) is published as it leaves.
        wait_for(lambda: c.store.statuses().get("drill", {}).get("online") is False, what="the gate offline")
    finally:
        c.stop()
