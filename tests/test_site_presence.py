"""Presence across a site through a real mosquitto and the reference central: an
entry at one gate counts for passback at another; a gate that was away catches up
from central's log; news is signed by central and nobody else's counts; a gate
that hears nothing from central marks its entries `presence: stale`."""
from __future__ import annotations

import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.drill import file as drill_file
from gate.drill.runner import Rehearsal
from gate.drill.file import Step
from sync import codec
from sync.central import Central, load_central_config
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener, trust_central

SITE = "drill"
PREFIX = f"gate/v1/{SITE}"

DRILL = """
    name: a site of two gates
    start: "{start}"
    config:
      gate: {{id: {gate}, site: drill}}
      policy: {{passback: hard, presence_stale_s: 30}}
    passes:
      - {{id: r3, holder: 张丽, unit: 2-1-301, category: resident}}
      - {{id: r4, holder: 李娜, unit: 2-1-302, category: resident}}
    steps: []
"""


def wait_for(cond, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    return Listener.wait_for(cond, timeout)


def central_config(tmp_path: Path, broker: Broker, key: Ed25519PrivateKey) -> tuple[Path, Path]:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "central.key").write_bytes(pem)
    (tmp_path / "central.key").chmod(0o600)
    pub = tmp_path / "central.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    conf = tmp_path / "central.toml"
    conf.write_text(f'site = "{SITE}"\nbroker = "{broker.url}"\nsigning_key = "central.key"\ndb = "central.db"\n'
                    'poll_s = 0.1\npresence_heartbeat_s = 1\n')
    return conf, pub


def gate(name: str, broker: Broker, pub: Path, store: Path, tokens: dict[str, str] | None = None,
         pass_key: Ed25519PrivateKey | None = None) -> Rehearsal:
    # The drill starts now: central's signed timestamps (real time) raise the gate's
    # time floor, and a drill set in the past would be judged at today's date.
    start = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    r = Rehearsal(drill_file.parse(textwrap.dedent(DRILL.format(gate=name, start=start))), broker=broker.url, store_path=store)
    trust_central(r, [pub])
    if tokens is not None and pass_key is not None:  # the same signed passes at every gate of the site
        r.app.keyring.add(pass_key.public_key())
        r.tokens = dict(tokens)
    return r


def enter(r: Rehearsal, at: float, pass_id: str, lane: str = "in") -> dict:
    r.step(Step(at=at, lane=lane, qr=pass_id))
    if lane == "in":
        r.step(Step(at=at + 0.5, lane=lane, temperature=36.5))
    return [line for line in r.lines if line["type"] == "decision"][-1]


def test_an_entry_at_one_gate_counts_at_the_other_and_a_gate_away_catches_up(broker: Broker, tmp_path: Path) -> None:
    conf, pub = central_config(tmp_path, broker, Ed25519PrivateKey.generate())
    c = Central(load_central_config(conf)).start()
    east = gate("east", broker, pub, tmp_path / "east.db")
    try:
        with east:
            west = gate("west", broker, pub, tmp_path / "west.db", east.tokens, east.keys.central)
            with west:
                assert c.wait_connected(10) and east.app.sync.link.wait_connected(10) and west.app.sync.link.wait_connected(10)
                assert enter(east, 0, "r3")["decision"] == "allow"
                t0 = time.monotonic()
                down = west.app.sync.downstream
                assert wait_for(lambda: down.counters.get("presence_applied") >= 1), down.counters
                latency = time.monotonic() - t0
                refused = enter(west, 3, "r3")
                assert (refused["decision"], refused["reason"]) == ("deny", "passback")
                assert "presence" not in refused  # fresh news: central's head keeps coming
                assert latency < 10  # a sanity bound; the bench measures the real figure
                # Out at west: east hears that too, and lets r3 in again.
                assert enter(west, 600, "r3", lane="out")["decision"] == "allow"
                assert wait_for(lambda: east.app.sync.downstream.counters.get("presence_applied") >= 1)
                assert enter(east, 700, "r3")["decision"] == "allow"
            # West is away while r4 goes in at east, and the broker restarts without
            # persistence meanwhile: what it held for west is gone ...
            assert enter(east, 800, "r4")["decision"] == "allow"
            assert wait_for(lambda: c.stats().get("presence_items", 0) >= 4)
            broker.restart()
            assert c.wait_connected(20) and east.app.sync.link.wait_connected(20)
            # ... so west catches up from central's log: the head says it is behind, it
            # asks for a replay.
            west = gate("west", broker, pub, tmp_path / "west.db", east.tokens, east.keys.central)
            with west:
                assert wait_for(lambda: west.app.sync.downstream.counters.get("presence_requests") >= 1)
                assert wait_for(lambda: west.app.sync.downstream.counters.get("presence_applied") >= 1)
                refused = enter(west, 900, "r4")
                assert (refused["decision"], refused["reason"]) == ("deny", "passback")
    finally:
        c.stop()


def test_presence_signed_by_anyone_but_central_counts_for_nothing(broker: Broker, tmp_path: Path) -> None:
    conf, pub = central_config(tmp_path, broker, Ed25519PrivateKey.generate())
    west = gate("west", broker, pub, tmp_path / "west.db")
    with west:
        assert west.app.sync.link.wait_connected(10)
        rogue = Listener(broker.port, topic="none", client_id="rogue")
        forged = codec.sign({"type": "presence", "seq_from": 1, "seq_to": 1, "ts": "2026-11-22T07:40:00+08:00", "by": "x",
                             "items": [{"seq": 1, "kind": "move", "pass": "r3", "direction": "in",
                                        "at": "2026-11-22T07:39:00+08:00", "gate": "east"}]}, Ed25519PrivateKey.generate())
        rogue.publish(f"{PREFIX}/presence", codec.encode(forged))
        down = west.app.sync.downstream
        assert wait_for(lambda: down.counters.get("presence_forged") == 1), down.counters
        assert enter(west, 5, "r3")["decision"] == "allow"  # nobody inside: the forgery changed nothing
        rogue.close()


def test_a_gate_that_hears_nothing_from_central_says_its_entries_are_stale(broker: Broker, tmp_path: Path) -> None:
    conf, pub = central_config(tmp_path, broker, Ed25519PrivateKey.generate())
    c = Central(load_central_config(conf)).start()
    west = gate("west", broker, pub, tmp_path / "west.db")
    try:
        with west:
            assert west.app.sync.link.wait_connected(10) and c.wait_connected(10)
            assert wait_for(lambda: west.app.site.last_heard is not None)
            assert "presence" not in enter(west, 1, "r3")
            c.stop()  # central goes away: no more heads
            # Its last words may still be on their way: wait until nothing new comes for
            # two heartbeats, then 60 s of drill time later than that (presence_stale_s is 30 here).
            heard, since = west.app.site.last_heard, time.monotonic()
            while time.monotonic() - since < 2.0:
                time.sleep(0.1)
                if west.app.site.last_heard != heard:
                    heard, since = west.app.site.last_heard, time.monotonic()
            late = enter(west, (heard - west.clock.start).total_seconds() + 60, "r4")
            assert (late["decision"], late.get("presence")) == ("allow", "stale")
    finally:
        c.stop()
