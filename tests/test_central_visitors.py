"""Visitors across a site through a real mosquitto and the reference central: the
registration at east reaches central's visitor register (host unit, the visit's end);
east announces its signing key id, an operator approves the key (`gate central keys
gate-add`, not trust on first use), central's signed list reaches west, and west admits
east's visitor; central sees the visitor inside after the visit (`overstay`), and not
once they left; `gate central status` and `gate central visitors` say so."""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.tokens import key_id, load_private, new_keypair
from gate.desk.visitors import VisitorDesk
from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from sync.central import visitors
from sync.central.cli import central as central_cli
from sync.central.store import CentralStore
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central, trust_central

DRILL = """
    name: visitors at a site of two gates
    start: "{start}"
    config:
      gate: {{id: {gate}, site: drill}}
      keys: {{signing: "{signing}"}}
    passes: []
    steps: []
"""


def gate(name: str, broker: Broker, central_pub: Path, tmp_path: Path) -> Rehearsal:
    start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()  # central's signed time raises the floor
    signing, _ = new_keypair(tmp_path / name, "signing")
    r = Rehearsal(drill_file.parse(textwrap.dedent(DRILL.format(gate=name, start=start, signing=signing))),
                  broker=broker.url, store_path=tmp_path / f"{name}.db")
    return trust_central(r, [central_pub])


def enter(r: Rehearsal, at: float, pass_id: str, lane: str = "in") -> dict:
    r.step(Step(at=at, lane=lane, qr=pass_id))
    if lane == "in":
        r.step(Step(at=at + 0.5, lane=lane, temperature=36.5))
    return [line for line in r.lines if line["type"] == "decision"][-1]


def cli(conf: Path, *args: str) -> str:
    res = CliRunner().invoke(central_cli, ["-c", str(conf), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_visitor_registered_at_east_is_known_at_central_and_admitted_at_west(broker: Broker, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    c = start_central(tmp_path / "central", broker.url, key)
    conf = tmp_path / "central" / "central.toml"
    pub = tmp_path / "central.pub"
    from cryptography.hazmat.primitives import serialization

    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    try:
        east, west = gate("east", broker, pub, tmp_path), gate("west", broker, pub, tmp_path)
        with east, west:
            assert east.app.sync.link.wait_connected(10) and west.app.sync.link.wait_connected(10)
            signer = load_private(east.config.keys.signing)
            kid = key_id(signer.public_key())
            desk = VisitorDesk(signer=signer, open_store=east.app.open_store, now=east.app.clock.now, tz=east.app.tz,
                               keyring=east.app.keyring)
            vp = desk.register("刘洋", "1234", "3300", "7-1-101", length="2h")
            east.tokens[vp.pass_id] = west.tokens[vp.pass_id] = vp.token
            east.app.sync.publisher.nudge()

            # The registration reaches central's register, with the host unit and the visit's end.
            assert Listener.wait_for(lambda: any(v["pass"] == vp.pass_id for v in c.visitors()), 15), c.stats()
            [v] = [v for v in c.visitors() if v["pass"] == vp.pass_id]
            assert (v["unit"], v["gate"], v["holder"], v["length"]) == ("7-1-101", "east", "刘洋", "2h")
            assert datetime.fromisoformat(v["valid_until"]) == vp.valid_until and v["state"] == "not_yet"

            # East says which key it signs with; central does not trust it for that.
            assert Listener.wait_for(lambda: c.store.statuses().get("east", {}).get("signing_kid") == kid, 15)
            assert f"NOT APPROVED: the gate signs with {kid}" in cli(conf, "keys", "gates")
            assert enter(west, 5, vp.pass_id)["reason"] == "forged"

            # The operator approves east's key (its public half, checked against the id east shows).
            east_pub = tmp_path / "east.pub"
            east_pub.write_bytes(signer.public_key().public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
            res = CliRunner().invoke(central_cli, ["-c", str(conf), "keys", "gate-add", "east", str(east_pub), "--expect", "00000000"])
            assert res.exit_code != 0 and "not the key the gate shows" in res.output
            assert "gate key list version 1 published" in cli(conf, "keys", "gate-add", "east", str(east_pub), "--expect", kid)
            assert f"east             {kid}  vouched" in cli(conf, "keys", "gates")
            down = west.app.sync.downstream
            assert Listener.wait_for(lambda: down.counters.get("gatekeys_applied") >= 1, 15), down.counters
            ok = enter(west, 10, vp.pass_id)
            assert (ok["decision"], ok["reason"], ok["category"]) == ("allow", "ok", "visitor")

            # Central sees the visitor inside; past the visit's end, that is an overstay.
            assert Listener.wait_for(lambda: [v["state"] for v in c.visitors() if v["pass"] == vp.pass_id] == ["inside"], 15)
            later = vp.valid_until.timestamp() + 60
            assert [o["pass"] for o in c.overstays(later)] == [vp.pass_id]
            assert c.overstays(vp.valid_until.timestamp() - 60) == []
            # Out at east: no overstay any more.
            assert enter(east, 20, vp.pass_id, lane="out")["decision"] == "allow"
            assert Listener.wait_for(lambda: [v["state"] for v in c.visitors() if v["pass"] == vp.pass_id] == ["left"], 15)
            assert c.overstays(later) == []
    finally:
        c.stop()


def test_central_status_and_visitors_name_a_visitor_inside_after_the_visit(tmp_path: Path) -> None:
    key = tmp_path / "central.key"
    new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "drill"\nbroker = "mqtt://127.0.0.1:1"\nsigning_key = "{key}"\ndb = "{tmp_path / "c.db"}"\n')
    store = CentralStore(str(tmp_path / "c.db"))
    now = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        from sync.central import presence_relay

        with store.db.tx():
            for i, (pid, ends, moves) in enumerate([
                ("v-stays", now - timedelta(minutes=30), ["in"]),          # visit over, still inside: overstay
                ("v-left", now - timedelta(minutes=30), ["in", "out"]),   # visit over, gone home
                ("v-early", now + timedelta(hours=1), ["in"]),            # inside, visit not over
            ]):
                ev = {"id": f"00000000-0000-4000-8000-00000000000{i}", "seq": i + 1, "gate": "east", "ts": (now - timedelta(hours=2)).isoformat(),
                      "type": "registration", "lane": "", "clock": "ok", "pass": pid, "category": "visitor", "holder": "访客",
                      "unit": "7-1-101", "id_last4": "1234", "phone_last4": "3300", "valid_until": ends.isoformat(), "who": "guard",
                      "length": "2h"}
                assert visitors.record(store.db, ev) and not visitors.record(store.db, ev)  # a resent event is one visitor
                for j, d in enumerate(moves):
                    presence_relay.record(store.db, {"type": "decision", "decision": "allow", "pass": pid, "direction": d,
                                                     "ts": (now - timedelta(minutes=90 - j)).isoformat(), "gate": "west", "id": "x"})
    finally:
        store.close()
    out = cli(conf, "status")
    assert "OVERSTAY v-stays" in out and "host unit 7-1-101" in out and "at west (registered at east)" in out
    assert "v-left" not in out and "v-early" not in out
    lines = [json.loads(x) for x in cli(conf, "status", "--json").splitlines()]
    assert [(x["alarm"], x["pass"], x["unit"]) for x in lines if x.get("alarm")] == [("overstay", "v-stays", "7-1-101")]
    states = {v["pass"]: (v["state"], v["overstay"]) for v in map(json.loads, cli(conf, "visitors", "--json").splitlines())}
    assert states == {"v-stays": ("inside", True), "v-left": ("left", False), "v-early": ("inside", False)}
    assert [json.loads(x)["pass"] for x in cli(conf, "visitors", "--overstay", "--json").splitlines()] == ["v-stays"]


def test_gate_keys_are_approved_by_an_operator_and_never_a_withdrawn_or_central_s_own(tmp_path: Path) -> None:
    from sync import gatekeys

    key_path, _ = new_keypair(tmp_path, "central")
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "drill"\nbroker = "mqtt://127.0.0.1:1"\nsigning_key = "{key_path}"\ndb = "{tmp_path / "c.db"}"\n')
    east, _ = new_keypair(tmp_path, "east")
    west, _ = new_keypair(tmp_path, "west")
    east_kid = key_id(load_private(east).public_key())

    def run(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(central_cli, ["-c", str(conf), *args], catch_exceptions=False)
        return res.exit_code, res.output

    # No broker here: stored, and the running central sends it (exit 1 says so).
    code, out = run("keys", "gate-add", "east", str(tmp_path / "east.pub"), "--note", "seen on site")
    assert code == 1 and "gate key list version 1 (vouched for east's key" in out and "stored but not sent" in out
    code, out = run("keys", "gate-add", "west", str(tmp_path / "west.pub"))
    assert code == 1 and "version 2" in out
    assert f"east             {east_kid}  vouched  seen on site" in cli(conf, "keys", "gates")
    listed = json.loads(cli(conf, "keys", "gates", "--json"))
    assert sorted(listed["gates"]) == ["east", "west"] and listed["type"] == "gatekeys"
    # Central's own key is no gate key, and a withdrawn key cannot be approved.
    code, out = run("keys", "gate-add", "north", str(tmp_path / "central.pub"))
    assert code == 2 and "central's own signing key" in out
    code, _ = run("keys", "withdraw", str(tmp_path / "west.pub"))
    code, out = run("keys", "gate-add", "south", str(tmp_path / "west.pub"))
    assert code == 2 and "is withdrawn" in out
    code, out = run("keys", "gate-remove", "west")
    assert code == 1 and "version 3" in out
    store = CentralStore(str(tmp_path / "c.db"))
    try:
        assert sorted(gatekeys.latest(store)["gates"]) == ["east"]
    finally:
        store.close()
    code, out = run("keys", "gate-remove", "west")
    assert code == 2 and "nothing to take off" in out
