"""Two gates in the tests: real `gate run` daemons (subprocesses) against one mosquitto
and one real `gate central` (a subprocess too). The pass and its card come from
central's roster; each gate's scripted people ([demo], loop = false) swipe the card
at set times; what happened is read back from central (`gate central events`,
`gate central status`).

- passback across gates: a card that entered at east is refused at west (hard);
- a gate cut off (its connection through a relay the test cuts, gate/drill/linkcut.py)
  is shown offline, decides on its own meanwhile, and once reconnected catches up
  both ways: its own events reach central, the site's presence reaches it;
- a clean stop is shown offline at central.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.drill.linkcut import LinkCut
from tests.conftest import ROOT
from tests.mqtt_broker import Broker

GATE = [sys.executable, "-m", "gate.cli.main"]
SITE = "hill"
R3_CARD, R4_CARD = "7340021", "7340044"


def wait_for(cond: Any, timeout: float, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


class Central:
    """`gate central` for site `hill` with two passes (r3, r4) and their cards."""

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        d = tmp_path / "central"
        d.mkdir()
        key = Ed25519PrivateKey.generate()
        (d / "central.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        (d / "central.key").chmod(0o600)
        self.pub = d / "central.pub"
        self.pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
        self.conf = d / "central.toml"
        self.conf.write_text(f'site = "{SITE}"\nbroker = "{broker.url}"\nsigning_key = "central.key"\ndb = "central.db"\n'
                             'poll_s = 0.2\npresence_heartbeat_s = 1\n', encoding="utf-8")
        for pid, holder, card in (("r3", "张丽", R3_CARD), ("r4", "李娜", R4_CARD)):
            self.cli("passes", "add", "--id", pid, "--holder", holder, "--unit", "2-1-301", "--category", "resident",
                     "--card", card)
        self.proc = subprocess.Popen([*GATE, "central", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith("central ") and " for site " in line:
                break
        else:
            pytest.fail("gate central did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or []], daemon=True).start()

    def cli(self, *args: str) -> str:
        res = subprocess.run([*GATE, "central", "-c", str(self.conf), *args], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def decisions(self, gate: str) -> list[dict[str, Any]]:
        events = [json.loads(x) for x in self.cli("events", "--json", "--gate", gate).splitlines() if x.strip()]
        return [e for e in events if e.get("type") == "decision"]

    def states(self) -> dict[str, str]:
        return {st["gate"]: st["state"] for st in map(json.loads, self.cli("status", "--json").splitlines())}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Daemon:
    """`gate run` for one gate of the site; its scripted people swipe cards at `swipes`
    (seconds after it starts: card, then a temperature half a second later)."""

    def __init__(self, tmp_path: Path, name: str, broker_url: str, central: Central,
                 swipes: list[tuple[float, str]]) -> None:
        steps = "".join(f'\n  - {{at: {at}, lane: in, card: "{card}"}}\n  - {{at: {at + 0.5}, lane: in, temperature: 36.5}}'
                        for at, card in swipes) or " []"
        script = tmp_path / f"{name}-people.yaml"
        script.write_text(f'name: people at {name}\nstart: "2026-11-22T08:00:00+08:00"\npasses: []\nsteps:{steps}\nexpect: []\n',
                          encoding="utf-8")
        self.store = tmp_path / f"{name}.db"
        conf = tmp_path / f"{name}.toml"
        conf.write_text(
            f'[gate]\nid = "{name}"\nsite = "{SITE}"\n[store]\npath = "{self.store}"\n[guard]\nenabled = false\n'
            '[policy]\npassback = "hard"\n'
            f'[sync]\nbroker = "{broker_url}"\ncentral_keys = ["{central.pub}"]\nheartbeat_s = 1\nbackoff_s = [0.2, 1.0]\n'
            f'[demo]\nscript = "{script}"\nloop = false\n'
            '[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\nthermometer = { driver = "sim" }\n'
            'card_reader = { driver = "sim", d0 = 5, d1 = 6 }\n'
            '[[lanes]]\nname = "out"\ndirection = "out"\ncamera = { driver = "sim" }\n'
            'card_reader = { driver = "sim", d0 = 12, d1 = 13 }\n',
            encoding="utf-8")
        self.name = name
        self.out: list[str] = []
        self.proc = subprocess.Popen([*GATE, "run", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=ROOT)
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout or []), daemon=True).start()

    def playing(self) -> bool:
        return any(line.startswith("demo: playing") for line in self.out)

    def own_decisions(self) -> list[dict[str, Any]]:
        """From the gate's own store (what it decided, whether or not central has it)."""
        if not self.store.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5) as db:
                rows = db.execute("SELECT body FROM events WHERE type = 'decision'").fetchall()
        except sqlite3.OperationalError:
            return []
        return [json.loads(r[0]) for r in rows]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def why(self) -> str:
        return f"{self.name} said:\n{''.join(self.out[-30:])}"


def pick(decisions: list[dict[str, Any]], pass_id: str) -> list[tuple[str, str]]:
    return [(d["decision"], d["reason"]) for d in decisions if d.get("pass") == pass_id]


@pytest.fixture
def site(tmp_path: Path, broker: Broker):  # type: ignore[no-untyped-def]
    made: list[Any] = []

    class Site:
        central = Central(tmp_path, broker)

        @staticmethod
        def gate(name: str, swipes: list[tuple[float, str]], broker_url: str | None = None) -> Daemon:
            d = Daemon(tmp_path, name, broker_url or broker.url, Site.central, swipes)
            made.append(d)
            return d

    made.append(Site.central)
    try:
        yield Site
    finally:
        for thing in reversed(made):
            thing.stop()


def test_a_card_that_entered_at_east_is_refused_at_west(site: Any) -> None:
    # Both start together; west's card comes well after east's entry has gone round
    # (14 s later: room for one daemon starting seconds after the other on a busy machine).
    west = site.gate("west", [(20.0, R3_CARD)])
    east = site.gate("east", [(6.0, R3_CARD)])
    assert wait_for(lambda: west.playing() and east.playing(), 30), west.why() + east.why()
    entered = wait_for(lambda: pick(site.central.decisions("east"), "r3"), 30)
    assert entered == [("allow", "ok")], east.why()
    refused = wait_for(lambda: pick(site.central.decisions("west"), "r3"), 30)
    assert refused == [("deny", "passback")], west.why()
    assert site.central.states() == {"east": "online", "west": "online"}


def test_a_gate_cut_off_decides_alone_and_catches_up_when_it_is_back(site: Any, broker: Broker) -> None:
    with LinkCut.to_url(broker.url) as link:
        # West: r4 while it is cut off (allowed: nothing is known against it), r3 once back
        # (r4 20 s after west starts: both must be online and the link cut first, also on a busy machine).
        west = site.gate("west", [(20.0, R4_CARD), (36.0, R3_CARD)], broker_url=link.url)
        east = site.gate("east", [(9.0, R3_CARD)])
        assert wait_for(lambda: site.central.states() == {"east": "online", "west": "online"}, 30), west.why()
        assert pick(west.own_decisions(), "r4") == [], "west's r4 came before the link was cut: " + west.why()
        link.down()  # west's connection to the broker is gone (its last will: offline)
        assert wait_for(lambda: site.central.states().get("west") == "offline", 15)
        assert wait_for(lambda: pick(site.central.decisions("east"), "r3"), 30) == [("allow", "ok")], east.why()
        assert wait_for(lambda: pick(west.own_decisions(), "r4"), 30) == [("allow", "ok")], west.why()
        assert pick(site.central.decisions("west"), "r4") == []  # still only at west
        link.up()
        # Back: west's own events reach central, and the site's news reaches west.
        assert wait_for(lambda: site.central.states().get("west") == "online", 20)
        assert wait_for(lambda: pick(site.central.decisions("west"), "r4"), 20) == [("allow", "ok")]
        assert wait_for(lambda: pick(site.central.decisions("west"), "r3"), 30) == [("deny", "passback")], west.why()


def test_a_gate_that_stops_cleanly_is_offline_at_central(site: Any) -> None:
    east = site.gate("east", [])
    assert wait_for(lambda: site.central.states().get("east") == "online", 30), east.why()
    assert east.stop(signal.SIGTERM) == 0, east.why()
    assert wait_for(lambda: site.central.states().get("east") == "offline", 10)
    out = site.central.cli("status")
    assert "east" in out and "OFFLINE" in out
