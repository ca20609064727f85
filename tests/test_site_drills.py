"""Drills with several gates through a real mosquitto and a real `gate central`
(`gate drill --broker URL` on a `gates:` drill): the same lines as in-process, presence
carried by central (not by the drill), a `link:` step cutting a gate's real connection,
the drill's central kept apart from a real site's topics, and `--central`."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gate.drill import file as drill_file
from gate.drill import runner as drill
from gate.drill.file import Step
from gate.drill.linkcut import LinkCut
from tests.conftest import ROOT, SHARED
from tests.mqtt_broker import Broker
from tests.sync_helpers import Listener

SITE_DRILLS = sorted((ROOT / "tests" / "drills").glob("two_gates_*.yaml")) + sorted(
    (SHARED / "drills").glob("two_gates_*.yaml"))


@pytest.mark.parametrize("path", SITE_DRILLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_site_drill_through_the_broker_prints_what_it_prints_in_process(path: Path, broker: Broker) -> None:
    d = drill_file.load(path)
    assert d.gates and d.expect
    here = drill.run(d)
    t0 = time.monotonic()
    there = drill.run(d, broker=broker.url)
    took = time.monotonic() - t0
    assert there.ok, f"unmet {there.unmet}, forbidden {there.forbidden}:\n" + "\n".join(map(str, there.lines))
    assert there.lines == here.lines
    print(f"{path.name}: {took:.1f} s through {broker.url}")


DRILL = """
name: east lets r3 in; west hears it through central, then is cut off
start: "2026-11-22T07:40:00+08:00"
gates: [east, west]
config:
  policy: {passback: hard}
passes:
  - {id: r3, holder: 张丽, unit: 2-1-301, category: resident}
steps: []
"""


def test_presence_goes_through_central_and_a_cut_link_is_a_real_disconnect(broker: Broker) -> None:
    with drill.Rehearsal(drill_file.parse(DRILL), broker=broker.url) as r:
        site = r.site
        assert isinstance(site, drill.BrokerSite) and site.central is not None and site.central.poll() is None
        east, west = r.apps["east"], r.apps["west"]
        assert east.sync is not None and west.sync is not None
        r.step(Step(at=0, gate="east", lane="in", qr="r3"))
        r.step(Step(at=0.5, gate="east", lane="in", temperature=36.5))
        # West learned it from central's signed presence log, through the broker.
        assert west.sync.downstream.counters.get("presence_applied") == 1
        r.step(Step(at=5, gate="west", lane="in", qr="r3"))
        refused = [x for x in r.lines if x["type"] == "decision" and x["gate"] == "west"][-1]
        assert (refused["decision"], refused["reason"]) == ("deny", "passback")
        # link: down cuts west's TCP connection to the broker; link: up lets it reconnect.
        r.step(Step(at=10, gate="west", link="down"))
        assert not west.sync.link.connected and site.links["west"].cuts >= 2
        assert east.sync.link.connected
        r.step(Step(at=20, gate="west", link="up"))
        assert west.sync.link.connected


def test_without_its_central_the_drill_says_presence_did_not_arrive(broker: Broker, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gate.drill import broker_site

    monkeypatch.setattr(broker_site, "SETTLE_TIMEOUT_S", 3.0)
    with drill.Rehearsal(drill_file.parse(DRILL), broker=broker.url) as r:
        assert r.site.central is not None
        r.site.central.kill()  # the drill waits on central: nothing in-process stands in for it
        r.site.central.wait(5)
        with pytest.raises(drill.DrillError, match="not receipted|presence did not arrive"):
            r.step(Step(at=0, gate="east", lane="in", qr="r3"))
            r.step(Step(at=0.5, gate="east", lane="in", temperature=36.5))


def test_the_drill_cli_with_central_settings_and_nothing_left_retained(broker: Broker, tmp_path: Path) -> None:
    # An operator's central.toml: its site, db and key are not the drill's to use.
    conf = tmp_path / "central.toml"
    conf.write_text('site = "sunny-garden"\nbroker = "mqtt://10.0.0.1:1883"\nsigning_key = "/nonexistent/central.key"\n'
                    f'db = "{tmp_path / "real-central.db"}"\nkeepalive_s = 20\nreceive_maximum = 50\n', encoding="utf-8")
    path = ROOT / "tests" / "drills" / "two_gates_hard_passback.yaml"
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "drill", "--json", "--broker", broker.url,
                          "--central", str(conf), str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "expectations met" in res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines == [json.loads(json.dumps(x)) for x in drill.run(drill_file.load(path)).lines]
    assert not (tmp_path / "real-central.db").exists()  # the real central's database was not touched
    retained = Listener(broker.port, topic="#", client_id="retained-check")
    try:
        time.sleep(1.0)
        left = [t for t, _ in retained.messages]
    finally:
        retained.close()
    assert not [t for t in left if t.startswith("gate-drill/")], left


def test_the_drill_cli_refuses_what_it_cannot_do(broker: Broker, tmp_path: Path) -> None:
    gate = [sys.executable, "-m", "gate.cli.main", "drill"]
    conf = tmp_path / "central.toml"
    conf.write_text('site = "x"\nsigning_key = "k"\n', encoding="utf-8")
    one_gate = subprocess.run([*gate, "--central", str(conf), str(SHARED / "drills" / "resident_enters.yaml")],
                              capture_output=True, text=True, cwd=ROOT)
    assert one_gate.returncode == 2 and "--central is for a drill with several gates" in one_gate.stderr
    tls = subprocess.run([*gate, "--broker", "mqtts://127.0.0.1:8883", str(ROOT / "tests" / "drills" / "two_gates_hard_passback.yaml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert tls.returncode == 2 and "needs mqtt://" in tls.stderr


def test_a_cut_relay_refuses_and_an_up_one_relays(broker: Broker) -> None:
    with LinkCut.to_url(broker.url) as link:
        got = Listener(link.port, topic="t/#", client_id="through-relay")
        try:
            assert Listener.wait_for(lambda: got.client.is_connected(), 10)
            link.down()
            assert Listener.wait_for(lambda: not got.client.is_connected(), 10)
            time.sleep(1.0)
            assert not got.client.is_connected()  # reconnects are refused while down
            link.up()
            assert Listener.wait_for(lambda: got.client.is_connected(), 15)
        finally:
            got.close()
