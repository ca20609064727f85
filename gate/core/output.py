"""What a lane says and records: every record stored before anything acts on it (and
kept in memory while a full disk cannot take it), the spoken prompts, the alarms, and
a decision turned into its record, its door, its prompt and its alarms. A part of
gate.core.lane.Lane (a mixin: the engine thread's own state, no locks)."""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import Any

from gate.core import policy as pol
from gate.core.session import Session
from gate.core.prompts import Prompt, for_decision, spoken
from gate.core.records import AlarmRecord, DecisionRecord, LaneRecord, PromptRecord, Verdict

log = logging.getLogger("gate.core.lane")  # one logger for the whole lane, whichever part speaks


class LaneOutput:
    # The lane's state these methods use (set in Lane.__init__).
    name: str
    direction: str
    languages: list[str]
    sinks: list[Any]
    speaker: Any
    store: Any
    floor: Any
    counters: Any
    policy: Any
    site: Any
    door: Any
    admitted_at: datetime | None
    sweep: Any
    _unwritten: Any
    _disk_full: bool

    def _emit(self, rec: LaneRecord) -> None:
        _, behind = self.floor.apply(rec.at)
        if behind:
            rec = replace(rec, clock="behind")
        else:
            self.floor.raise_to(rec.at)
        if not isinstance(rec, PromptRecord):
            self._store_record(rec)  # durable before anything acts on it
        for sink in self.sinks:
            try:
                sink(rec)
            except Exception:
                log.exception("lane %s: display sink failed", self.name)

    def _store_record(self, rec: LaneRecord) -> None:
        """Write the event before anything acts on it. On a full disk, free the reserve
        and purge delivered events (room for hundreds of decisions: Store.make_room)
        and write it there; past that, keep it in memory (lost on a power cut), alarm
        with how many are held, and write them as soon as there is room."""
        from gate.core.spill import disk_full, held_in_memory, should_tell, show

        assert self.store is not None
        try:
            self._write_unwritten()
            self.store.record(rec, direction=self.direction)
            return
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
        self._unwritten.append(rec)
        self.counters.inc("disk_full")
        if not self._disk_full:
            self._disk_full = True
            log.error("lane %s: the disk is full; the reserve is released and delivered events purged", self.name)
            alarm = AlarmRecord(at=rec.at, lane=self.name, kind="disk_full",
                                detail="storage full: reserve in use, purging delivered events")
            self._unwritten.append(alarm)
            show(self.sinks, alarm)  # seen now, even if it cannot be stored yet
        self.store.make_room()
        try:
            self._write_unwritten()
            return  # stored in the room just made: durable before the door acts
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
        n = len(self._unwritten)
        if should_tell(n):
            log.error("lane %s: disk full past the reserve; %d events held in memory only", self.name, n)
            show(self.sinks, AlarmRecord(at=rec.at, lane=self.name, kind="disk_full", detail=held_in_memory(n)))

    def _write_unwritten(self) -> None:
        assert self.store is not None
        while self._unwritten:
            self.store.record(self._unwritten[0], direction=self.direction)
            self._unwritten.popleft()
        if self._disk_full:
            self._disk_full = False
            log.warning("lane %s: the store has room again; every held event is written", self.name)

    def _say(self, key: str, at: datetime) -> None:
        self._speak(key, spoken(key, self.languages), at)

    def _say_prompt(self, key: str, prompt: Prompt, at: datetime) -> None:
        """Words of the policy's own (a community rule's prompt) rather than a built-in key."""
        self._speak(key, [(lang, prompt.text(lang)) for lang in self.languages], at)

    def _speak(self, key: str, parts: list[tuple[str, str]], at: datetime) -> None:
        self._emit(PromptRecord(at=at, lane=self.name, key=key, text=" ".join(t for _, t in parts)))
        if self.speaker is not None:
            for lang, text in parts:
                self.speaker.say(key, text, lang)

    def _alarm(self, kind: str, at: datetime, detail: str = "", pass_id: str | None = None) -> AlarmRecord:
        rec = AlarmRecord(at=at, lane=self.name, kind=kind, detail=detail, pass_id=pass_id)
        self._emit(rec)
        return rec

    def _decided(
        self,
        s: Session | None,
        verdict: Verdict,
        at: datetime,
        *,
        credential: str | None = "",
        temperature: float | None = None,
        challenge_id: str | None = None,
        who: str | None = None,
        situation: pol.Situation | None = None,
    ) -> None:
        p = s.pass_ if s else None
        stale = (
            self.site is not None and p is not None and self.direction == "in"
            and self.site.stale(at, self.policy.presence_stale_s)
        )
        rec = DecisionRecord(
            at=at,
            lane=self.name,
            pass_id=p.id if p else None,
            credential=(s.credential if s else None) if credential == "" else credential,
            category=p.category if p else None,
            decision=verdict.decision,
            reason=verdict.reason,
            temperature_c=temperature,
            holder=p.holder if p else None,
            unit=p.unit if p else None,
            card=s.card if s else None,
            challenge_id=challenge_id,
            who=who,
            step=s.step if s else None,
            situation=self._situation_record(situation),
            rule=verdict.rule,
            presence="stale" if stale else None,
            policy_version=self.policy.version,
        )
        self.counters.inc(f"{verdict.decision}")
        self._emit(rec)
        door = self.door.unlock(at) if verdict.decision == "allow" else None
        if verdict.decision == "allow":
            self.admitted_at = at  # the PIR may see them walk through (gate/core/lane.py _presence)
        rule = next((r for r in self.policy.rules if r.name == verdict.rule), None) if verdict.rule else None
        if rule is not None:
            self._say_prompt("rule_refused", Prompt(rule.prompt.zh, rule.prompt.en), at)
        else:
            key = for_decision(verdict.decision, verdict.reason, self.direction, rec.category)
            if key:
                self._say(key, at)
        if door is not None:
            self._emit(door)
        if verdict.decision == "deny" and verdict.reason == "fever":
            self._alarm("fever", at, f"{temperature:.1f} °C" if temperature else "", pass_id=rec.pass_id)
        if verdict.decision == "challenge" and verdict.reason == "passback":
            self._alarm("passback", at, "pass already inside", pass_id=rec.pass_id)
        if verdict.decision == "deny" and who is None and self.sweep.refused(at, verdict.reason, self.policy.card_sweep):
            sweep = self.policy.card_sweep
            self.sweep.alarm_id = self._alarm(
                "card_sweep", at, f"{sweep.count} unknown cards or forged passes within {sweep.window_s:g} s"
            ).id

    def _situation_record(self, situation: pol.Situation | None) -> dict | None:
        """The policy's inputs as stored with the decision, with the policy it was
        judged by (reports show each reading against the line in force then)."""
        if situation is None:
            return None
        return {**pol.situation_to_json(situation), "policy": {"version": self.policy.version, "fever_c": self.policy.fever_c}}
