"""Card sweep (DRILLS.md): a burst of unknown cards or forged passes on one lane is
someone trying numbers or keys, not a resident. It raises a `card_sweep` alarm and
slows the lane to one credential answered every `throttle_s` until the guard
acknowledges; what comes faster is counted and dropped, not answered."""
from __future__ import annotations

import collections
from datetime import datetime, timedelta

from gate.config import CardSweepPolicy

# What a sweep looks like: numbers nobody holds, keys nobody trusts.
SWEEP_REASONS = frozenset({"unknown_card", "forged"})


class SweepWatch:
    def __init__(self) -> None:
        self._refusals: collections.deque[datetime] = collections.deque()
        self.active = False
        self.alarm_id: str | None = None
        self._last_answer: datetime | None = None

    def throttled(self, at: datetime, policy: CardSweepPolicy) -> bool:
        """Is a credential arriving now to be dropped? (Only during a sweep.)"""
        if not self.active or self._last_answer is None:
            return False
        return at - self._last_answer < timedelta(seconds=policy.throttle_s)

    def answering(self, at: datetime) -> None:
        """A credential is being answered now (the throttle counts from here)."""
        self._last_answer = at

    def refused(self, at: datetime, reason: str, policy: CardSweepPolicy) -> bool:
        """Note a refusal; True when it starts a sweep (raise the alarm once)."""
        if reason not in SWEEP_REASONS:
            return False
        window = timedelta(seconds=policy.window_s)
        self._refusals.append(at)
        while self._refusals and at - self._refusals[0] > window:
            self._refusals.popleft()
        if self.active or len(self._refusals) < policy.count:
            return False
        self.active = True
        return True

    def acknowledge(self) -> None:
        self.active = False
        self.alarm_id = None
        self._refusals.clear()
