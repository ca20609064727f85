"""A plain MQTT v5 client for tests: records what arrives, can publish."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Listener:
    """Subscribes (again after every reconnect) and keeps every message."""

    def __init__(self, port: int, topic: str = "gate/v1/#", client_id: str = "test-listener") -> None:
        self.messages: list[tuple[str, dict[str, Any] | bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.subscribed = self.wait_for(lambda: self.client.is_connected(), 5)

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        try:
            body: dict[str, Any] | bytes = json.loads(m.payload)
        except ValueError:
            body = m.payload
        with self._lock:
            self.messages.append((m.topic, body))

    def on(self, suffix: str) -> list[Any]:
        with self._lock:
            return [b for t, b in self.messages if t.endswith(suffix)]

    @staticmethod
    def wait_for(cond: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.02)
        return bool(cond())

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def central_pub(directory: Path) -> str:
    """A central public key file for a config with [sync] (sync.central_keys is required
    there); for tests that only send events up, any key does."""
    from gate.core.tokens import new_keypair

    directory.mkdir(parents=True, exist_ok=True)
    n = len(list(directory.glob("central-*.pub")))
    return str(new_keypair(directory, f"central-{n}")[1])


def trust_central(r: Any, keys: list[Path] | None = None) -> Any:
    """A Rehearsal (not yet entered) whose gate takes ``keys`` (default: its drill key)
    as central's keys ([sync] central_keys); the drill key then signs passes and what
    central sends."""
    from gate.config import SyncSection

    keys = keys or [r.keys.central_pub]
    sync = (r.config.sync or SyncSection(central_keys=keys)).model_copy(update={"central_keys": keys})
    r.config = r.config.model_copy(update={"sync": sync})
    r.app.config = r.config
    return r


def start_central(directory: Any, broker_url: str, key: Any, *, site: str = "drill", extra: str = "", wait: bool = True) -> Any:
    """A real reference central for `site`, signing with `key` (an Ed25519 private
    key, e.g. a drill's Rehearsal.keys.central), storing to directory/central.db."""
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from sync.central import Central, load_central_config

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key_path = d / "central.key"
    if not key_path.exists():
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    conf = d / "central.toml"
    conf.write_text(f'site = "{site}"\nbroker = "{broker_url}"\nsigning_key = "{key_path}"\ndb = "{d / "central.db"}"\n'
                    f"poll_s = 0.1\n{extra}", encoding="utf-8")
    c = Central(load_central_config(conf)).start()
    if wait:
        assert c.wait_connected(15), "central did not connect"
    return c
