"""Home Assistant without YAML (issue 18): MQTT discovery configs, availability, the lane
states and door commands, against a real mosquitto (sync/homeassistant.py)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gate import config as cfgmod
from gate.core.events import AckAlarm
from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from tests.conftest import ROOT
from tests.docs_broker import docs_broker
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, central_pub

P = "gate/v1/drill/drill"  # the drill gate's topics: prefix gate/v1/{site}, site and gate "drill"
AVAILABLE = f"{P}/available"
COMMON = {"unique_id", "name", "device", "availability_topic", "payload_available", "payload_not_available"}


def drill(door_commands: bool) -> drill_file.Drill:
    return drill_file.parse(textwrap.dedent(
        f"""
        name: homeassistant
        start: "2026-11-22T10:00:00+08:00"
        config: {{policy: {{passback: "off"}}, sync: {{homeassistant: true, door_commands: {str(door_commands).lower()}}}}}
        passes:
          - {{id: r1, holder: 王芳, unit: 3-2-501, category: resident}}
          - {{id: c1, holder: 快递, unit: "-", category: courier}}
        """))


class Watcher:
    """Subscribes to '#' and keeps (topic, payload, retain) of every message."""

    def __init__(self, port: int, user: str | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=user or "",
                                  protocol=mqtt.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert Listener.wait_for(self.client.is_connected, 5)

    def _on(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((m.topic, m.payload, bool(m.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def last(self, topic: str) -> bytes | None:
        got = self.on(topic)
        return got[-1][0] if got else None

    def wait(self, topic: str, payload: bytes, timeout: float = 10) -> bool:
        return Listener.wait_for(lambda: self.last(topic) == payload, timeout)

    def configs(self) -> dict[str, dict[str, Any] | None]:
        """The latest discovery config per topic (None: an empty payload, i.e. removed)."""
        with self._lock:
            found = [(t, p) for t, p, _ in self.messages if t.startswith("homeassistant/") and t.endswith("/config")]
        return {t: json.loads(p) if p else None for t, p in found}

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def refused(self, topic: str, payload: bytes) -> bool:
        """Publish; True if the broker answered 135 Not authorized (MQTT v5)."""
        acks: list[Any] = []
        self.client.on_publish = lambda c, u, mid, rc, props: acks.append(rc)
        self.client.publish(topic, payload, qos=1)
        assert Listener.wait_for(lambda: bool(acks), 5), "no PUBACK"
        return bool(getattr(acks[0], "is_failure", False)) and acks[0].value == 135

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def started(r: Rehearsal) -> Any:
    ha = r.app.sync.homeassistant
    assert ha is not None and ha.link.wait_connected(10)
    assert Listener.wait_for(lambda: ha.counters.get("announced", 0) >= 1, 10)
    return ha


def expected_configs(door_commands: bool) -> set[str]:
    lock = ["homeassistant/lock/drill/in_door/config"] if door_commands else ["homeassistant/binary_sensor/drill/in_door_lock/config"]
    return {*lock, "homeassistant/binary_sensor/drill/in_door_contact/config", "homeassistant/sensor/drill/in_decision/config",
            "homeassistant/sensor/drill/in_temperature/config", "homeassistant/event/drill/in_decisions/config",
            "homeassistant/binary_sensor/drill/in_alarm/config",
            # the drill's out lane has no relay, contact or thermometer: no lock, contact or temperature
            "homeassistant/sensor/drill/out_decision/config", "homeassistant/event/drill/out_decisions/config",
            "homeassistant/binary_sensor/drill/out_alarm/config"}


def test_retained_configs_for_every_lane_with_the_keys_home_assistant_expects(broker: Broker) -> None:
    with Rehearsal(drill(door_commands=True), broker=broker.url) as r:
        started(r)
        first = Watcher(broker.port)
        assert Listener.wait_for(lambda: expected_configs(True) <= set(first.configs()), 10), sorted(first.configs())
        first.close()
        w = Watcher(broker.port)  # subscribed after the broker had them all: it gets only what is retained
        try:
            assert Listener.wait_for(lambda: expected_configs(True) <= set(w.configs()), 10), sorted(w.configs())
            configs = {t: c for t, c in w.configs().items() if c is not None}
            assert set(configs) == expected_configs(True)
            assert all(retained for t in configs for _, retained in w.on(t)), "a config was not retained"
            assert "homeassistant/binary_sensor/drill/in_door_lock/config" not in w.configs()  # the read-only form: not both
        finally:
            w.close()
    ids = [c["unique_id"] for c in configs.values()]
    assert len(set(ids)) == len(ids)
    for topic, c in configs.items():
        assert COMMON <= set(c), (topic, COMMON - set(c))
        component, node, object_id = topic.split("/")[1:4]
        assert node == "drill" and c["unique_id"] == f"drill_{object_id}"
        assert c["availability_topic"] == AVAILABLE
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        d = c["device"]
        assert d["identifiers"] == ["drill"] and d["manufacturer"] == "gate" and d["name"] and d["model"] and d["sw_version"]
        lane = object_id.split("_")[0]
        if component != "lock":
            assert "command_topic" not in c
        if component in ("sensor", "binary_sensor", "event", "lock"):
            assert c["state_topic"].startswith(f"{P}/{lane}/")
    lock = configs["homeassistant/lock/drill/in_door/config"]
    assert lock["state_topic"] == f"{P}/in/door/lock"
    assert (lock["state_locked"], lock["state_unlocked"]) == ("LOCKED", "UNLOCKED")
    assert lock["command_topic"] == f"{P}/in/door/set"
    assert (lock["payload_lock"], lock["payload_unlock"]) == ("LOCK", "UNLOCK")
    contact = configs["homeassistant/binary_sensor/drill/in_door_contact/config"]
    assert contact["device_class"] == "door" and contact["state_topic"] == f"{P}/in/door/contact"
    assert (contact["payload_on"], contact["payload_off"]) == ("ON", "OFF")
    decision = configs["homeassistant/sensor/drill/in_decision/config"]
    assert decision["state_topic"] == f"{P}/in/decision" and decision["json_attributes_topic"] == f"{P}/in/decision/attributes"
    temp = configs["homeassistant/sensor/drill/in_temperature/config"]
    assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
    assert temp["state_topic"] == f"{P}/in/temperature"
    event = configs["homeassistant/event/drill/in_decisions/config"]
    assert event["event_types"] == ["allow", "deny", "retest", "challenge"] and event["state_topic"] == f"{P}/in/event"
    alarm = configs["homeassistant/binary_sensor/drill/out_alarm/config"]
    assert alarm["device_class"] == "problem" and alarm["state_topic"] == f"{P}/out/alarm"
    assert alarm["json_attributes_topic"] == f"{P}/out/alarm/attributes"


def test_available_online_while_running_and_offline_after_a_clean_stop(broker: Broker) -> None:
    w = Watcher(broker.port)
    try:
        with Rehearsal(drill(door_commands=False), broker=broker.url) as r:
            started(r)
            assert w.wait(AVAILABLE, b"online")
            assert _retained(broker.port, AVAILABLE) == b"online"
        assert w.wait(AVAILABLE, b"offline")
        assert _retained(broker.port, AVAILABLE) == b"offline"
    finally:
        w.close()


def _retained(port: int, topic: str) -> bytes | None:
    """What the broker keeps retained on ``topic`` (a fresh subscriber's first message)."""
    w = Watcher(port)
    try:
        Listener.wait_for(lambda: any(r for _, r in w.on(topic)), 3)
        got = [p for p, r in w.on(topic) if r]
        return got[0] if got else None
    finally:
        w.close()


def test_home_assistant_online_on_its_status_topic_brings_every_config_again(broker: Broker) -> None:
    with Rehearsal(drill(door_commands=False), broker=broker.url) as r:
        ha = started(r)
        w = Watcher(broker.port)
        try:
            assert Listener.wait_for(lambda: expected_configs(False) <= set(w.configs()), 10)
            n = len(w.messages)
            live = lambda: [t for t, _, retained in w.messages[n:] if t.endswith("/config") and not retained]  # noqa: E731
            time.sleep(1.0)
            assert not live(), "configs went again unasked"
            w.publish("homeassistant/status", b"offline")
            time.sleep(0.5)
            assert not live(), "Home Assistant going offline is no reason to announce"
            w.publish("homeassistant/status", b"online")
            assert Listener.wait_for(lambda: expected_configs(False) <= set(live()), 10), live()
            assert ha.counters["announced"] >= 2
            assert w.last(AVAILABLE) == b"online"
        finally:
            w.close()


def test_states_follow_the_lane(broker: Broker) -> None:
    with Rehearsal(drill(door_commands=False), broker=broker.url) as r:
        started(r)
        w = Watcher(broker.port)
        try:
            assert w.wait(f"{P}/in/door/lock", b"LOCKED") and w.wait(f"{P}/in/door/contact", b"OFF")
            assert w.wait(f"{P}/in/alarm", b"OFF")
            r.step(Step(at=1.0, lane="in", qr="r1"))
            r.step(Step(at=1.5, lane="in", temperature=36.6))
            assert w.wait(f"{P}/in/decision", b"allow") and w.wait(f"{P}/in/temperature", b"36.6")
            assert json.loads(w.last(f"{P}/in/decision/attributes") or b"{}")["reason"] == "ok"
            events = lambda: [(json.loads(p)["event_type"], retained) for p, retained in w.on(f"{P}/in/event")]  # noqa: E731
            assert Listener.wait_for(lambda: events() == [("allow", False)], 5), events()  # an event, not a state
            assert w.wait(f"{P}/in/door/lock", b"UNLOCKED")  # the allowed entry unlocked the door ...
            r.step(Step(at=2.0, lane="in", door="open"))
            assert w.wait(f"{P}/in/door/contact", b"ON")
            r.step(Step(at=3.0, lane="in", door="closed"))  # ... and it relocks as it closes behind them
            assert w.wait(f"{P}/in/door/contact", b"OFF") and w.wait(f"{P}/in/door/lock", b"LOCKED")
            r.step(Step(at=10.0, lane="in", qr="c1"))
            assert w.wait(f"{P}/in/decision", b"deny")
            assert json.loads(w.last(f"{P}/in/decision/attributes") or b"{}")["reason"] == "category_refused"
            assert w.last(f"{P}/in/temperature") == b"36.6"  # a decision without a reading keeps the last one
            assert Listener.wait_for(lambda: [json.loads(p)["event_type"] for p, _ in w.on(f"{P}/in/event")] == ["allow", "deny"], 5)
            r.step(Step(at=20.0, lane="in", door="open"))  # forced: the door was locked
            assert w.wait(f"{P}/in/alarm", b"ON")
            assert json.loads(w.last(f"{P}/in/alarm/attributes") or b"{}") == {"open": 1, "kinds": ["door_forced"]}
            alarm = next(rec for rec in r.records if rec.type == "alarm" and rec.kind == "door_forced")
            r.app.lanes["in"].post(AckAlarm(alarm.id, alarm.kind, who="guard"))
            assert w.wait(f"{P}/in/alarm", b"OFF")
            assert w.last(f"{P}/out/alarm") == b"OFF"
        finally:
            w.close()


def overrides(r: Rehearsal) -> list[Any]:
    return [rec for rec in r.records if rec.type == "override"]


def test_door_set_unlock_opens_the_door_only_with_door_commands(broker: Broker) -> None:
    with Rehearsal(drill(door_commands=True), broker=broker.url) as r:
        ha = started(r)
        w = Watcher(broker.port)
        try:
            w.publish(f"{P}/in/door/set", b"UNLOCK")
            assert Listener.wait_for(lambda: len(overrides(r)) == 1, 10)
            assert (overrides(r)[0].who, overrides(r)[0].lane) == ("homeassistant", "in")
            assert w.wait(f"{P}/in/door/lock", b"UNLOCKED")
            assert ha.counters["door_command_unlock"] == 1
            w.publish(f"{P}/out/door/set", b"UNLOCK")  # no relay on out: no command topic is listened to
            w.publish(f"{P}/in/door/set", b"OPEN SESAME")
            assert Listener.wait_for(lambda: ha.counters.get("door_command_bad", 0) == 1, 10)
            assert len(overrides(r)) == 1
        finally:
            w.close()

    # The site turns door_commands off again: the controllable lock leaves Home Assistant.
    with Rehearsal(drill(door_commands=False), broker=broker.url) as r:
        ha = started(r)
        w = Watcher(broker.port)
        try:
            assert Listener.wait_for(lambda: expected_configs(False) <= set(w.configs()), 10)
            assert not any(c and "command_topic" in c for c in w.configs().values())
            assert "homeassistant/lock/drill/in_door/config" not in w.configs()  # its retained config was removed
            read_only = w.configs()["homeassistant/binary_sensor/drill/in_door_lock/config"]
            assert read_only is not None and read_only["device_class"] == "lock"
            assert (read_only["payload_on"], read_only["payload_off"]) == ("UNLOCKED", "LOCKED")
            w.publish(f"{P}/in/door/set", b"UNLOCK")
            assert Listener.wait_for(lambda: ha.counters.get("door_command_refused", 0) == 1, 10)
            time.sleep(0.5)
            assert not overrides(r) and not r.app.lanes["in"].unlocked
            assert w.last(f"{P}/in/door/lock") == b"LOCKED"
        finally:
            w.close()


def test_a_retained_door_command_is_never_obeyed(broker: Broker) -> None:
    w = Watcher(broker.port)
    try:
        w.publish(f"{P}/in/door/set", b"UNLOCK", retain=True)  # left on the broker
        with Rehearsal(drill(door_commands=True), broker=broker.url) as r:
            ha = started(r)
            assert Listener.wait_for(lambda: ha.counters.get("door_command_retained", 0) == 1, 10)
            time.sleep(0.5)
            assert not overrides(r) and not r.app.lanes["in"].unlocked
    finally:
        w.publish(f"{P}/in/door/set", b"", retain=True)
        w.close()


def test_the_last_will_says_offline_when_gate_run_is_killed(broker: Broker, tmp_path: Path) -> None:
    cfg = tmp_path / "gate.toml"
    cfg.write_text(
        f'[gate]\nid = "east-1"\nsite = "sunny"\n[store]\npath = "{tmp_path / "g.db"}"\n[guard]\nenabled = false\n'
        f'[voice]\ncache_dir = "{tmp_path / "voice"}"\n'
        f'[sync]\nbroker = "{broker.url}"\ncentral_keys = ["{central_pub(tmp_path / "keys")}"]\nhomeassistant = true\n'
        '[[lanes]]\nname = "in"\ndirection = "in"\nrelay = { driver = "sim", pin = 22 }\n',
        encoding="utf-8",
    )
    available = "gate/v1/sunny/east-1/available"
    w = Watcher(broker.port)
    proc = subprocess.Popen([sys.executable, "-m", "gate.cli.main", "run", "-c", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert w.wait(available, b"online", 30), proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        read_only = "homeassistant/binary_sensor/east-1/in_door_lock/config"
        assert Listener.wait_for(lambda: read_only in w.configs(), 10), sorted(w.configs())
        assert w.configs()[read_only]["device"]["identifiers"] == ["east-1"]
        assert w.configs().get("homeassistant/lock/east-1/in_door/config") is None  # door_commands off: read-only
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert w.wait(available, b"offline", 10), "the broker did not publish the last will"
        assert _retained(broker.port, available) == b"offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        w.close()


def test_the_shipped_acl_lets_only_home_assistant_command_a_door(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """docs/mosquitto.conf and docs/mosquitto.acl as shipped: gate east-1 on its own user, its
    Home Assistant connection on east-1-ha (the ACL's example block), Home Assistant as
    `homeassistant`. Another gate cannot write east-1's door/set; Home Assistant can."""
    users = {"east-1": "gate-pw", "east-1-ha": "gate-ha-pw", "west-2": "west-pw", "homeassistant": "hass-pw"}
    b = docs_broker(broker_factory, tmp_path / "broker", users)
    for user, pw in users.items():
        (tmp_path / f"{user}.pw").write_text(pw + "\n", encoding="utf-8")
    d = drill(door_commands=True)
    d = d.model_copy(update={"config": {**d.config, "gate": {"id": "east-1"}, "sync": {
        **d.config["sync"], "username": "east-1", "password_file": str(tmp_path / "east-1.pw"),
        "homeassistant_username": "east-1-ha", "homeassistant_password_file": str(tmp_path / "east-1-ha.pw")}}})
    with Rehearsal(d, broker=b.url) as r:
        ha = started(r)
        hass = Watcher(b.port, "homeassistant", "hass-pw")
        rogue = Watcher(b.port, "west-2", "west-pw")
        try:
            assert hass.wait("gate/v1/drill/east-1/available", b"online")
            assert Listener.wait_for(lambda: "homeassistant/lock/east-1/in_door/config" in hass.configs(), 10)
            assert hass.wait("gate/v1/drill/east-1/in/door/lock", b"LOCKED")
            assert rogue.refused("gate/v1/drill/east-1/in/door/set", b"UNLOCK")
            time.sleep(0.5)
            assert not overrides(r) and "door_command_unlock" not in ha.counters
            hass.publish("gate/v1/drill/east-1/in/door/set", b"UNLOCK")
            assert Listener.wait_for(lambda: [o.who for o in overrides(r)] == ["homeassistant"], 10)
            assert hass.wait("gate/v1/drill/east-1/in/door/lock", b"UNLOCKED")
            assert r.app.sync.link.connected  # the two connections did not knock each other off
        finally:
            hass.close()
            rogue.close()


@pytest.mark.parametrize("sync, key", [
    ('homeassistant = "yes"', "sync.homeassistant: Input should be a valid boolean (got 'yes')"),
    ("homeassistant = 1", "sync.homeassistant: Input should be a valid boolean (got 1)"),
    ('homeassistant = true\ndoor_commands = "on"', "sync.door_commands: Input should be a valid boolean"),
    ("door_commands = true", "door_commands = true needs homeassistant = true"),
])
def test_a_bad_value_is_a_config_error_naming_the_key(tmp_path: Path, sync: str, key: str) -> None:
    cfg = tmp_path / "gate.toml"
    cfg.write_text(f'[sync]\ncentral_keys = ["k.pub"]\n{sync}\n[[lanes]]\nname = "in"\ndirection = "in"\n', encoding="utf-8")
    with pytest.raises(cfgmod.ConfigError) as err:
        cfgmod.load(cfg)
    assert key in str(err.value)
    cfg.write_text('[sync]\ncentral_keys = ["k.pub"]\n[[lanes]]\nname = "in"\ndirection = "in"\n', encoding="utf-8")
    loaded = cfgmod.load(cfg).sync
    assert loaded is not None and (loaded.homeassistant, loaded.door_commands) == (False, False)  # off by default
