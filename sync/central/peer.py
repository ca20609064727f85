"""Central's MQTT client: paho v5 with PUBACK reason codes tracked per mid, and
``publish_once`` for the CLI (connect, publish, wait, disconnect)."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from sync import codec
from sync.central.config import CentralConfig
from sync.link import no_delay

log = logging.getLogger("sync.central")


class MqttPeer:
    """A paho v5 client with PUBACK reason codes tracked per mid."""

    def __init__(
        self, conf: CentralConfig, client_id: str, *, persistent: bool, manual_ack: bool = False,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        on_connect: Callable[[bool], None] | None = None,
    ) -> None:
        self.conf = conf
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack,
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(50)
        self.client.reconnect_delay_set(0.2, 10)
        if conf.username:
            pw = None
            if conf.password_file:
                pw = Path(conf.password_file).read_text(encoding="utf-8").strip()
            self.client.username_pw_set(conf.username, pw)
        host, port, tls = conf.endpoint()
        if tls:
            self.client.tls_set(
                ca_certs=str(conf.ca_file) if conf.ca_file else None,
                certfile=str(conf.cert_file) if conf.cert_file else None,
                keyfile=str(conf.key_file) if conf.key_file else None,
            )
        self.host, self.port = host, port
        self.persistent = persistent
        self._acks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.generation = 0  # bumped on every CONNACK: acks of an older connection are not sent
        self._user_on_message = on_message
        self._user_on_connect = on_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if on_message:
            self.client.on_message = lambda c, u, m: on_message(m)

    def start(self, *, wait: bool = False) -> None:
        """Connect in the background (reconnecting for ever); with wait, the first
        connect happens here and raises OSError if the broker cannot be reached."""
        props = Properties(PacketTypes.CONNECT)
        if self.persistent:
            props.SessionExpiryInterval = self.conf.session_expiry_s
        props.ReceiveMaximum = self.conf.receive_maximum
        kw = dict(keepalive=self.conf.keepalive_s, clean_start=not self.persistent, properties=props)
        if wait:
            self.client.connect(self.host, self.port, **kw)  # type: ignore[arg-type]
        else:
            self.client.connect_async(self.host, self.port, **kw)  # type: ignore[arg-type]
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self.connected.clear()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.generation += 1
        no_delay(client)  # acks and receipts go out between deliveries (sync/link.py)
        self.connected.set()
        log.info("connected to %s:%s (session present: %s)", self.host, self.port, flags.session_present)
        if self._user_on_connect:
            self._user_on_connect(flags.session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        log.info("disconnected from %s:%s: %s", self.host, self.port, reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._cond:
            self._acks[mid] = reason_code
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes | dict[str, Any], *, retain: bool = False, qos: int = 1) -> int:
        if isinstance(payload, dict):
            payload = codec.encode(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid

    def wait(self, mids: list[int], timeout: float) -> bool:
        """True when every mid got a non-failure PUBACK; False on a failure or timeout."""
        deadline = time.monotonic() + timeout
        ok = True
        with self._cond:
            for mid in mids:
                while mid not in self._acks:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(min(left, 0.5))
                rc = self._acks.pop(mid)
                if rc is not None and getattr(rc, "is_failure", False):
                    log.warning("publish refused by the broker: %s", rc)
                    ok = False
        return ok

    def publish_wait(self, topic: str, payload: bytes | dict[str, Any], *, retain: bool = False, timeout: float = 10.0) -> bool:
        return self.wait([self.publish(topic, payload, retain=retain)], timeout)

    def ack(self, mid: int, qos: int, generation: int) -> None:
        if qos > 0 and generation == self.generation:
            self.client.ack(mid, qos)


def publish_once(conf: CentralConfig, items: list[tuple[str, dict[str, Any], bool]], timeout: float = 15.0) -> bool:
    """Connect, publish (topic, payload, retain) items QoS 1, wait for the PUBACKs, disconnect."""
    peer = MqttPeer(conf, f"{conf.mqtt_client_id}-cli-{secrets.token_hex(3)}", persistent=False)
    peer.start(wait=True)
    try:
        if not peer.connected.wait(timeout):
            raise ConnectionError(f"cannot reach the broker at {conf.broker}")
        mids = [peer.publish(t, p, retain=r) for t, p, r in items]
        return peer.wait(mids, timeout)
    finally:
        peer.stop()
