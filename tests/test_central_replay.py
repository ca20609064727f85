"""The office console's policy replay at central over the situations the gates send up
with their decisions (gate/store/events.py upstream_situation, [sync] send_situations;
sync/central/console/policy_data.py replay, gate/core/replay.py's tally), against a real
central on a real mosquitto with simulated gates (drill rehearsals with [sync]).
"""
from __future__ import annotations

import json
from datetime import date
from typing import Any

from gate.config import PolicyConfig
from gate.desk.replay import replay as gate_replay
from gate.drill.file import Step
from gate.drill.runner import Rehearsal
from gate.store.events import MAX_READINGS, upstream_situation, with_situation
from sync import codec
from sync.central import privacy
from sync.central.console import policy_data
from tests.test_central import GateClient, event
from tests.test_console import Client, PASSWORDS, Site, decisions, gate_drill, passes_version, wait_for
from tests.test_console_reports import TZ, site  # noqa: F401  (a fixture: central, its console and gate east, today)
from tests.sync_helpers import trust_central

FEVER_37_5 = PolicyConfig(fever_c=37.5, passback="off")


def _stored(s: Site, gate: str) -> list[dict[str, Any]]:
    return [ev for ev in s.central.store.events(gate) if ev["type"] == "decision"]


def _fever_traffic(s: Site, r: Rehearsal, at: float = 1) -> None:
    """r1 measures 37.4 °C twice (a retest, then refused for fever), r2 36.5 °C, and an
    unknown card; drained to central."""
    r.step(Step(at=at, lane="in", qr="r1"))
    r.step(Step(at=at + 0.5, lane="in", temperature=37.4))
    r.step(Step(at=at + 1.0, lane="in", temperature=37.4))
    r.step(Step(at=at + 20, lane="in", qr="r2"))
    r.step(Step(at=at + 20.5, lane="in", temperature=36.5))
    r.step(Step(at=at + 40, lane="in", card="7777777"))
    assert [d[1:] for d in decisions(r)][-4:] == [("retest", "high_temperature"), ("deny", "fever"), ("allow", "ok"),
                                                   ("deny", "unknown_card")]
    assert r.drain(30)


def _transitions(ts: Any) -> list[tuple[tuple[str, str], tuple[str, str], int, list[list[float]]]]:
    return sorted((t.old, t.new, t.count, [list(e["temperatures"] if isinstance(e, dict) else e.temperatures)
                                           for e in t.examples]) for t in ts if not t.same)


def test_a_fever_line_change_replayed_at_central_is_what_the_gate_replays(site: tuple[Site, str]) -> None:  # noqa: F811
    s, day = site
    east = s.gates["east"]
    assert east.app.sync.link.wait_connected(10)
    wait_for(lambda: passes_version(s, "east") == 2, 20, "the roster at the gate")
    _fever_traffic(s, east)
    wait_for(lambda: len(_stored(s, "east")) == 4, 20, "east's four decisions at central")
    # what central holds: each decision with its situation, the pass in it naming nobody
    for ev in _stored(s, "east"):
        sit = ev["situation"]
        assert sit["gate"] == "east" and sit["direction"] == "in"
        if sit["pass"] is not None:
            assert "id" not in sit["pass"] and "unit" not in sit["pass"]
        text = json.dumps(sit, ensure_ascii=False)
        assert "r1" not in text and "3-2-501" not in text and "王芳" not in text and "1234567" not in text
    refused = [ev for ev in _stored(s, "east") if ev["reason"] == "fever"][0]
    assert refused["situation"]["temperatures"] == [37.4, 37.4] and refused["pass"] == "r1"

    d = date.fromisoformat(day)
    at_central = policy_data.replay(s.central.store.db, FEVER_37_5, d, d, TZ)
    assert at_central.decisions == 4 and at_central.replayed == 4 and at_central.skipped == 0
    changed = {(t.old, t.new): t.count for t in at_central.transitions if not t.same}
    assert changed == {(("deny", "fever"), ("allow", "ok")): 1, (("retest", "high_temperature"), ("allow", "ok")): 1}
    assert at_central.changed == 2 and at_central.unchanged == 2
    fever = next(t for t in at_central.transitions if t.old == ("deny", "fever"))
    assert fever.examples[0]["pass"] == "r1" and fever.examples[0]["temperatures"] == [37.4, 37.4]

    # the same period replayed at the gate, from its own store: the same counts and examples
    store = s.gate_store("east")
    try:
        at_gate = gate_replay(store.conn, FEVER_37_5, d, d, east.app.tz)
    finally:
        store.close()
    assert (at_gate.decisions, at_gate.replayed, at_gate.unchanged, at_gate.changed) == (
        at_central.decisions, at_central.replayed, at_central.unchanged, at_central.changed)
    assert _transitions(at_gate.transitions) == _transitions(at_central.transitions)
    assert not at_gate.not_replayable

    # and the console's page, as staff ask for it
    c = Client(s.url)
    assert c.sign_in("王芳", PASSWORDS["王芳"])[0] == 200
    _, body = c.get("policy")
    doc = policy_data.document(None).replace("fever_c = 37.3", "fever_c = 37.5")
    code, body = c.post("policy/replay", {"csrf": Client.csrf(body), "document": doc, "since": day, "until": day})
    assert code == 200
    assert 'data-old="deny fever" data-new="allow ok" data-count="1"' in body
    assert "37.4/37.4 °C" in body and 'id="not-replayable"' not in body


def test_a_gate_that_keeps_its_situations_is_not_replayable_at_central(site: tuple[Site, str]) -> None:  # noqa: F811
    s, day = site
    r = trust_central(Rehearsal(gate_drill("west"), broker=s.broker.url), [s.key_pub])
    assert r.config.sync is not None
    r.config = r.config.model_copy(update={"sync": r.config.sync.model_copy(update={"send_situations": False})})
    r.app.config = r.config
    west = s._start(r, "west")
    assert west.app.sync.link.wait_connected(10)
    wait_for(lambda: passes_version(s, "west") == 2, 20, "the roster at the gate")
    _fever_traffic(s, west)
    wait_for(lambda: len(_stored(s, "west")) == 4, 20, "west's four decisions at central")
    assert all("situation" not in ev for ev in _stored(s, "west"))
    d = date.fromisoformat(day)
    out = policy_data.replay(s.central.store.db, FEVER_37_5, d, d, TZ)
    # the unknown card is refused first by every policy: replayed even so; the rest are not
    assert out.decisions == 4 and out.replayed == 1 and out.changed == 0
    assert out.not_replayable == {"situation": 3}
    assert out.not_replayable_by == {("retest", "high_temperature"): 1, ("deny", "fever"): 1, ("allow", "ok"): 1}
    # the gate keeps them, and replays them itself
    store = s.gate_store("west")
    try:
        at_gate = gate_replay(store.conn, FEVER_37_5, d, d, west.app.tz)
    finally:
        store.close()
    assert at_gate.replayed == 4 and at_gate.changed == 2


def test_an_erased_pass_leaves_nothing_personal_in_situations_at_central(site: tuple[Site, str]) -> None:  # noqa: F811
    s, day = site
    east = s.gates["east"]
    assert east.app.sync.link.wait_connected(10)
    wait_for(lambda: passes_version(s, "east") == 2, 20, "the roster at the gate")
    _fever_traffic(s, east)
    wait_for(lambda: len(_stored(s, "east")) == 4, 20, "east's decisions at central")
    r1 = [ev for ev in _stored(s, "east") if ev["pass"] == "r1"]
    assert len(r1) == 2 and all(ev.get("situation") for ev in r1)
    privacy.erase(s.central.store, "r1", "admin")
    after = {ev["id"]: ev for ev in _stored(s, "east")}
    for ev in r1:
        kept = after[ev["id"]]
        assert kept["pass"] is None and "situation" not in kept  # the pass's validity and health went too
        assert kept["decision"] == ev["decision"] and kept["reason"] == ev["reason"]  # counted as before
    others = [ev for ev in after.values() if ev["id"] not in {e["id"] for e in r1}]
    assert all(ev.get("situation") for ev in others)
    raw = "\n".join(b for (b,) in s.central.store.db.all("SELECT body FROM events"))
    assert '"r1"' not in raw and "3-2-501" not in raw and "王芳" not in raw
    # its decisions are no longer replayable, at central as at the gate after its erasure
    d = date.fromisoformat(day)
    out = policy_data.replay(s.central.store.db, FEVER_37_5, d, d, TZ)
    assert out.not_replayable == {"situation": 2} and out.replayed == 2
    # a late event of the erased pass, dated before the erasure, is stored without its situation
    late = dict(r1[0], id="00000000-0000-4000-8000-000000000001", seq=99)
    assert "situation" not in privacy.scrub_incoming(s.central.store, late)


def test_an_old_event_without_a_situation_still_stores_and_the_largest_situation_fits(site: tuple[Site, str]) -> None:  # noqa: F811
    s, _day = site
    g = GateClient(s.broker, "old")
    try:
        old = event("old", 1)
        rc = g.publish("gate/v1/drill/old/events", old)
        assert not rc.is_failure
        wait_for(lambda: s.central.store.events("old"), 20, "the old gate's event at central")
        assert s.central.store.events("old")[0] == old
    finally:
        g.close()
    # the largest situation the schema allows: 32 attributes of 200 CJK characters, 16 readings
    sit = {
        "direction": "in", "now": "2026-11-22T08:00:00+08:00", "problem": None, "temperatures": [37.4] * MAX_READINGS,
        "needs_temperature": True, "timed_out": False, "inside_since": None, "draw": 0.5, "needs_second_factor": False,
        "has_second_factor": False, "fever_held": False, "lane": "l" * 64, "gate": "g" * 64, "lane_schedule": "s" * 64,
        "door_mode": "normal", "policy": {"version": 2**62, "fever_c": 37.3},
        "pass": {"id": "p" * 128, "unit": "u" * 64, "category": "c" * 32, "valid_from": None,
                 "valid_until": "2026-11-22T08:00:00+08:00", "observation_until": None, "pcr_at": None,
                 "health_code": "green", "revoked": False, "listed": True,
                 "attributes": {f"a{i:02d}" + "x" * 61: "测" * 200 for i in range(32)}},
    }
    ev = event("g" * 64, 2**62)
    payload = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
    text = with_situation(payload, sit)
    assert '"situation"' in text and len(text.encode("utf-8")) <= codec.MAX_BYTES["event"]
    got = codec.decode(text.encode("utf-8"), "event")
    assert "id" not in got["situation"]["pass"] and "unit" not in got["situation"]["pass"]
    # more readings than the schema takes: the event goes without it, never refused
    assert upstream_situation({**sit, "temperatures": [36.5] * (MAX_READINGS + 1)}) is None
