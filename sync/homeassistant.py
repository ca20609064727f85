"""Home Assistant without YAML (issue 18): the gate's lanes as Home Assistant entities,
through MQTT discovery.

With `[sync] homeassistant = true` the gate publishes, retained with QoS 1, one
discovery config per entity under `homeassistant/<component>/<gate>/<lane>_<what>/config`,
all on one device (the gate). Per lane, as its devices allow:

* the door's lock (relay): a `lock` whose command topic `{prefix}/{gate}/{lane}/door/set`
  (LOCK / UNLOCK) is announced only with `[sync] door_commands = true`; without it a
  read-only `binary_sensor` (device_class lock), since Home Assistant's MQTT lock
  requires a command topic and would refuse a config without one;
* the door contact (`binary_sensor`, door), the last decision (`sensor`, its reason and
  the rest as attributes), the last body temperature (`sensor`, °C), each decision as an
  `event` (allow, deny, retest, challenge) and open alarms (`binary_sensor`, problem).

Every entity is available while `{prefix}/{gate}/available` says `online`; that topic is
the last will of a connection of its own (the sync link's will is central's status), so a
crash, a power cut or a clean stop all leave it `offline`. The configs and states go again
on every (re)connection and whenever Home Assistant announces itself (`online` on
`homeassistant/status`).

States come from the gate's records (the app's sinks): the sink only queues, a worker
thread publishes. The door contact has no record of its own; the worker also looks at the
lanes' door state twice a second. A door command is obeyed only when door_commands is on,
never when it was retained, and only UNLOCK does anything: it opens the door like the guard
(`open_door(lane, "Home Assistant", who="homeassistant")`); LOCK has nothing to do, the
door relocks by itself. MQTT carries no signature here: the broker's ACL must let only
Home Assistant's user write the command topic (docs/mosquitto.acl).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable

import paho.mqtt.client as mqtt

from gate.config import Config, LaneConfig
from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, DoorRecord, LaneRecord
from gate.store.database import Store
from sync.link import Link, LinkConfig
from sync.status import software_version
from sync.topics import Topics

log = logging.getLogger(__name__)

DISCOVERY_PREFIX = "homeassistant"
BIRTH_TOPIC = "homeassistant/status"  # Home Assistant's own online/offline
ONLINE, OFFLINE = b"online", b"offline"
EVENT_TYPES = ["allow", "deny", "retest", "challenge"]
WHO = "homeassistant"  # who opened the door, in the override event
_STOP = object()


def config_topic(component: str, gate: str, lane: str, what: str) -> str:
    return f"{DISCOVERY_PREFIX}/{component}/{gate}/{lane}_{what}/config"


def device(config: Config) -> dict[str, Any]:
    return {"identifiers": [config.gate.id], "name": f"Gate {config.gate.id}", "manufacturer": "gate",
            "model": "checkpoint", "sw_version": software_version()}


def _lane_entities(lane: LaneConfig, topics: Topics, door_commands: bool) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(component, what, name, component keys) of one lane; keys None: no such entity (its
    retained config is cleared, e.g. the lock's other form after door_commands changed)."""
    def t(what: str) -> str:
        return topics.lane(lane.name, what)

    out: list[tuple[str, str, str, dict[str, Any] | None]] = []
    if lane.relay is not None:
        lock = {"state_topic": t("door/lock"), "state_locked": "LOCKED", "state_unlocked": "UNLOCKED",
                "command_topic": t("door/set"), "payload_lock": "LOCK", "payload_unlock": "UNLOCK",
                "optimistic": False, "retain": False}
        read_only = {"state_topic": t("door/lock"), "device_class": "lock",
                     "payload_on": "UNLOCKED", "payload_off": "LOCKED"}  # on = unlocked, for Home Assistant
        out.append(("lock", "door", "door", lock if door_commands else None))
        out.append(("binary_sensor", "door_lock", "door lock", None if door_commands else read_only))
    if lane.door_contact is not None:
        out.append(("binary_sensor", "door_contact", "door contact",
                    {"state_topic": t("door/contact"), "device_class": "door", "payload_on": "ON", "payload_off": "OFF"}))
    out.append(("sensor", "decision", "last decision",
                {"state_topic": t("decision"), "json_attributes_topic": t("decision/attributes"), "icon": "mdi:gate"}))
    if lane.thermometer is not None:
        out.append(("sensor", "temperature", "body temperature",
                    {"state_topic": t("temperature"), "device_class": "temperature", "unit_of_measurement": "°C",
                     "state_class": "measurement"}))
    out.append(("event", "decisions", "decisions", {"state_topic": t("event"), "event_types": EVENT_TYPES}))
    out.append(("binary_sensor", "alarm", "alarm",
                {"state_topic": t("alarm"), "json_attributes_topic": t("alarm/attributes"), "device_class": "problem",
                 "payload_on": "ON", "payload_off": "OFF"}))
    return out


def discovery(config: Config, topics: Topics, door_commands: bool) -> dict[str, dict[str, Any] | None]:
    """Every discovery config topic of the gate -> its payload (None: publish empty, i.e. remove)."""
    gate = config.gate.id
    common = {"availability_topic": topics.available, "payload_available": ONLINE.decode(),
              "payload_not_available": OFFLINE.decode(), "qos": 1, "device": device(config)}
    out: dict[str, dict[str, Any] | None] = {}
    for lane in config.lanes:
        label = lane.label or lane.name
        for component, what, name, keys in _lane_entities(lane, topics, door_commands):
            topic = config_topic(component, gate, lane.name, what)
            out[topic] = None if keys is None else {
                "unique_id": f"{gate}_{lane.name}_{what}", "name": f"{label} {name}", **keys, **common}
    return out


class _Link(Link):
    """The Link, but its message handler also hears whether a message came retained: a
    retained door command (left on the broker by mistake or on purpose) is never obeyed."""

    def __init__(self, cfg: LinkConfig, on_retained_message: Callable[[str, bytes, bool], None], **kw: Any) -> None:
        super().__init__(cfg, **kw)
        self._on_full = on_retained_message

    def _cb_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_full(msg.topic, msg.payload, bool(msg.retain))
        except Exception:
            log.exception("homeassistant: message handler failed on %s", msg.topic)


class HomeAssistant:
    """The discovery configs, the availability and the lane states, on a connection of its own.

    ``lane_state()``: {lane: (unlocked, door_open)} now; ``open_door(lane, reason, who)``: the
    app's hook; ``now()``: the gate's clock (open alarms of the last day are read back at start).
    """

    def __init__(
        self,
        config: Config,
        link_cfg: LinkConfig,
        *,
        open_store: Callable[[], Store],
        open_door: Callable[[str, str, str], bool],
        lane_state: Callable[[], dict[str, tuple[bool, bool]]],
        now: Callable[[], datetime],
        poll_s: float = 0.5,
    ) -> None:
        assert config.sync is not None
        self.topics = Topics.for_gate(config.gate.site, config.gate.id, config.sync.prefix)
        self.door_commands = config.sync.door_commands
        self.lanes = {lane.name: lane for lane in config.lanes}
        self.configs = discovery(config, self.topics, self.door_commands)
        self._command_lanes = {self.topics.lane(n, "door/set"): n for n, lane in self.lanes.items() if lane.relay is not None}
        self.link = _Link(link_cfg, self._on_message, on_state=self._on_state,
                          subscriptions=[(BIRTH_TOPIC, 1)] + [(t, 1) for t in self._command_lanes])
        self._open_store = open_store
        self._open_door = open_door
        self._lane_state = lane_state
        self._now = now
        self.poll_s = poll_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.states: dict[str, str] = {}  # retained state topic -> the payload last set
        self.alarms: dict[str, dict[str, str]] = {n: {} for n in self.lanes}  # lane -> open alarm id -> kind

    # ------------------------------------------------------------ life

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="homeassistant", daemon=True)
        self._thread.start()
        self.link.start()

    def stop(self, timeout: float = 3.0) -> None:
        """The link leaves with its will: `available` says offline at once."""
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        self.link.stop(timeout)

    @property
    def alive(self) -> bool:
        return self.link.alive and bool(self._thread and self._thread.is_alive())

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    # ------------------------------------------------------------ inputs (any thread, never blocking)

    def sink(self, rec: LaneRecord) -> None:
        """An app sink, called on the lane threads."""
        if isinstance(rec, (DecisionRecord, AlarmRecord, AckRecord, DoorRecord)):
            self._put(("record", rec))

    def _put(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.count("dropped")  # a state is lost, never a lane held up; the next one corrects it

    def _on_state(self, up: bool) -> None:
        if up:
            self._put(("announce",))

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == BIRTH_TOPIC:
            if payload.strip() == ONLINE and not retained:
                self._put(("announce",))  # Home Assistant (re)started: it forgot what it was told
            elif payload.strip() == ONLINE:
                self.count("birth_retained")  # seen on every connect: our announce covers it
            return
        lane = self._command_lanes.get(topic)
        if lane is not None:
            self._put(("command", lane, payload, retained))

    # ------------------------------------------------------------ the worker

    def _run(self) -> None:
        try:
            self._read_open_alarms()
        except Exception:
            log.exception("homeassistant: could not read the open alarms back")
        polled = 0.0
        while True:
            try:
                item = self._queue.get(timeout=self.poll_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            try:
                if item is not None:
                    self._handle(item)
                if time.monotonic() - polled >= self.poll_s:
                    polled = time.monotonic()
                    self._poll()
            except Exception:
                self.count("errors")
                log.exception("homeassistant: failed on %r", item)

    def _handle(self, item: tuple[Any, ...]) -> None:
        if item[0] == "announce":
            self._announce()
        elif item[0] == "record":
            self._record(item[1])
        elif item[0] == "command":
            self._command(*item[1:])

    def _announce(self) -> None:
        """Availability, every config, every state known: at each connection and each birth."""
        if not self.link.connected:
            return
        self._publish(self.topics.available, ONLINE)
        for topic, body in self.configs.items():
            self._publish(topic, b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"))
        for topic, value in list(self.states.items()):
            self._publish(topic, value.encode("utf-8"))
        self.count("announced")
        log.info("homeassistant: %d discovery configs published", sum(1 for b in self.configs.values() if b))

    def _publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        if self.link.publish(topic, payload, qos=1, retain=retain) is None:
            self.count("unsent")  # not connected: the states go again with the next announce

    def _set(self, topic: str, value: str, *, force: bool = False) -> None:
        """A retained state, published when it changes (kept for the next announce)."""
        if self.states.get(topic) == value and not force:
            return
        self.states[topic] = value
        if self.link.connected:
            self._publish(topic, value.encode("utf-8"))

    def _poll(self) -> None:
        for name, (unlocked, door_open) in self._lane_state().items():
            lane = self.lanes.get(name)
            if lane is None:
                continue
            if lane.relay is not None:
                self._set(self.topics.lane(name, "door/lock"), "UNLOCKED" if unlocked else "LOCKED")
            if lane.door_contact is not None:
                self._set(self.topics.lane(name, "door/contact"), "ON" if door_open else "OFF")

    def _record(self, rec: LaneRecord) -> None:
        if rec.lane not in self.lanes:
            return  # the gate's own events (lane "gate" or "") belong to no lane's entities
        t = self.topics.lane
        if isinstance(rec, DoorRecord):  # in order, however short the door stayed unlocked
            if self.lanes[rec.lane].relay is not None:
                self._set(t(rec.lane, "door/lock"), "UNLOCKED" if rec.action == "unlock" else "LOCKED")
        elif isinstance(rec, DecisionRecord):
            attrs = {"reason": rec.reason, "rule": rec.rule, "credential": rec.credential, "category": rec.category,
                     "temperature_c": rec.temperature_c, "at": rec.at.isoformat()}
            self._set(t(rec.lane, "decision/attributes"), json.dumps(attrs, ensure_ascii=False), force=True)
            self._set(t(rec.lane, "decision"), rec.decision, force=True)
            if rec.temperature_c is not None:
                self._set(t(rec.lane, "temperature"), str(round(rec.temperature_c, 2)), force=True)
            if rec.decision in EVENT_TYPES and self.link.connected:
                event = {"event_type": rec.decision, "reason": rec.reason, "credential": rec.credential,
                         "category": rec.category}
                self._publish(t(rec.lane, "event"), json.dumps(event, ensure_ascii=False).encode("utf-8"), retain=False)
        elif isinstance(rec, AlarmRecord):
            self.alarms[rec.lane][rec.id] = rec.kind
            self._alarm_state(rec.lane)
        elif isinstance(rec, AckRecord):
            for lane, open_ in self.alarms.items():
                if open_.pop(rec.alarm_id, None) is not None:
                    self._alarm_state(lane)

    def _alarm_state(self, lane: str) -> None:
        open_ = self.alarms[lane]
        self._set(self.topics.lane(lane, "alarm/attributes"),
                  json.dumps({"open": len(open_), "kinds": sorted(set(open_.values()))}))
        self._set(self.topics.lane(lane, "alarm"), "ON" if open_ else "OFF")

    def _read_open_alarms(self) -> None:
        """Alarms of the last day not yet acknowledged, as the guard page reads them back."""
        since = (self._now() - timedelta(hours=24)).timestamp()
        store = self._open_store()
        try:
            acked = {r[0] for r in store.conn.execute(
                "SELECT json_extract(body, '$.alarm_id') FROM events WHERE type = 'ack' AND ts >= ?", (since,))}
            rows = store.conn.execute(
                "SELECT json_extract(body, '$.id'), lane, kind FROM events WHERE type = 'alarm' AND ts >= ?"
                " AND kind != 'passback'", (since,)).fetchall()
        finally:
            store.close()
        for alarm_id, lane, kind in rows:
            if lane in self.alarms and alarm_id not in acked:
                self.alarms[lane][alarm_id] = kind
        for lane in self.lanes:
            self._alarm_state(lane)

    def _command(self, lane: str, payload: bytes, retained: bool) -> None:
        text = payload.decode("utf-8", "replace").strip()
        if retained:
            self.count("door_command_retained")
            log.warning("homeassistant: retained door command %r for lane %s ignored (clear it on the broker)", text, lane)
        elif not self.door_commands:
            self.count("door_command_refused")
            log.warning("homeassistant: door command %r for lane %s ignored: [sync] door_commands is off", text, lane)
        elif text == "UNLOCK":
            self.count("door_command_unlock")
            log.info("homeassistant: lane %s door opened from Home Assistant", lane)
            self._open_door(lane, "Home Assistant", WHO)
        elif text == "LOCK":
            self.count("door_command_lock")  # it relocks by itself; say how it is now
            unlocked, _ = self._lane_state().get(lane, (False, False))
            self._set(self.topics.lane(lane, "door/lock"), "UNLOCKED" if unlocked else "LOCKED", force=True)
        else:
            self.count("door_command_bad")
            log.warning("homeassistant: door command %r for lane %s is neither LOCK nor UNLOCK", text[:40], lane)
