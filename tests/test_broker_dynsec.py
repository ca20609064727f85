"""The stricter broker (issue 12: "gates may not subscribe to anything outside their read
set, `$share/...` included"): mosquitto with its dynamic-security plugin, started from the
shipped docs/mosquitto-dynsec.conf, its users written by `gate central broker dynsec`, with
a real gate and central. Every SUBSCRIBE outside a user's own topics is refused when it is
made (reason 135), so a compromised gate cannot even join central's shared subscription."""
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
