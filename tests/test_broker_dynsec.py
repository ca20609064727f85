"""The stricter broker (issue 12: "gates may not subscribe to anything outside their read
set, `$share/...` included"): mosquitto with its dynamic-security plugin, started from the
shipped docs/mosquitto-dynsec.conf, its users written by `gate central broker dynsec`, with
a real gate and central. Every SUBSCRIBE outside a user's own topics is refused when it is
made (reason 135), so a compromised gate cannot even join central's shared subscription.

`gate central broker apply` brings a changed file to the running broker through the
plugin's control topic as the admin user (`broker dynsec --admin`): a gate added or
withdrawn without restarting mosquitto."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.drill.runner import Rehearsal
from sync.central.hardening import share_group
from tests.docs_broker import DOCS, dynsec_broker
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, start_central
from tests.test_broker_hardening import enter, gate_drill, gate_ids

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "gate/v1/drill"


def provision(d: Path, key: Ed25519PrivateKey, *extra: str, group: str | None = None) -> tuple[Path, Path]:
    """central.toml (its key where start_central will find it) and the dynsec file the CLI
    writes for gates drill and other; returns (dynsec.json, the passwords folder)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "central.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    (d / "central.toml").write_text(f'site = "drill"\nbroker = "mqtt://127.0.0.1:1"\nsigning_key = "{d / "central.key"}"\n'
                                    f'db = "{d / "central.db"}"\n' + (f'group = "{group}"\n' if group else ""), encoding="utf-8")
    pw = d / "passwords"
    pw.mkdir(exist_ok=True)
    (pw / "drill").write_text("gate-pw\n", encoding="utf-8")  # what the drill's [sync] password_file holds
    out = d / "dynsec.json"
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "central", "-c", str(d / "central.toml"), "broker",
                          "dynsec", str(out), "--gate", "drill", "--gate", "other", "--passwords", str(pw), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return out, pw


def write_file(d: Path, out: Path, pw: Path, *gates: str, admin: str = "admin") -> None:
    """`broker dynsec` again (over the file the running broker loaded, as README says)."""
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "central", "-c", str(d / "central.toml"), "broker",
                          "dynsec", str(out), *(a for g in gates for a in ("--gate", g)), "--admin", admin,
                          "--passwords", str(pw)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def apply(d: Path, out: Path, pw: Path, b: Broker | None, *extra: str) -> subprocess.CompletedProcess[str]:
    """`broker apply` as admin; without b, to the broker CENTRAL.toml names."""
    return subprocess.run([sys.executable, "-m", "gate.cli.main", "central", "-c", str(d / "central.toml"), "broker",
                           "apply", str(out), "--admin", "admin", "--passwords", str(pw),
                           *(("--broker", b.url) if b else ()), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


class Client:
    def __init__(self, b: Broker, user: str, password: str, client_id: str) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(user, password)
        self.result: Any = None
        self.subacks: dict[int, list[Any]] = {}
        self.pubacks: dict[int, Any] = {}
        self.got: list[str] = []
        self.done = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: (setattr(self, "result", rc), self.done.set())
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(mid, list(rcs))
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        self.c.on_message = lambda c, u, m: self.got.append(m.topic)
        self.c.connect(b.host, b.port)
        self.c.loop_start()
        assert self.done.wait(5), f"{user}: no CONNACK"

    def subscribe(self, topic: str) -> bool:
        """True if the broker granted it."""
        _, mid = self.c.subscribe(topic, qos=1)
        assert Listener.wait_for(lambda: mid in self.subacks, 5)
        return not self.subacks[mid][0].is_failure

    def publish(self, topic: str, payload: bytes) -> bool:
        info = self.c.publish(topic, payload, qos=1)
        assert Listener.wait_for(lambda: info.mid in self.pubacks, 5)
        return not self.pubacks[info.mid].is_failure

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_the_shipped_dynsec_config_is_what_is_tested() -> None:
    lines = [s.strip() for s in (DOCS / "mosquitto-dynsec.conf").read_text(encoding="utf-8").splitlines()
             if s.strip() and not s.strip().startswith("#")]
    for must in ("allow_anonymous false", "use_username_as_clientid true", "persistence true"):
        assert must in lines, must
    assert any(s.startswith("plugin ") and s.endswith("mosquitto_dynamic_security.so") for s in lines)
    assert not any(s.split()[0] in ("password_file", "acl_file") for s in lines)


def test_the_file_keeps_no_password_and_mosquitto_takes_its_hashes(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    out, pw = provision(tmp_path / "site", key)
    made = (pw / "other").read_text(encoding="utf-8").strip()  # a gate without a password file gets one
    assert len(made) >= 24 and (pw / "other").stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text(encoding="utf-8")
    assert "gate-pw" not in text and made not in text
    doc = json.loads(text)
    assert {c["username"] for c in doc["clients"]} == {"drill", "other", "central"}
    assert all(c["iterations"] >= 10_000 for c in doc["clients"])
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    assert not Client(b, "drill", "gate-pw", "drill").result.is_failure
    assert not Client(b, "other", made, "other").result.is_failure
    assert Client(b, "drill", "wrong", "drill").result.is_failure
    assert Client(b, "nobody", "gate-pw", "nobody").result.is_failure


def test_a_gate_subscribes_only_to_its_own_topics(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    out, _ = provision(tmp_path / "site", key)
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    gate = Client(b, "drill", "gate-pw", "drill")
    for own in (f"{PREFIX}/drill/cmd", f"{PREFIX}/drill/receipt", f"{PREFIX}/passes", f"{PREFIX}/presence/head"):
        assert gate.subscribe(own), own
    group = share_group(key, "drill")
    for refused in (f"$share/{group}/{PREFIX}/+/events", f"$share/central/{PREFIX}/+/events", f"$share/x/{PREFIX}/drill/cmd",
                    f"{PREFIX}/+/events", f"{PREFIX}/other/cmd", f"{PREFIX}/#", "#", "$SYS/#"):
        assert not gate.subscribe(refused), refused
    # ... and publishes only as itself
    assert gate.publish(f"{PREFIX}/drill/status", b"{}")
    assert not gate.publish(f"{PREFIX}/other/events", b"{}")
    assert not gate.publish(f"{PREFIX}/passes", b"{}")
    gate.close()


def test_sync_end_to_end_and_a_rogue_gate_takes_no_event_nor_session(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The drill's gate and central sync through the dynsec broker; another gate's user
    tries central's shared subscription (refused at SUBSCRIBE) and central's client id
    (it is given its own): every event reaches central on its first try."""
    # The group is named in CENTRAL.toml here: the drill's central key exists only once the
    # drill runs, which needs the broker, which needs the users.
    out, pw = provision(tmp_path / "site", Ed25519PrivateKey.generate(), group="cdrilltest")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    with Rehearsal(gate_drill(b, tmp_path / "gate", receipt_timeout_s=10.0)) as r:
        central = start_central(tmp_path / "central", b.url, r.keys.central,
                                extra=f'username = "central"\npassword_file = "{pw / "central"}"\ngroup = "cdrilltest"\n')
        assert central.group == "cdrilltest"
        rogue = Client(b, "other", (pw / "other").read_text(encoding="utf-8").strip(), central.client_id)
        assert not rogue.subscribe(f"$share/{central.group}/{PREFIX}/+/events")
        time.sleep(0.3)
        assert central.peer.connected.is_set() and "already connected, closing old connection" not in b.log()
        assert r.app.sync.link.wait_connected(10)
        for i in range(6):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        pub = r.app.sync.publisher
        assert r.drain(30), pub.counters.snapshot()
        assert {e["id"] for e in central.store.events("drill")} == gate_ids(r)
        assert not pub.counters.get("resent") and not rogue.got
        rogue.close()
        central.stop()


def test_only_home_assistant_may_send_door_commands(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    out, pw = provision(tmp_path / "site", key, "--homeassistant", "homeassistant")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    password = {n: (pw / n).read_text(encoding="utf-8").strip() for n in os.listdir(pw)}
    ha = Client(b, "homeassistant", password["homeassistant"], "ha")
    gate_ha = Client(b, "drill-ha", password["drill-ha"], "drill-ha")
    assert gate_ha.subscribe(f"{PREFIX}/drill/+/door/set") and gate_ha.subscribe("homeassistant/status")
    assert gate_ha.publish(f"{PREFIX}/drill/available", b"online")
    assert gate_ha.publish("homeassistant/lock/drill/in_door/config", b"{}")
    assert not gate_ha.subscribe(f"{PREFIX}/other/+/door/set")
    assert ha.subscribe(f"{PREFIX}/+/available") and ha.subscribe("homeassistant/#")
    assert not ha.subscribe(f"{PREFIX}/drill/cmd")
    assert ha.publish(f"{PREFIX}/drill/in/door/set", b"UNLOCK")
    assert Listener.wait_for(lambda: f"{PREFIX}/drill/in/door/set" in gate_ha.got, 5)
    # Nobody else may send one (mosquitto also drops a client whose publish it refuses).
    for user, name in ((gate_ha, "drill-ha"), (Client(b, "drill", "gate-pw", "drill"), "drill")):
        assert not user.publish(f"{PREFIX}/drill/in/door/set", b"UNLOCK"), name


def test_a_broker_restart_under_dynsec_loses_nothing(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The dynsec broker restarted (persistence on, as shipped) between decisions: the
    users come back from the plugin's file, and every event reaches central once."""
    out, pw = provision(tmp_path / "site", Ed25519PrivateKey.generate(), group="cdrilltest")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    with Rehearsal(gate_drill(b, tmp_path / "gate")) as r:
        central = start_central(tmp_path / "central", b.url, r.keys.central,
                                extra=f'username = "central"\npassword_file = "{pw / "central"}"\ngroup = "cdrilltest"\n')
        assert r.app.sync.link.wait_connected(10)
        for i in range(3):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        b.restart()
        assert Listener.wait_for(lambda: r.app.sync.link.connected and central.peer.connected.is_set(), 20)
        for i in range(3, 6):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        r.finish()
        assert r.drain(60), r.app.sync.publisher.counters.snapshot()
        stored = [e["id"] for e in central.store.events("drill")]
        assert sorted(stored) == sorted(gate_ids(r)) and len(stored) == len(set(stored))
        central.stop()


def test_a_gate_added_to_the_file_logs_in_without_a_broker_restart(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "site"
    out, pw = provision(d, Ed25519PrivateKey.generate(), "--admin", "admin")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    assert b.proc is not None
    pid = b.proc.pid
    # The broker URL is CENTRAL.toml's when --broker is not given.
    toml = d / "central.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("mqtt://127.0.0.1:1", b.url), encoding="utf-8")
    res = apply(d, out, pw, None)
    assert (res.returncode, res.stdout) == (0, "nothing to change\n"), res.stderr  # the broker loaded this very file
    write_file(d, out, pw, "drill", "other", "third")
    res = apply(d, out, pw, None)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["created role gate-third (23 ACLs)",
                                       "created client third (client id third, roles gate-third)",
                                       f"2 change(s) applied to {b.url}"]
    third = Client(b, "third", (pw / "third").read_text(encoding="utf-8").strip(), "third")
    assert not third.result.is_failure
    for own in (f"{PREFIX}/third/cmd", f"{PREFIX}/third/receipt", f"{PREFIX}/passes"):
        assert third.subscribe(own), own
    for refused in (f"{PREFIX}/drill/cmd", f"{PREFIX}/other/receipt", f"{PREFIX}/+/events", f"{PREFIX}/#"):
        assert not third.subscribe(refused), refused
    assert third.publish(f"{PREFIX}/third/status", b"{}")
    third.close()
    assert Client(b, "third", "wrong", "third").result.is_failure
    # The same mosquitto all along: no restart, no reload.
    assert b.running and b.proc.pid == pid and b.log().count("--- start on port") == 1
    assert "mosquitto version" in b.log() and b.log().count("starting") == 1


def test_apply_twice_changes_nothing_and_undoes_changes_made_by_hand(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sync.dynsec_control import Control, Endpoint

    d = tmp_path / "site"
    out, pw = provision(d, Ed25519PrivateKey.generate(), "--admin", "admin")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    admin_pw = (pw / "admin").read_text(encoding="utf-8").strip()
    # Someone changes the running broker by hand: another ACL for gate drill, a user the file lacks.
    with Control(Endpoint(b.host, b.port), "admin", admin_pw, timeout=5) as ctl:
        ctl.run([{"command": "addRoleACL", "rolename": "gate-drill", "acltype": "subscribePattern", "topic": "#",
                  "priority": 0, "allow": True}])
        ctl.run([{"command": "createClient", "username": "intruder", "password": "x", "roles": [{"rolename": "gate-drill"}]}])
        ctl.run([{"command": "modifyClient", "username": "other", "clientid": "someone-else"}])
    assert Client(b, "intruder", "x", "intruder").subscribe(f"{PREFIX}/#")
    # The plugin saves every change to its file (the one it loaded): the operator writes it again.
    assert "intruder" in out.read_text(encoding="utf-8")
    write_file(d, out, pw, "drill", "other")
    res = apply(d, out, pw, b)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.splitlines()) == sorted([
        "changed role gate-drill: 0 ACL(s) added or changed, 1 removed",
        "changed client other: client id someone-else -> other",
        "deleted client intruder (its connection, if any, is closed)",
        f"3 change(s) applied to {b.url}"])
    assert Client(b, "intruder", "x", "intruder").result.is_failure
    assert not Client(b, "drill", "gate-pw", "drill").subscribe(f"{PREFIX}/#")
    res = apply(d, out, pw, b)
    assert (res.returncode, res.stdout) == (0, "nothing to change\n"), res.stderr


def test_a_withdrawn_gate_is_cut_off_at_once_while_the_others_sync(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "site"
    out, pw = provision(d, Ed25519PrivateKey.generate(), "--admin", "admin", group="cdrilltest")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    other_pw = (pw / "other").read_text(encoding="utf-8").strip()
    with Rehearsal(gate_drill(b, tmp_path / "gate", receipt_timeout_s=10.0)) as r:
        central = start_central(tmp_path / "central", b.url, r.keys.central,
                                extra=f'username = "central"\npassword_file = "{pw / "central"}"\ngroup = "cdrilltest"\n')
        assert r.app.sync.link.wait_connected(10)
        enter(r, 0.0, "r1")
        other = Client(b, "other", other_pw, "other")  # the gate to withdraw (stolen), connected
        assert other.subscribe(f"{PREFIX}/other/cmd")
        closed = threading.Event()
        other.c.on_disconnect = lambda *a: closed.set()
        write_file(d, out, pw, "drill")
        res = apply(d, out, pw, b)
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines() == ["deleted client other (its connection, if any, is closed)",
                                           "deleted role gate-other", f"2 change(s) applied to {b.url}"]
        assert closed.wait(5), "other's connection stayed open"
        other.c.loop_stop()
        assert Client(b, "other", other_pw, "other").result.is_failure
        # Gate drill was not touched: its session stays, and what it decides next reaches central once.
        assert "Client drill disconnected" not in b.log()
        before = gate_ids(r)
        for i in range(1, 4):
            enter(r, i * 60.0, "r1" if i % 2 == 0 else "r2")
        after = gate_ids(r) - before
        assert after
        r.finish()
        assert r.drain(30), r.app.sync.publisher.counters.snapshot()
        stored = [e["id"] for e in central.store.events("drill")]
        assert sorted(stored) == sorted(gate_ids(r)) and all(stored.count(i) == 1 for i in after)
        central.stop()


def test_apply_errors_are_clear_and_the_admin_reaches_no_gate_topic(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "site"
    out, pw = provision(d, Ed25519PrivateKey.generate(), "--admin", "admin")
    b = dynsec_broker(broker_factory, tmp_path / "broker", out)
    doc = json.loads(out.read_text(encoding="utf-8"))
    admin_role = next(r for r in doc["roles"] if r["rolename"] == "admin-admin")
    assert {(a["acltype"], a["topic"]) for a in admin_role["acls"]} == {
        ("publishClientSend", "$CONTROL/dynamic-security/v1"),
        ("subscribeLiteral", "$CONTROL/dynamic-security/v1/response"),
        ("publishClientReceive", "$CONTROL/dynamic-security/v1/response")}
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "admin").write_text("not-the-password\n", encoding="utf-8")
    res = apply(d, out, wrong, b)
    assert res.returncode != 0 and "refused admin's login" in res.stderr and res.stdout == "", res.stderr
    res = apply(d, out, pw, None)  # CENTRAL.toml's broker: nobody listens on port 1
    assert res.returncode != 0 and "cannot reach the broker at mqtt://127.0.0.1:1" in res.stderr, res.stderr
    # An answer with an error names the command and the plugin's text, and stops there.
    doc["clients"].append({"username": "broken", "clientid": "broken", "textname": 5, "roles": []})
    (pw / "broken").write_text("pw\n", encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    res = apply(d, bad, pw, b)
    assert res.returncode != 0 and res.stdout == "", res.stderr
    assert "refused createClient (username broken): Invalid/missing textname" in res.stderr, res.stderr
    # What the plugin would drop without a word is refused before anything is changed.
    doc["roles"].append({"rolename": "odd", "acls": [{"acltype": "nonsense", "topic": "x", "priority": 0, "allow": True}]})
    bad.write_text(json.dumps(doc), encoding="utf-8")
    res = apply(d, bad, pw, b)
    assert res.returncode != 0 and "unknown ACL type(s): nonsense in role odd" in res.stderr, res.stderr
    # No plugin answering: a time-out, not a hang.
    plain = broker_factory(name="plain")
    res = apply(d, out, pw, plain, "--timeout", "1")
    assert res.returncode != 0 and "no answer from the broker" in res.stderr and "within 1 s" in res.stderr, res.stderr
    # The admin may use the control topic and nothing else.
    admin = Client(b, "admin", (pw / "admin").read_text(encoding="utf-8").strip(), "admin")
    assert not admin.result.is_failure
    for refused in (f"{PREFIX}/drill/cmd", f"{PREFIX}/+/events", f"{PREFIX}/#", "#", "$CONTROL/#"):
        assert not admin.subscribe(refused), refused
    assert not admin.publish(f"{PREFIX}/drill/cmd", b"{}")
