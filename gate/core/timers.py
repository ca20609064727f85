"""A lane's deadlines: the relock first, then a wait or a retest that ran out, a door
held open, a guard check nobody answered, the night reminder; and a step of the wall
clock (NTP, an operator) moving every pending deadline with it. A part of gate.core.lane.Lane."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from gate.core import policy as pol
from gate.core.records import Verdict

log = logging.getLogger("gate.core.lane")  # one logger for the whole lane, whichever part speaks


class LaneTimers:
    name: str
    clock: Any
    policy: Any
    door: Any
    session: Any
    challenges: list[Any]
    reading: Any
    reminder_at: datetime | None
    admitted_at: datetime | None
    _last_pass: Any

    def _follow_clock_steps(self, now: datetime) -> None:
        """Move the pending deadlines with a step of the wall clock.

        Deadlines are wall-clock times a number of real seconds after an event.
        When the clock is stepped (NTP's first sync after boot, an operator fixing
        the time), a deadline left where it was would fire early or late by the
        step: a step back of an hour would keep an unlocked door open an hour. The
        monotonic clock does not step, so the difference between how far each
        moved since the last pass is the step."""
        mono = self.clock.monotonic()
        last, self._last_pass = self._last_pass, (now, mono)
        if last is None:
            return
        step = (now - last[0]) - timedelta(seconds=mono - last[1])
        if abs(step) < _CLOCK_STEP:
            return  # drift and scheduling jitter, not a step
        log.warning("%s: wall clock stepped by %+.1f s; pending deadlines moved with it",
                    self.name, step.total_seconds())
        shift = lambda t: None if t is None else t + step  # noqa: E731
        self.door.shift(step)
        self.reminder_at = shift(self.reminder_at)
        self.admitted_at = shift(self.admitted_at)
        if self.session is not None:
            self.session.deadline = shift(self.session.deadline)
        for ch in self.challenges:
            ch.expires += step
        if self.reading is not None:
            self.reading.at += step

    def _timers(self, now: datetime) -> None:
        # Deadlines are kept in UTC; what happens at one is told in local time, which
        # the policy's hours and the records' day and hour are about.
        local = lambda t: t.astimezone(now.tzinfo)  # noqa: E731
        # The relock first: whatever goes wrong below must not leave the door open.
        self.door.relock_due(now, local)
        self.door.follow_schedule(now, self.policy)
        s = self.session
        if s is not None and s.deadline is not None and now >= s.deadline:
            self._evaluate(s, local(s.deadline), timed_out=True)
        self.door.held_due(now, local)
        while self.challenges and now >= self.challenges[0].expires:
            # Nobody answered: the person has long gone; refuse, and say so.
            ch = self.challenges.pop(0)
            self._decided(ch.session, Verdict("deny", "guard_rejected"), local(ch.expires), temperature=ch.temperature_c,
                          challenge_id=ch.id, who=f"nobody: no answer in {self.policy.challenge_timeout_s:g} s")
        if self.reminder_at is not None and now >= self.reminder_at:
            at, self.reminder_at = local(self.reminder_at), None
            if self.session is None and pol.is_night(self.policy, at):
                # The street hears the reminder; the guard on duty is woken by the alarm.
                self._say("reminder", at)
                self._alarm("night_presence", at, "someone at the gate at night without a pass")


_INSTANT = timedelta(microseconds=1)

# A wall-clock jump between two timer passes (at most ~1 s apart) larger than this
# is a step of the clock, not drift.
_CLOCK_STEP = timedelta(seconds=2)
