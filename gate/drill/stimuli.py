"""What a drill does to a gate: passes signed with the drill's own keys and seeded into
the store, and each step turned into a stimulus of the simulated devices (a QR code in
front of the camera, a GY-MCU90614 frame on the pty, a Wiegand train, an input's
level), waited on until the real driver has digested it and the lane has decided."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from gate.app.gate_app import GateApp, LaneDevices
from gate.core.clock import DrillClock
from gate.drill.file import DrillPass, Step
from gate.core.events import AckAlarm, GuardAnswer, Tick
from gate.core.tokens import PassToken, sign

SETTLE_S = 10.0  # real seconds a driver may take to digest one stimulus before the drill fails


class DrillError(Exception):
    pass



class Keys:
    """The drill's central key (trusted) and a stranger's key (for forgeries)."""

    def __init__(self, directory: Path) -> None:
        self.central = Ed25519PrivateKey.generate()
        self.unknown = Ed25519PrivateKey.generate()
        self.central_pub = directory / "central.pub"
        self.central_pub.write_bytes(
            self.central.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, p: DrillPass) -> str:
        key = self.central if p.signed_by == "central" else self.unknown
        return sign(PassToken(p.id, p.category, p.unit or "", p.valid_from, p.valid_until), key)


def pass_rows(passes: list[DrillPass]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows, cards = [], {}
    for p in passes:
        if not p.in_table or p.removed:
            continue
        rows.append(p.model_dump(exclude={"in_table", "signed_by", "card", "removed"}))
        if p.card:
            cards[p.card] = p.id
    return rows, cards


def seed_store(app: GateApp, passes: list[DrillPass]) -> None:
    """The drill's pass table; a removed pass leaves the tombstone central would send."""
    store = app.open_store()
    try:
        rows, cards = pass_rows(passes)
        removed = [p for p in passes if p.removed]
        # A removed pass was in the table first: its tombstone keeps its category, as central's does.
        rows += [p.model_dump(exclude={"in_table", "signed_by", "card", "removed"}) for p in removed]
        cards |= {p.card: p.id for p in removed if p.card}  # its card was bound to it, and stays refused
        store.upsert_passes(rows, cards)
        if removed:
            store.remove_passes([p.id for p in removed])
    finally:
        store.close()


# The sensor tells an object from the air by its being 3 °C warmer (drivers/thermometer/
# measurement.py presence_delta_c); a drill's reading must clear that with room to spare.
_OVER_AIR_C = 4.0


def cold_enough(body_c: float, dev: LaneDevices) -> float:
    """The air temperature at which the sensor sees an object reading ``body_c``: the
    lane's ambient, or a colder day when the reading is too cool to stand out from it
    (a drill's 20 °C is a cold phone held up in winter, not nothing)."""
    ambient = dev.ambient_c
    for _ in range(3):  # the compensation's ambient term moves the skin value a little
        skin = dev.compensation.skin_for(body_c, ambient)
        if skin - ambient >= _OVER_AIR_C:
            break
        ambient = skin - _OVER_AIR_C
    return ambient


def apply_step(app: GateApp, step: Step, tokens: dict[str, str], *, settle: bool = True) -> None:
    """Drive the simulated device a step names (used by drills and the live demo)."""
    lane = app.lanes.get(step.lane)
    if lane is None:
        raise DrillError(f"step at {step.at}: no lane named {step.lane!r} (lanes: {', '.join(app.lanes)})")
    dev: LaneDevices = app.devices[step.lane]
    kind, value = step.kind, step.value

    def need(obj: Any, what: str) -> Any:
        if obj is None:
            raise DrillError(f"step at {step.at}: lane {step.lane!r} has no simulated {what}")
        return obj

    assert step.lane is not None  # link steps are the site's, not a lane's

    def wait(ok: bool, what: str) -> None:
        if settle and not ok:
            raise DrillError(f"step at {step.at}: the {what} driver did not take the input within {SETTLE_S:g} s")

    if kind in ("qr", "qr_text"):
        cam = need(dev.camera if hasattr(dev.camera, "show") else None, "camera")
        cam.show(tokens[value] if kind == "qr" else value, frames=3)
        wait(cam.settle(dev.scanner, SETTLE_S) if settle else True, "camera")
    elif kind == "temperature":
        sim = need(dev.sim_thermometer, "thermometer")
        ambient = cold_enough(value, dev)
        usual, sim.ambient_c = sim.ambient_c, ambient
        try:
            sim.present(dev.compensation.skin_for(value, ambient))
            wait(sim.settle(dev.thermometer, SETTLE_S) if settle else True, "thermometer")
        finally:
            sim.ambient_c = usual
    elif kind == "card":
        sim = need(dev.sim_wiegand, "card reader")
        sim.swipe(int(value))
        wait(sim.settle(dev.wiegand, SETTLE_S) if settle else True, "card reader")
    elif kind == "presence":
        _set_input(dev, "pir", value, settle, wait)
    elif kind == "door":
        _set_input(dev, "door_contact", value == "open", settle, wait)
    elif kind == "exit_button":
        _set_input(dev, "exit_button", True, settle, wait)
        _set_input(dev, "exit_button", False, settle, wait)
    elif kind == "guard":
        if value == "ack" or (value == "confirm" and not lane.challenges):
            # The guard acknowledges what the screen shows: every open alarm of the lane
            # (a fever ends its hold, a card sweep its slow answers). A confirm with no
            # check open is the guard's "seen" to the alarm on the screen.
            store = app.open_store()
            try:
                for alarm_id, alarm_kind in store.open_alarms(step.lane):
                    lane.post(AckAlarm(alarm_id, alarm_kind, who="drill"))
            finally:
                store.close()
        else:
            lane.post(GuardAnswer(value, who="drill"))
    if settle:
        lane.join()


def _set_input(dev: LaneDevices, name: str, active: bool, settle: bool, wait: Callable[[bool, str], None]) -> None:
    sim = dev.sim_inputs.get(name)
    if sim is None:
        raise DrillError(f"this lane has no simulated {name.replace('_', ' ')}")
    sim.set(active)
    if settle:
        wait(sim.settle(dev.inputs[name], SETTLE_S), name.replace("_", " "))


def _fire_timers(
    apps: list[GateApp], clock: DrillClock, until: datetime, after: Callable[[], None] = lambda: None
) -> None:
    """Fire every lane timer due before `until`, each at its own moment, in time order;
    `after` runs after each (the site's news travels). A timer due exactly at `until`
    waits for what happens then: a reading at the 10th second of a 10 s wait counts,
    a door closed at the 30th second of held_s is not held open (the lane fires it
    right after that event, if it is still due)."""
    lanes = [lane for app in apps for lane in app.lanes.values()]
    for _ in range(100_000):
        due = [d for lane in lanes if (d := lane.next_deadline()) is not None and d < until]
        if not due:
            return
        moment = min(due)
        if moment > clock.now():
            clock.set_time(moment)
        after()  # a live link is live at this moment too
        for lane in lanes:
            lane.post(Tick())
        for app in apps:
            app.join()
        after()
    raise DrillError("lane timers keep firing without end")
