"""A client of mosquitto's dynamic-security control topic: it logs in as the admin user,
sends the plugin's commands (`$CONTROL/dynamic-security/v1`, JSON `{"commands": [...]}`)
and waits for their answers on `$CONTROL/dynamic-security/v1/response`, matched by the
correlationData each command carries.

Every failure is a ControlError with a message for the operator: a broker it cannot
reach, a refused login, an answer with an error (the command and the plugin's own
text), no answer in time. The plugin changes the running broker at once (no restart),
and saves its file itself.

    with Control(Endpoint("127.0.0.1", 1883), "admin", password) as ctl:
        running = ctl.state()
        ctl.run([{"command": "deleteClient", "username": "east-1"}])
"""
from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt

from sync.dynsec import CONTROL_TOPIC, RESPONSE_TOPIC


class ControlError(Exception):
    """Something the operator must hear about; str() says what."""


class Unreachable(ControlError):
    pass


class LoginRefused(ControlError):
    pass


class NoAnswer(ControlError):
    pass


class CommandFailed(ControlError):
    def __init__(self, command: str, error: str, detail: str = "") -> None:
        self.command, self.error = command, error
        super().__init__(f"the dynamic-security plugin refused {command}{detail}: {error}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Running:
    """What the running broker's plugin holds: clients and roles as listClients and
    listRoles (verbose) answer, and its default access (getDefaultACLAccess)."""
    clients: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    default_access: dict[str, bool]


def _detail(cmd: dict[str, Any]) -> str:
    """The object a command is about, for an error message."""
    for key in ("username", "rolename", "groupname"):
        if key in cmd:
            return f" ({key} {cmd[key]})"
    return ""


class Control:
    """One admin session on the control topic; commands are sent one request at a time."""

    def __init__(self, endpoint: Endpoint, username: str, password: str, *, timeout: float = 10.0,
                 client_id: str | None = None) -> None:
        self.endpoint, self.username, self.timeout = endpoint, username, timeout
        # The shipped broker config makes a client's id its user name anyway.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or username, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.connect_timeout = timeout
        if endpoint.tls:
            try:
                self.client.tls_set(ca_certs=endpoint.ca_file, certfile=endpoint.cert_file, keyfile=endpoint.key_file)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ControlError(f"cannot set up TLS for {endpoint.url}: {exc}") from exc
        self._cond = threading.Condition()
        self._connack: Any = None
        self._suback: list[Any] | None = None
        self._pubacks: dict[int, Any] = {}
        self._answers: dict[str, dict[str, Any]] = {}
        self._closed: Any = None  # the reason the broker gave when it closed the connection
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # -- paho callbacks (its network thread) --
    def _set(self, fn: Callable[[], None]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self._set(lambda: setattr(self, "_connack", rc))

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[Any], props: Any) -> None:
        self._set(lambda: setattr(self, "_suback", list(rcs)))

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        self._set(lambda: self._pubacks.__setitem__(mid, rc))

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self._set(lambda: setattr(self, "_closed", rc))

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
            answers = [a for a in doc.get("responses", []) if isinstance(a, dict)]
        except (ValueError, AttributeError):
            return
        with self._cond:
            for a in answers:
                if isinstance(a.get("correlationData"), str):
                    self._answers[a["correlationData"]] = a
            self._cond.notify_all()

    def _wait(self, cond: Callable[[], bool], what: str) -> None:
        """Wait (up to the time-out) until cond() holds; a closed connection or the
        time-out is a ControlError naming what was awaited."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not cond():
                if self._closed is not None:
                    raise ControlError(f"the broker at {self.endpoint.url} closed {self.username}'s connection "
                                       f"({self._closed}) while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoAnswer(f"no answer from the broker at {self.endpoint.url} within {self.timeout:g} s "
                                   f"(waiting for {what})")
                self._cond.wait(min(left, 0.2))

    # -- the session --
    def connect(self) -> None:
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30, clean_start=True)
        except (OSError, ssl.SSLError) as exc:
            raise Unreachable(f"cannot reach the broker at {self.endpoint.url}: {exc}") from exc
        self.client.loop_start()
        try:
            self._login()
        except ControlError:
            self.close()
            raise

    def _login(self) -> None:
        try:
            self._wait(lambda: self._connack is not None, "its CONNACK")
        except ControlError as exc:
            if self._connack is None and self._closed is not None:
                raise LoginRefused(f"the broker at {self.endpoint.url} closed the connection before accepting "
                                   f"{self.username}'s login ({self._closed})") from exc
            raise
        if self._connack.is_failure:
            raise LoginRefused(f"the broker at {self.endpoint.url} refused {self.username}'s login: {self._connack} "
                               f"(check the admin user's password file and that the dynamic-security plugin has it)")
        self.client.subscribe(RESPONSE_TOPIC, qos=1)
        self._wait(lambda: self._suback is not None, f"the SUBACK of {RESPONSE_TOPIC}")
        assert self._suback is not None
        if not self._suback or self._suback[0].is_failure:
            raise LoginRefused(f"the broker refused {self.username} the plugin's answers ({RESPONSE_TOPIC}: "
                               f"{self._suback[0] if self._suback else 'no reason'}): is it the dynamic-security admin?")

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def __enter__(self) -> "Control":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands in one request and return each one's answer data, in order.
        The first answer with an error raises CommandFailed (the plugin does the others
        of the request all the same: send one change per request)."""
        tag = secrets.token_hex(6)
        sent = [{**cmd, "correlationData": f"{tag}-{i}"} for i, cmd in enumerate(commands)]
        names = ", ".join(dict.fromkeys(c["command"] for c in commands))
        info = self.client.publish(CONTROL_TOPIC, json.dumps({"commands": sent}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ControlError(f"cannot send {names} to the broker at {self.endpoint.url}: {mqtt.error_string(info.rc)}")
        self._wait(lambda: info.mid in self._pubacks, f"the PUBACK of {names}")
        if self._pubacks[info.mid].is_failure:
            raise ControlError(f"the broker refused {self.username}'s {names} on {CONTROL_TOPIC}: {self._pubacks[info.mid]}")
        keys = [c["correlationData"] for c in sent]
        self._wait(lambda: all(k in self._answers for k in keys), f"the plugin's answer to {names}")
        out = []
        for cmd, key in zip(commands, keys):
            answer = self._answers.pop(key)
            if answer.get("error"):
                raise CommandFailed(cmd["command"], str(answer["error"]), _detail(cmd))
            out.append(answer.get("data") or {})
        return out

    def state(self) -> Running:
        """The running broker's clients, roles and default access."""
        clients, roles, default = self.run([
            {"command": "listClients", "verbose": True, "count": -1, "offset": 0},
            {"command": "listRoles", "verbose": True, "count": -1, "offset": 0},
            {"command": "getDefaultACLAccess"},
        ])
        access = {a["acltype"]: bool(a.get("allow")) for a in default.get("acls", []) if isinstance(a, dict) and "acltype" in a}
        return Running(list(clients.get("clients", [])), list(roles.get("roles", [])), access)
