"""One MQTT v5 connection to the broker, remade from scratch after every loss.

paho resends its own in-memory queue of unacknowledged messages on reconnect and
ignores its in-flight limit when it does (paho #492); it also loses that queue on
a restart. So the outbox, not paho, owns delivery: each connection gets a fresh
paho client, and on a loss every message handed to the old one goes back to the
outbox as pending. Retries back off with jitter.
"""
from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)


def no_delay(client: mqtt.Client) -> None:
    """Turn off Nagle on the client's socket. paho leaves it on; with receipts coming
    back on the connection the events go out on, a PUBACK written behind another small
    packet then waits for the peer's delayed ACK (40 ms): the drain fell tenfold."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass


@dataclass(frozen=True)
class LinkConfig:
    host: str
    port: int
    client_id: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    backoff_s: tuple[float, float] = (0.5, 30.0)
    session_expiry_s: int = 0  # >0 with clean_start=False: the broker keeps our subscriptions' messages
    will_topic: str | None = None
    will_payload: bytes | None = None

    @classmethod
    def from_url(cls, url: str, client_id: str, **kw: object) -> "LinkConfig":
        tls = url.startswith("mqtts://")
        rest = url.split("://", 1)[1].rstrip("/")
        host, _, port = rest.partition(":")
        return cls(host=host, port=int(port) if port else (8883 if tls else 1883), client_id=client_id, tls=tls, **kw)  # type: ignore[arg-type]


class Link:
    """Keeps one connection up. Callbacks run on paho's network thread: keep them short.

    on_state(connected: bool) · on_message(topic, payload) · on_ack(mid, ok, reason)
    """

    def __init__(
        self,
        cfg: LinkConfig,
        *,
        subscriptions: list[tuple[str, int]] | None = None,
        on_state: Callable[[bool], None] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        on_ack: Callable[[int, bool, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.subscriptions = list(subscriptions or [])
        self._on_state = on_state or (lambda ok: None)
        self._on_message = on_message or (lambda t, p: None)
        self._on_ack = on_ack or (lambda mid, ok, reason: None)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self.connects = 0
        self.last_error = ""
        self._hanging_up = False

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._lost.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int | None:
        """Hand one message to the current connection; None when there is none (never queue offline)."""
        with self._lock:
            client = self._client
            if client is None or not self._connected.is_set():
                return None
            info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    # ------------------------------------------------------------ connection loop

    def _new_client(self) -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if self.cfg.tls:
            c.tls_set(
                ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None,
                certfile=str(self.cfg.cert_file) if self.cfg.cert_file else None,
                keyfile=str(self.cfg.key_file) if self.cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password)
        if self.cfg.will_topic and self.cfg.will_payload is not None:
            c.will_set(self.cfg.will_topic, self.cfg.will_payload, qos=1, retain=True)
        c.max_inflight_messages_set(65535)  # our window limits in-flight, not paho's queue
        c.on_connect = self._cb_connect
        c.on_disconnect = self._cb_disconnect
        c.on_message = self._cb_message
        c.on_publish = self._cb_publish
        return c

    def _run(self) -> None:
        delay = self.cfg.backoff_s[0]
        while not self._stop.is_set():
            self._lost.clear()
            self._hanging_up = False
            props = None
            if self.cfg.session_expiry_s > 0:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.cfg.session_expiry_s
            try:
                # Inside the try: a CA or key file missing or replaced mid-renewal is an
                # error to report and retry, not the end of the link.
                client = self._new_client()
                client.connect(
                    self.cfg.host,
                    self.cfg.port,
                    keepalive=self.cfg.keepalive_s,
                    clean_start=self.cfg.session_expiry_s <= 0,
                    properties=props,
                )
            except Exception as exc:  # OSError, ssl.SSLError, ValueError ... all mean: try again later
                self._note_error(f"connect to {self.cfg.host}:{self.cfg.port} failed: {exc}")
            else:
                no_delay(client)
                with self._lock:
                    self._client = client
                client.loop_start()
                # Wait for the CONNACK, then for the connection to be lost (or stop). The
                # stop flag is looked at too: stop() may have come just before _lost.clear().
                while not self._lost.wait(0.5) and not self._stop.is_set():
                    pass
                was_up = self._connected.is_set()
                self._hanging_up = True  # our own disconnect below is not an error
                self._connected.clear()
                with self._lock:
                    self._client = None
                try:
                    if self._stop.is_set() and self.cfg.will_topic:
                        # A clean stop still says "offline": MQTT 5 lets us ask the broker
                        # to publish our will (the retained offline status) as we leave.
                        client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
                    else:
                        client.disconnect()
                except Exception:
                    pass
                client.loop_stop()
                if was_up:
                    self._on_state(False)
                    delay = self.cfg.backoff_s[0]
            if self._stop.is_set():
                return
            wait = self._rng.uniform(delay / 2, delay)  # jitter: a site's gates do not reconnect in step
            delay = min(delay * 2, self.cfg.backoff_s[1])
            self._stop.wait(wait)

    def _note_error(self, msg: str) -> None:
        if msg != self.last_error:
            log.warning("mqtt: %s", msg)
        self.last_error = msg

    # ------------------------------------------------------------ paho callbacks

    def _cb_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        if getattr(rc, "is_failure", False):
            self._note_error(f"broker refused the connection: {rc}")
            self._lost.set()
            return
        for topic, qos in self.subscriptions:
            client.subscribe(topic, qos=qos)
        self.connects += 1
        self.last_error = ""
        self._connected.set()
        self._on_state(True)

    def _cb_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        if self._hanging_up:
            self._lost.set()
            return
        if self._connected.is_set():
            self._note_error(f"connection lost: {rc}")
        else:
            # e.g. a TLS client certificate refused, or bad credentials
            self._note_error(f"the broker closed the connection before accepting it: {rc}")
        self._lost.set()

    def _cb_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, msg.payload)
        except Exception:
            log.exception("mqtt: message handler failed on %s", msg.topic)

    def _cb_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: object, props: object) -> None:
        # MQTT v5: a PUBACK may carry a failure (135 Not authorized for an ACL-denied
        # publish, which v3.1.1 would have acked as success); 16 "no matching
        # subscribers" is not a failure code, yet nobody got the message: the outbox
        # (sync/outbox.py) never counts it as delivered.
        failed = bool(getattr(rc, "is_failure", False))
        try:
            self._on_ack(mid, not failed, str(rc))
        except Exception:
            log.exception("mqtt: ack handler failed")
