"""The door of one lane: the relay, the door contact, the relock and held-door
timers, and the door mode.

Modes: `normal` (a credential opens it for `door.unlock_s`), `open` (held unlocked:
a morning rush, an evacuation, a fire alarm) and `locked` (nobody in on a
credential alone: the policy turns an entry into a guard check, and the guard
opens). Every change of mode is an event with who and why. Runs in the lane's
engine thread only, like the lane itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from gate.core import schedules
from gate.config import DoorSection, PolicyConfig
from gate.core.records import DoorRecord, LaneRecord, ModeRecord

MODES = ("normal", "open", "locked")


class RelayLike(Protocol):
    def unlock(self) -> None: ...
    def lock(self) -> None: ...


def after(at: datetime, seconds: float) -> datetime:
    """A deadline `seconds` of real time after `at`. In UTC: local-time arithmetic
    would keep a door unlocked an extra hour across a daylight-saving change."""
    return at.astimezone(timezone.utc) + timedelta(seconds=seconds)


@dataclass
class DoorState:
    unlocked: bool = False
    relock_at: datetime | None = None
    door_open: bool = False
    opened_while_unlocked: bool = False
    held_at: datetime | None = None
    mode: str = "normal"
    fire: bool = False  # the fire-alarm input is active: held open, whatever else says
    scheduled: str = "normal"  # the mode the schedules gave last
    mode_check_at: datetime | None = None  # when the schedules may next change their answer


class DoorControl:
    def __init__(
        self,
        lane: str,
        relay: RelayLike | None,
        cfg: DoorSection,
        emit: Callable[[LaneRecord], None],
        alarm: Callable[[str, datetime, str], object],
        say: Callable[[str, datetime], None],
    ) -> None:
        self.lane = lane
        self.relay = relay
        self.cfg = cfg
        self._emit = emit
        self._alarm = alarm
        self._say = say
        self.s = DoorState()

    # ------------------------------------------------------------ relay

    def unlock(self, at: datetime) -> DoorRecord | None:
        """Tell the relay now; return the door event for the caller to record once the
        prompt has started (the decision itself is already committed)."""
        if self.relay is None:
            return None
        if self.s.mode == "open":
            return None  # already held unlocked: nothing to time
        self.relay.unlock()
        self.s.relock_at = after(at, self.cfg.unlock_s)
        if self.s.unlocked:
            return None
        self.s.unlocked = True
        self.s.opened_while_unlocked = False
        return DoorRecord(at=at, lane=self.lane, action="unlock")

    def lock(self, at: datetime) -> None:
        if self.relay is None or not self.s.unlocked or self.s.mode == "open":
            self.s.relock_at = None
            return
        self.relay.lock()  # if this raises, relock_at stays set and the next timer pass tries again
        self.s.relock_at = None
        self.s.unlocked = False
        self._emit(DoorRecord(at=at, lane=self.lane, action="lock"))

    # ------------------------------------------------------------ mode

    def set_mode(self, mode: str, at: datetime, who: str, why: str) -> bool:
        """Change the mode (an event with who and why); False if it already was."""
        if mode not in MODES:
            raise ValueError(f"door mode {mode!r}: expected one of {', '.join(MODES)}")
        before = self.s.mode
        if mode == before:
            return False
        self._emit(ModeRecord(at=at, lane=self.lane, mode=mode, previous=before, who=who, why=why))
        self.s.mode = mode
        if mode == "open" and self.relay is not None:
            self.relay.unlock()
            self.s.relock_at = None
            self.s.held_at = None  # held open on purpose
            if not self.s.unlocked:
                self.s.unlocked = True
                self._emit(DoorRecord(at=at, lane=self.lane, action="unlock"))
        elif before == "open":
            self.s.opened_while_unlocked = False
            self.lock(at)
            if self.s.door_open:
                self.s.held_at = after(at, self.cfg.held_s)
        return True

    def manual(self, mode: str, at: datetime, who: str, why: str) -> bool:
        """The guard or central sets the mode; it holds until the next scheduled change."""
        if self.s.fire and mode != "open":
            return False  # nobody locks the doors while the fire alarm is on
        return self.set_mode(mode, at, who, why)

    def fire(self, active: bool, at: datetime, policy: PolicyConfig) -> None:
        if active == self.s.fire:
            return
        self.s.fire = active
        if active:
            self._alarm("fire", at, "fire alarm input active: every door held open")
            self.set_mode("open", at, "fire alarm", "fire alarm input active")
        else:
            mode, _ = self.scheduled_mode(at, policy)
            self.s.scheduled = mode
            self.set_mode(mode, at, "fire alarm", "fire alarm cleared")
            self.s.mode_check_at = None

    def scheduled_mode(self, now: datetime, policy: PolicyConfig) -> tuple[str, str]:
        """The mode the door.modes schedules give this lane now, and which schedule."""
        for m in self.cfg.modes:
            if (not m.lanes or self.lane in m.lanes) and schedules.allows(policy.schedules, policy.holidays, m.schedule, now):
                return m.mode, m.schedule
        return "normal", ""

    def follow_schedule(self, now: datetime, policy: PolicyConfig) -> None:
        """At a moment the schedules may change their answer: take the mode they give."""
        s = self.s
        if not self.cfg.modes or s.fire or (s.mode_check_at is not None and now < s.mode_check_at):
            return
        mode, why = self.scheduled_mode(now, policy)
        if mode != s.scheduled:
            s.scheduled = mode
            self.set_mode(mode, now, "schedule", why or "scheduled mode ended")
        names = [m.schedule for m in self.cfg.modes if not m.lanes or self.lane in m.lanes]
        s.mode_check_at = schedules.next_change(policy.schedules, policy.holidays, names, now)

    # ------------------------------------------------------------ contact and timers

    def contact(self, is_open: bool, at: datetime) -> None:
        s = self.s
        if is_open == s.door_open:
            return
        s.door_open = is_open
        if is_open:
            if s.unlocked:
                s.opened_while_unlocked = True
            elif self.relay is not None:
                self._alarm("door_forced", at, "door opened while locked")
            if s.mode != "open":
                s.held_at = after(at, self.cfg.held_s)
        else:
            s.held_at = None
            if s.unlocked and s.opened_while_unlocked and self.cfg.relock_on_close and s.mode != "open":
                self.lock(at)  # one person through: lock behind them

    def deadlines(self) -> list[datetime]:
        return [t for t in (self.s.relock_at, self.s.held_at, self.s.mode_check_at) if t is not None]

    def shift(self, step: timedelta) -> None:
        """Move the pending deadlines with a step of the wall clock."""
        if self.s.relock_at is not None:
            self.s.relock_at += step
        if self.s.held_at is not None:
            self.s.held_at += step
        self.s.mode_check_at = None  # asked again at the next timer pass, on the new clock

    def relock_due(self, now: datetime, local: Callable[[datetime], datetime]) -> None:
        """The relock first: whatever else goes wrong must not leave the door open."""
        if self.s.relock_at is not None and now >= self.s.relock_at:
            self.lock(local(self.s.relock_at))

    def held_due(self, now: datetime, local: Callable[[datetime], datetime]) -> None:
        if self.s.held_at is not None and now >= self.s.held_at:
            at, self.s.held_at = local(self.s.held_at), None
            self._alarm("door_held", at, f"door open longer than {self.cfg.held_s:g} s")
            self._say("close_door", at)
