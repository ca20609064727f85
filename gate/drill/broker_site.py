"""The site of a drill with several gates run through a real broker (`gate drill
--broker mqtt://HOST:PORT` on a drill with `gates:`): each gate syncs as `gate run`
does, and a real `gate central` started for the drill carries presence between them.

What the drill sets up, and why (README, "Drills"):

- **Its own central.** A `gate central` subprocess on a throwaway database, signing
  with the drill's own key (the key that signs the drill's passes), so the rehearsal
  writes nothing into the real site's central. `--central CENTRAL.toml` gives it the
  real central's settings to start from (broker account and TLS files, limits); its
  site, topic prefix, database, key, instance and policy file are always the drill's.
- **Its own topics.** Everything goes under ``gate-drill/<run>/<site>``, with client
  ids of the run, so a rehearsal on the site's real broker never mixes with the real
  gates and central (a real gate called `east` is not kicked off), nor with another
  rehearsal. Retained messages under that prefix are cleared at the end.
- **A cuttable link per gate.** Each gate reaches the broker through its own relay
  (gate/drill/linkcut.py): `link: down` cuts it, `link: up` restores it, and the gate
  goes through a real disconnect and reconnect (its last will, its outbox, its replay).
- **Waiting, not sleeping.** After every step and timer the drill waits until the
  events of every linked gate are receipted by central and every linked gate has
  applied central's whole presence log (`SyncService.presence_caught_up`: a request
  to central and its answer, which is also fresh news of the site). That is what the
  in-process site gives at once; here it takes a few round trips.
- **Drill time is the drill's own.** Central's signed timestamps are real time; they
  do not move a drill gate's time floor, so a drill set on another day is judged on
  its own clock as in-process.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.core.site import News
from gate.drill.linkcut import LinkCut
from gate.drill.stimuli import DrillError
from gate.store.database import Store

SETTLE_TIMEOUT_S = 30.0  # real seconds for events to be receipted and presence to arrive
START_TIMEOUT_S = 30.0
# Central's settings that are always the drill's, whatever --central says.
_DRILLS_OWN = ("site", "prefix", "instance", "client_id", "group", "signing_key", "name", "policy_file", "db",
               "session_expiry_s", "presence_heartbeat_s", "poll_s", "broker")
_PATHS = ("password_file", "ca_file", "cert_file", "key_file")


def central_settings(base: Path | None) -> dict[str, Any]:
    """The settings of CENTRAL.toml that a drill's central keeps (relative paths made
    absolute, as `gate central` reads them)."""
    if base is None:
        return {}
    try:
        data = tomllib.loads(base.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DrillError(f"--central {base}: {exc}") from None
    if isinstance(data.get("central"), dict) and len(data) == 1:
        data = data["central"]
    out = {k: v for k, v in data.items() if k not in _DRILLS_OWN}
    for k in _PATHS:
        if isinstance(out.get(k), str) and not Path(out[k]).is_absolute():
            out[k] = str(base.resolve().parent / out[k])
    return out


def _toml(data: dict[str, Any]) -> str:
    lines = []
    for k, v in data.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{k} = {v}")
        elif isinstance(v, str):
            lines.append(f"{k} = {_quote(v)}")
        else:
            raise DrillError(f"--central: {k} = {v!r} is not a setting a drill's central can take")
    return "\n".join(lines) + "\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BrokerSite:
    """The same face as DrillSite (post, attach, set_link, pump, close) for a drill
    whose gates sync through a real broker and central."""

    def __init__(self, gates: list[str], broker: str, site: str, key: Ed25519PrivateKey, workdir: Path,
                 central_base: Path | None = None) -> None:
        if not broker.startswith("mqtt://"):
            raise DrillError("a drill with several gates and --broker needs mqtt:// (each gate's link is a relay the"
                             " drill can cut)")
        self.gates = list(gates)
        self.broker = broker
        self.site = site
        self.run_id = secrets.token_hex(4)
        self.prefix = f"gate-drill/{self.run_id}/{{site}}"
        self.views: dict[str, Any] = {g: None for g in gates}  # each gate follows central (sync/presence.py)
        self.linked = {g: True for g in gates}
        self.links = {g: LinkCut.to_url(broker) for g in gates}
        self.workdir = workdir
        self._key = key
        self._central_base = central_base
        self._apps: dict[str, Any] = {}
        self._dirty = True
        self._heard_at: Any = None
        self._lock = threading.Lock()
        self.central: subprocess.Popen[str] | None = None
        self._central_out: list[str] = []

    # ------------------------------------------------------------ set-up
    def gate_config(self, gate: str, central_pub: Path) -> dict[str, Any]:
        """What a gate's config gets on top of the drill's: sync to the drill's central."""
        return {"sync": {"prefix": self.prefix, "client_id": f"drill-{self.run_id}-{gate}",
                         "central_keys": [str(central_pub)], "presence": True, "backoff_s": [0.1, 0.5],
                         "receipts": True, "receipt_timeout_s": 2.0}}

    def broker_for(self, gate: str) -> str:
        return self.links[gate].url

    def start_central(self) -> None:
        d = self.workdir / "central"
        d.mkdir(parents=True, exist_ok=True)
        key = d / "central.key"
        key.write_bytes(self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        key.chmod(0o600)
        settings = {**central_settings(self._central_base),
                    "site": self.site, "prefix": self.prefix, "broker": self.broker, "instance": "drill",
                    "client_id": f"central-drill-{self.run_id}", "signing_key": str(key), "name": "drill central",
                    "db": str(d / "central.db"), "poll_s": 0.1, "presence_heartbeat_s": 1.0, "session_expiry_s": 0}
        conf = d / "central.toml"
        conf.write_text(_toml(settings), encoding="utf-8")
        self.central = subprocess.Popen(
            [sys.executable, "-m", "gate.cli.main", "central", "-c", str(conf)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            cwd=str(Path(__file__).resolve().parents[2]), env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started = threading.Event()

        def read() -> None:
            assert self.central is not None and self.central.stdout is not None
            for line in self.central.stdout:
                self._central_out.append(line)
                if line.startswith("central ") and " for site " in line:
                    started.set()

        threading.Thread(target=read, name="drill-central-out", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not started.wait(0.1):
            if self.central.poll() is not None or time.monotonic() > deadline:
                raise DrillError(f"the drill's gate central did not start: {''.join(self._central_out)[-1500:]}")

    def bind(self, apps: dict[str, Any]) -> None:
        """The running apps; waits until each is connected and has heard from central."""
        self._apps = dict(apps)
        for gate, app in self._apps.items():
            if app.sync is None or not app.sync.link.wait_connected(START_TIMEOUT_S):
                raise DrillError(f"gate {gate} did not connect to {self.broker}")
        self._settle(force=True)

    # ------------------------------------------------------------ the site's face
    def attach(self, gate: str, store: Store) -> None:
        store.close()  # news is applied by each gate's own sync, not by the drill

    def post(self, origin: str, news: News) -> None:
        """From a lane thread: a gate said something the site should hear; it goes
        through central, and the next pump waits for it."""
        with self._lock:
            self._dirty = True

    def set_link(self, gate: str, up: bool, now: Any) -> None:
        if up == self.linked[gate]:
            return
        if not up:
            self.pump(now)  # what was said before the cut still travels
            self.linked[gate] = False
            self.links[gate].down()
            link = self._apps[gate].sync.link
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while link.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            return
        self.linked[gate] = True
        self.links[gate].up()
        if not self._apps[gate].sync.link.wait_connected(SETTLE_TIMEOUT_S):
            raise DrillError(f"gate {gate} did not reconnect within {SETTLE_TIMEOUT_S:g} s after link: up")
        with self._lock:
            self._dirty = True
        self.pump(now)

    def pump(self, now: Any) -> None:
        with self._lock:
            dirty = self._dirty
            self._dirty = False
        if dirty or now != self._heard_at:
            self._settle(force=dirty)
            self._heard_at = now

    def _settle(self, force: bool) -> None:
        live = [g for g in self.gates if self.linked[g]]
        if force:
            for g in live:
                pub = self._apps[g].sync.publisher
                pub.nudge()
                if not pub.wait_drained(SETTLE_TIMEOUT_S):
                    raise DrillError(f"gate {g}: events not receipted by the drill's central within {SETTLE_TIMEOUT_S:g} s")
        for g in live:
            if not self._apps[g].sync.presence_caught_up(SETTLE_TIMEOUT_S):
                raise DrillError(f"gate {g}: central's presence did not arrive within {SETTLE_TIMEOUT_S:g} s")

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        if self.central is not None and self.central.poll() is None:
            self.central.terminate()
            try:
                self.central.wait(10)
            except subprocess.TimeoutExpired:
                self.central.kill()
                self.central.wait(5)
        self._clear_retained()

    def _clear_retained(self) -> None:
        """Leave nothing retained under the drill's prefix on the broker."""
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            return
        host, _, port = self.broker.split("://", 1)[1].rstrip("/").partition(":")
        topics: set[str] = set()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"drill-{self.run_id}-tidy",
                             protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, m: topics.add(m.topic) if m.retain and m.payload else None
        try:
            client.connect(host, int(port or 1883), keepalive=10)
            client.loop_start()
            client.subscribe(self.prefix.format(site=self.site) + "/#", qos=0)
            time.sleep(0.5)
            for t in topics:
                client.publish(t, b"", qos=1, retain=True).wait_for_publish(2)
            client.disconnect()
            client.loop_stop()
        except (OSError, RuntimeError, ValueError):
            pass
