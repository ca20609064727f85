"""The lane as DRILLS.md now says it behaves, beyond what a drill file can state:
the guard's acknowledgement ends a fever hold and a card sweep, alarms reach the
store and the outbox, community rules fail closed and replay, and drill files say
clearly what is wrong with them."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.drill import runner as drill

from gate.drill import file as drill_file

from gate.core import rules
from gate.config import ConfigError, PolicyConfig, from_dict
from gate.drill.file import Step
from gate.core.events import AckAlarm
from gate.core.policy import Situation, decide
from gate.core.records import PassRecord
from gate.desk.replay import replay
from tests.conftest import ROOT

TZ = ZoneInfo("Asia/Shanghai")


def rehearsal(text: str) -> drill.Rehearsal:
    return drill.Rehearsal(drill_file.parse(textwrap.dedent(text)))


def decisions(r: drill.Rehearsal) -> list[dict]:
    return [line for line in r.lines if line["type"] == "decision"]


FEVER = """
    name: fever, then the guard acknowledges
    start: "2026-11-22T09:00:00+08:00"
    passes:
      - {id: n2, holder: 孙伟, unit: 6-2-202, category: renter}
    steps: []
"""


def test_the_guards_acknowledgement_ends_a_fever_hold() -> None:
    with rehearsal(FEVER) as r:
        for s in (Step(at=0, lane="in", qr="n2"), Step(at=0.5, lane="in", temperature=37.8),
                  Step(at=5, lane="in", temperature=37.9), Step(at=30, lane="in", qr="n2"),
                  Step(at=30.5, lane="in", temperature=36.6)):
            r.step(s)
        assert [d["reason"] for d in decisions(r)] == ["high_temperature", "fever", "fever_hold"]
        (alarm,) = [rec for rec in r.records if rec.type == "alarm" and rec.kind == "fever"]
        r.app.lanes["in"].post(AckAlarm(alarm.id, kind="fever", who="王师傅"))
        r.app.join()
        r.step(Step(at=60, lane="in", qr="n2"))
        r.step(Step(at=60.5, lane="in", temperature=36.6))
        assert decisions(r)[-1]["decision"] == "allow"


def test_a_fever_hold_outlives_a_restart_of_the_gate(tmp_path: Path) -> None:
    d = drill_file.parse(textwrap.dedent(FEVER))
    db = tmp_path / "gate.db"
    with drill.Rehearsal(d, store_path=db) as r:
        for s in (Step(at=0, lane="in", qr="n2"), Step(at=0.5, lane="in", temperature=37.8),
                  Step(at=5, lane="in", temperature=37.9)):
            r.step(s)
    with drill.Rehearsal(d, store_path=db) as r:
        r.step(Step(at=60, lane="in", qr="n2"))
        r.step(Step(at=60.5, lane="in", temperature=36.6))
        assert decisions(r)[-1]["reason"] == "fever_hold"


SWEEP = """
    name: a sweep, then the guard acknowledges
    start: "2026-11-22T14:00:00+08:00"
    passes:
      - {id: r8, holder: 吴磊, unit: 8-1-808, category: resident, card: "5500001"}
    steps: []
"""


def test_a_card_sweep_is_stored_sent_and_ends_when_the_guard_acknowledges() -> None:
    with rehearsal(SWEEP) as r:
        for i in range(5):
            r.step(Step(at=i * 0.5, lane="in", card=str(9000001 + i)))
        (alarm,) = [rec for rec in r.records if rec.type == "alarm" and rec.kind == "card_sweep"]
        r.step(Step(at=2.6, lane="in", card="9000009"))  # dropped: within 2 s
        assert len(decisions(r)) == 5
        assert r.app.lanes["in"].counters.snapshot().get("sweep_throttled") == 1
        store = r.app.open_store()
        try:
            stored = [e for e in store.events() if e["type"] == "alarm"]
            outbox = store.conn.execute("SELECT count(*) FROM outbox WHERE event_id = ?", (alarm.id,)).fetchone()[0]
        finally:
            store.close()
        assert [e["kind"] for e in stored] == ["card_sweep"] and outbox == 1
        r.app.lanes["in"].post(AckAlarm(alarm.id, kind="card_sweep", who="王师傅"))
        r.app.join()
        r.step(Step(at=3.0, lane="in", card="5500001"))  # full speed again: answered at once
        assert [line["key"] for line in r.lines if line["type"] == "prompt"][-1] == "measure"
        assert r.app.lanes["in"].counters.snapshot().get("sweep_throttled") == 1


def test_a_night_presence_alarm_is_stored_and_sent() -> None:
    with rehearsal("""
        name: night
        start: "2026-11-22T23:00:00+08:00"
        steps: []
    """) as r:
        r.step(Step(at=0, lane="in", presence=True))
        r.advance(10)
        store = r.app.open_store()
        try:
            rows = store.conn.execute(
                "SELECT e.kind, o.state FROM events e JOIN outbox o ON o.event_id = e.id WHERE e.type = 'alarm'"
            ).fetchall()
        finally:
            store.close()
        assert rows == [("night_presence", "pending")]


# ---------------------------------------------------------------- rules


def situation(p: PassRecord, direction: str = "in", temps: tuple[float, ...] = (36.5,)) -> Situation:
    return Situation(direction=direction, now=datetime(2026, 11, 22, 6, 30, tzinfo=TZ), pass_=p,
                     temperatures=temps, lane="in", gate="east")


def policy_with(*rule: dict) -> PolicyConfig:
    return PolicyConfig.model_validate({"rules": list(rule)})


PROMPT = {"zh": "不行", "en": "No."}


def test_rules_see_the_local_time_and_the_gate() -> None:
    early = policy_with({"name": "early_staff", "when": "time.hour < 7 && gate == 'east'",
                         "require": "pass.category == 'staff'", "prompt": PROMPT})
    assert decide(situation(PassRecord("r", "resident")), early).rule == "early_staff"
    assert decide(situation(PassRecord("s", "staff")), early).decision == "allow"
    # `now` is a CEL timestamp in the gate's own offset (an IANA zone is not a CEL value).
    by_now = policy_with({"name": "t", "require": "now > timestamp('2026-11-21T22:29:00Z')", "prompt": PROMPT})
    assert decide(situation(PassRecord("r", "resident")), by_now).decision == "allow"  # 06:30 +08 is 22:30 UTC
    too_late = policy_with({"name": "t", "require": "now > timestamp('2026-11-21T22:31:00Z')", "prompt": PROMPT})
    assert decide(situation(PassRecord("r", "resident")), too_late).reason == "rule"


def test_a_rule_that_cannot_be_evaluated_refuses_rather_than_admits() -> None:
    broken = policy_with({"name": "typed", "when": "pass.attributes.doses > 'x'",
                          "require": "true", "prompt": PROMPT})
    p = PassRecord("r", "resident", attributes={"doses": 2})
    # when: a type error counts as applying; require true: allowed - the when alone cannot lock out.
    assert decide(situation(p), broken).decision == "allow"
    broken_require = policy_with({"name": "typed", "require": "pass.attributes.doses > 'x'", "prompt": PROMPT})
    assert decide(situation(p), broken_require).rule == "typed"
    missing = policy_with({"name": "m", "when": "pass.attributes.building == 'A'", "require": "false", "prompt": PROMPT})
    assert decide(situation(PassRecord("r", "resident")), missing).decision == "allow"  # no building: not concerned


def test_rules_come_after_every_built_in_check_and_only_on_entry_by_default() -> None:
    strict = policy_with({"name": "never", "require": "false", "prompt": PROMPT})
    assert decide(situation(PassRecord("r", "resident"), temps=(38.0, 38.1)), strict).reason == "fever"
    assert decide(situation(PassRecord("r", "resident"), direction="out"), strict).decision == "allow"
    both = policy_with({"name": "never", "require": "false", "prompt": PROMPT, "direction": "both"})
    assert decide(situation(PassRecord("r", "resident"), direction="out"), both).reason == "rule"


def test_a_wrong_rule_is_an_error_naming_the_rule_and_the_position() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({"policy": {"rules": [{"name": "vaccinated", "require": "pass.attributes.doses >= ", "prompt": PROMPT}]}},
                  "gate.toml")
    text = str(err.value)
    assert "policy.rules[0].require" in text and "1:26" in text
    with pytest.raises(ConfigError) as err:
        from_dict({"policy": {"rules": [{"name": "r", "require": "person.age > 3", "prompt": PROMPT}]}}, "gate.toml")
    assert "unknown name person" in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_dict({"policy": {"rules": [{"name": "r", "require": "true", "prompt": PROMPT}] * 2}}, "gate.toml")
    assert "rule names repeat: r" in str(err.value)


def test_rule_evaluation_is_cheap() -> None:
    # 20 rules on one pass: each evaluation is microseconds (the bench measures decisions).
    ctx = rules.context(rules.Facts(PassRecord("r", "resident", attributes={"d": 2}), "in", "in", "g",
                                    datetime.now(timezone.utc)))
    assert rules.holds("pass.attributes.d >= 2 && pass.category in ['resident', 'renter']", ctx, "x") is True
    assert rules.holds("pass.attributes.nope >= 2", ctx, "x") is False


def test_policy_replay_replays_rules(tmp_path: Path) -> None:
    d = drill_file.parse(textwrap.dedent("""
        name: recorded without rules
        start: "2026-11-22T10:00:00+08:00"
        passes:
          - {id: v1, holder: 吕刚, unit: 2-2-201, category: renter, attributes: {vaccine_doses: 1}}
          - {id: v2, holder: 何静, unit: 2-2-202, category: resident, attributes: {vaccine_doses: 2}}
        steps:
          - {at: 0.0, lane: in, qr: v1}
          - {at: 0.5, lane: in, temperature: 36.5}
          - {at: 20.0, lane: in, qr: v2}
          - {at: 20.5, lane: in, temperature: 36.5}
    """))
    db = tmp_path / "gate.db"
    with drill.Rehearsal(d, store_path=db) as r:
        r.run()
        store = r.app.open_store()
        try:
            result = replay(store.conn, policy_with({"name": "vaccinated", "require": "pass.attributes.vaccine_doses >= 2",
                                                     "prompt": PROMPT}),
                            date(2026, 11, 22), date(2026, 11, 22), TZ).to_json()
        finally:
            store.close()
    flipped = [(t["old"]["reason"], t["new"]["reason"], t["count"]) for t in result["transitions"]]
    assert flipped == [("ok", "rule", 1)], result


# ---------------------------------------------------------------- drill files


def test_forbid_fails_the_drill_and_names_what_happened(tmp_path: Path) -> None:
    f = tmp_path / "forbid.yaml"
    f.write_text(textwrap.dedent("""
        name: a resident enters, which this drill forbids
        start: "2026-11-22T08:00:00+08:00"
        passes:
          - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
        steps:
          - {at: 0.0, lane: in, qr: r1}
          - {at: 0.5, lane: in, temperature: 36.5}
        forbid:
          - {type: door, action: unlock}
    """), encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "drill", str(f)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1
    assert 'forbidden {"type": "door", "action": "unlock"} happened' in res.stderr


@pytest.mark.parametrize("text, says", [
    ('start: 2026-02-30T08:00:00+08:00\nsteps: []\n', "start: Input should be a valid datetime"),
    ('start: "2026-11-22T08:00:00+08:00"\nsteps:\n  - {at: 0, gate: east, lane: in, presence: true}\n',
     "names gate 'east' but the drill has no gates"),
    ('start: "2026-11-22T08:00:00+08:00"\ngates: [east, west]\nsteps:\n  - {at: 0, lane: in, presence: true}\n',
     "every step names its gate"),
    ('start: "2026-11-22T08:00:00+08:00"\ngates: [east, west]\nsteps:\n  - {at: 0, gate: north, lane: in, presence: true}\n',
     "gate 'north' is not one of gates"),
    ('start: "2026-11-22T08:00:00+08:00"\ngates: [east, west]\nsteps:\n  - {at: 0, gate: east, lane: in, link: down}\n',
     "a link step is about a whole gate"),
])
def test_drill_file_mistakes_are_named_without_a_traceback(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\n" + text, encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "drill", str(f)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert says in res.stderr and "Traceback" not in res.stderr


def test_several_gates_print_their_gate_and_report_each(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "drill", "--json", "--report", str(ROOT / "tests" / "drills" / "two_gates_hard_passback.yaml")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert {line["gate"] for line in lines if line["type"] != "report"} == {"east", "west"}
    reports = [line for line in lines if line["type"] == "report"]
    assert [r["gate"] for r in reports] == ["east", "west"]
    assert reports[1]["denied"] == {"passback": 1}


# ---------------------------------------------------------------- reports and the policy in force


def test_the_report_judges_each_reading_by_the_policy_it_was_decided_under(tmp_path: Path) -> None:
    from gate.core.events import ApplyPolicy
    from gate.store.daily import daily
    from gate.desk.report_doc import collect, policy_note, write_html

    d = drill_file.parse(textwrap.dedent("""
        name: the fever line is raised at noon
        start: "2026-11-22T09:00:00+08:00"
        config:
          policy:
            version: 3
            rules:
              - {name: vaccinated, require: "pass.attributes.vaccine_doses >= 2", prompt: {zh: 请接种, en: Vaccinate.}}
        passes:
          - {id: a, holder: 甲, unit: 1-1-101, category: resident, attributes: {vaccine_doses: 2}}
          - {id: b, holder: 乙, unit: 1-1-102, category: resident, attributes: {vaccine_doses: 2}}
          - {id: c, holder: 丙, unit: 1-1-103, category: resident, attributes: {vaccine_doses: 2}}
          - {id: u, holder: 丁, unit: 1-1-104, category: resident}
        steps: []
    """))
    with drill.Rehearsal(d) as r:
        for s in (Step(at=0, lane="in", qr="a"), Step(at=0.5, lane="in", temperature=37.6),
                  Step(at=5, lane="in", temperature=37.7), Step(at=60, lane="in", qr="u"),
                  Step(at=60.5, lane="in", temperature=36.5)):
            r.step(s)
        raised = r.config.policy.model_copy(update={"version": 4, "fever_c": 37.8})
        for lane in r.app.lanes.values():
            lane.post(ApplyPolicy(raised))
        r.app.join()
        for s in (Step(at=3 * 3600, lane="in", qr="b"), Step(at=3 * 3600 + 0.5, lane="in", temperature=37.6),
                  Step(at=3 * 3600 + 60, lane="in", qr="c"), Step(at=3 * 3600 + 60.5, lane="in", temperature=36.4)):
            r.step(s)
        store = r.app.open_store()
        try:
            details = collect(store, "2026-11-22", raised)
            report = daily(store, "2026-11-22")
            write_html(details, raised, tmp_path / "day.html")
        finally:
            store.close()
    # The morning's 37.6 and 37.7 were over the 37.3 line then; the afternoon's 37.6 is under 37.8.
    assert list(zip(details.temperatures, details.high)) == [(37.6, True), (37.7, True), (36.5, False), (37.6, False), (36.4, False)]
    assert [(v, line) for _, v, line in details.policies] == [(3, 37.3), (4, 37.8)]
    assert "policy changed during the day" in policy_note(details) and "37.3 → 37.8" in policy_note(details)
    assert "policy changed during the day" in (tmp_path / "day.html").read_text(encoding="utf-8")
    assert report["rules"] == {"vaccinated": 1} and report["denied"]["rule"] == 1


def test_the_presence_sensor_wakes_the_camera(tmp_path: Path) -> None:
    """Someone in front of the lane (PIR): the scanner decodes every frame, not only the
    frames that changed (drivers/qr_idle.py); gone: back to idle."""
    with rehearsal("""
        name: pir wakes the camera
        start: "2026-11-22T10:00:00+08:00"
        steps: []
    """) as r:
        scanner = r.app.devices["in"].scanner
        assert scanner.idle is not None and not scanner.idle.present
        r.step(Step(at=1, lane="in", presence=True))
        assert scanner.idle.present
        r.step(Step(at=5, lane="in", presence=False))
        assert not scanner.idle.present
