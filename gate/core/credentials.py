"""A credential at a lane: a QR pass (verified, a live code checked against replay)
or a door card, becoming the Session the lane waits on; the same person showing it
again restarts the wait; a card sweep slows the lane. A part of gate.core.lane.Lane."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from gate.core.door import after as _after
from gate.core.session import Session, narrow
from gate.core.tokens import TokenError, time_step
from gate.core.records import PassRecord

log = logging.getLogger("gate.core.lane")  # one logger for the whole lane, whichever part speaks


class LaneCredentials:
    name: str
    policy: Any
    keyring: Any
    store: Any
    floor: Any
    counters: Any
    sweep: Any
    session: Session | None
    challenges: list[Any]
    reading: Any
    reminder_at: datetime | None
    needs_temperature: bool
    _rng: Any

    def _answering(self, at: datetime) -> bool:
        """May a credential be answered now? During a card sweep, one every throttle_s."""
        if self.sweep.throttled(at, self.policy.card_sweep):
            self.counters.inc("sweep_throttled")
            return False
        self.sweep.answering(at)
        return True

    def _credential_qr(self, text: str, at: datetime) -> None:
        try:
            token = self.keyring.verify(text)
        except TokenError as err:
            self.counters.inc(err.reason)
            log.warning("lane %s: QR refused (%s): %.60r", self.name, err, text)
            self._begin(Session("qr", None, err.reason, None, at, self._rng.random()), at)
            return
        assert self.store is not None
        if token.step is not None:
            now, _ = self.floor.apply(at)
            if abs(token.step - time_step(now)) > self.policy.dynamic_skew_steps or self.store.step_used(token.pass_id, token.step):
                # A screenshot of a live code: from another time, or already used to get in.
                self.counters.inc("replayed")
                log.warning("lane %s: dynamic code of pass %s for step %d refused (replay)", self.name, token.pass_id, token.step)
                known = PassRecord(id=token.pass_id, category=token.category, listed=False)
                self._begin(Session("qr", known, "replayed", None, at, self._rng.random()), at)
                return
        with self.store.reading():  # the pass and its card from one snapshot
            rec = self.store.get_pass(token.pass_id)
            has_card = rec is not None and self.store.has_card(rec.id)
        if rec is None:
            rec = PassRecord(
                id=token.pass_id,
                category=token.category,
                unit=token.holder_ref or None,
                valid_from=token.valid_from,
                valid_until=token.valid_until,
                listed=False,
            )
        else:
            # The token's validity still binds: the table may only narrow it.
            rec = narrow(rec, token.valid_from, token.valid_until)
        needs_card = (
            self.policy.static_qr_needs_card and token.step is None and rec.listed and has_card
        )
        self._begin(Session("qr", rec, None, None, at, self._rng.random(), step=token.step, needs_card=needs_card), at)

    def _credential_card(self, number: str, at: datetime) -> None:
        assert self.store is not None
        with self.store.reading():  # the binding and its pass from one snapshot
            pass_id = self.store.card_pass(number)
            rec = self.store.get_pass(pass_id) if pass_id else None
        s = self.session
        if s is not None and s.needs_card and not s.card_ok and s.pass_ and pass_id == s.pass_.id:
            # The second factor of the printed pass being checked.
            s.card_ok, s.card = True, number
            self._evaluate(s, at)
            return
        problem = None if rec else "unknown_card"
        self._begin(Session("card", rec, problem, number, at, self._rng.random()), at)

    def _begin(self, new: Session, at: datetime) -> None:
        if new.problem:
            # A stray or forged code is refused on its own; it does not cut short the
            # person we may be waiting on, nor silence the night reminder (waving any
            # code at the camera is not showing a pass).
            self._evaluate(new, at)
            return
        self.reminder_at = None
        if new.pass_ is not None and any(c.session.pass_ and c.session.pass_.id == new.pass_.id for c in self.challenges):
            # Already waiting for the guard: showing it again must not draw again.
            self.counters.inc("reshown_while_challenged")
            self._say("guard_check", at)
            return
        old = self.session
        if old is not None:
            same = old.pass_ and new.pass_ and old.pass_.id == new.pass_.id
            if same:
                # The same person showing it again (nothing seemed to happen): the wait
                # starts again from now, and they are told again what to do.
                if old.deadline is not None:
                    old.deadline = _after(at, self.policy.retest_window_s if old.retesting else self.policy.temperature_wait_s)
                    self._say("retest" if old.retesting else "swipe_card" if old.waiting_for == "second_factor" else "measure", at)
                return
            # Someone else stepped up: the person we waited for left without measuring.
            self.session = None
            self._evaluate(old, at, timed_out=True)
        r = self.reading
        if (
            self.needs_temperature
            and r is not None
            and not r.used
            and timedelta(0) <= at - r.at <= timedelta(seconds=self.policy.temperature_fresh_s)
        ):
            r.used = True
            new.temps.append(r.body_c)
        self.session = new
        self._evaluate(new, at)
