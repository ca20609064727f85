"""Door modes per lane (normal, open, locked): scheduled, set by the guard or central,
forced open by the fire alarm; every change an event with who and why."""
from __future__ import annotations

import textwrap

from gate.drill import runner as drill

from gate.drill import file as drill_file
from gate.drill.file import Step
from gate.core.events import GuardAnswer, SetDoorMode

BASE = """
    name: door modes
    start: "2026-11-23T06:55:00+08:00"   # a Monday
    config:
      policy:
        schedules:
          rush: [{days: [mon, tue, wed, thu, fri], hours: ["07:00-08:30"]}]
          lockdown: [{days: [mon, tue, wed, thu, fri, sat, sun], hours: ["23:00-05:00"]}]
      door:
        modes:
          - {mode: open, schedule: rush, lanes: [in]}
          - {mode: locked, schedule: lockdown}
      lanes:
        - {name: in, direction: in, camera: {driver: sim}, thermometer: {driver: sim},
           relay: {driver: sim, pin: 22}, door_contact: {driver: sim, pin: 27, debounce_ms: 0},
           fire_alarm: {driver: sim, pin: 4, debounce_ms: 0}}
        - {name: out, direction: out, camera: {driver: sim}, relay: {driver: sim, pin: 23},
           exit_button: {driver: sim, pin: 24, debounce_ms: 0}}
    passes:
      - {id: r1, holder: 王芳, unit: 3-2-501, category: resident}
    steps: []
"""


def rehearsal(text: str = BASE) -> drill.Rehearsal:
    return drill.Rehearsal(drill_file.parse(textwrap.dedent(text)))


def modes(r: drill.Rehearsal) -> list[tuple[str, str, str, str]]:
    store = r.app.open_store()
    try:
        out = []
        for e in store.events():
            if e["type"] == "mode":
                out.append((e["lane"], e["mode"], e["who"], e["why"]))
        return out
    finally:
        store.close()


def lines(r: drill.Rehearsal, kind: str) -> list[dict]:
    return [line for line in r.lines if line["type"] == kind]


def test_the_morning_rush_holds_the_door_open_on_its_schedule_and_ends_locked() -> None:
    with rehearsal() as r:
        r.advance(6 * 60)  # 07:01
        assert r.app.lanes["in"].door_mode == "open" and r.app.lanes["in"].unlocked
        assert r.app.lanes["out"].door_mode == "normal"  # the rush is the entry lane's only
        # Held open: people walk through; no forced door, no held-door alarm, no relock.
        r.step(Step(at=400, lane="in", door="open"))
        r.advance(400 + 120)
        assert not lines(r, "alarm")
        r.step(Step(at=600, lane="in", door="closed"))
        assert r.app.lanes["in"].unlocked
        r.advance(96 * 60)  # 08:31: the rush is over, the door locks
        assert r.app.lanes["in"].door_mode == "normal" and not r.app.lanes["in"].unlocked
        assert [(line["t"], line["action"]) for line in lines(r, "door")] == [(300.0, "unlock"), (5700.0, "lock")]
        assert modes(r) == [("in", "open", "schedule", "rush"), ("in", "normal", "schedule", "scheduled mode ended")]


def test_locked_means_the_guard_opens_and_the_exit_button_still_does() -> None:
    with rehearsal(BASE.replace("2026-11-23T06:55:00", "2026-11-23T23:30:00")) as r:
        assert r.app.lanes["in"].door_mode == "locked"  # in force from the start
        r.step(Step(at=1, lane="in", qr="r1"))
        r.step(Step(at=1.5, lane="in", temperature=36.5))
        d = [line for line in lines(r, "decision")]
        assert (d[-1]["decision"], d[-1]["reason"]) == ("challenge", "door_locked")
        assert not lines(r, "door")
        r.app.lanes["in"].post(GuardAnswer("confirm", who="王师傅"))
        r.app.join()
        assert lines(r, "decision")[-1]["reason"] == "guard_confirmed"
        assert lines(r, "door")[-1]["action"] == "unlock"
        r.step(Step(at=30, lane="out", exit_button=True))  # free egress is a safety rule
        assert lines(r, "decision")[-1]["reason"] == "exit_button"
        assert [line["lane"] for line in lines(r, "door") if line["action"] == "unlock"] == ["in", "out"]


def test_the_guard_sets_a_mode_with_a_reason_and_the_schedule_takes_over_at_its_next_change() -> None:
    with rehearsal() as r:
        r.app.lanes["in"].post(SetDoorMode("locked", who="王师傅", why="suspicious person outside"))
        r.app.join()
        assert r.app.lanes["in"].door_mode == "locked"
        r.advance(6 * 60)  # 07:01: the rush starts and opens it
        assert r.app.lanes["in"].door_mode == "open"
        assert modes(r)[:2] == [("in", "locked", "王师傅", "suspicious person outside"), ("in", "open", "schedule", "rush")]


def test_the_fire_alarm_opens_every_lane_is_an_alarm_and_nobody_can_lock_it() -> None:
    with rehearsal(BASE.replace("2026-11-23T06:55:00", "2026-11-23T23:30:00")) as r:
        sim = r.app.devices["in"].sim_inputs["fire_alarm"]
        sim.set(True)
        assert sim.settle(r.app.devices["in"].inputs["fire_alarm"], 10)
        r.app.join()
        assert {lane.door_mode for lane in r.app.lanes.values()} == {"open"}
        assert all(lane.unlocked for lane in r.app.lanes.values())
        assert [a["kind"] for a in lines(r, "alarm")] == ["fire", "fire"]
        r.app.lanes["in"].post(SetDoorMode("locked", who="王师傅", why="test"))
        r.app.join()
        assert r.app.lanes["in"].door_mode == "open"
        sim.set(False)
        assert sim.settle(r.app.devices["in"].inputs["fire_alarm"], 10)
        r.app.join()
        # Cleared: back to what the schedules say (the night lockdown).
        assert {lane.door_mode for lane in r.app.lanes.values()} == {"locked"}
        whys = [(lane, mode, who) for lane, mode, who, _ in modes(r)]
        assert ("in", "open", "fire alarm") in whys and ("out", "locked", "fire alarm") in whys
