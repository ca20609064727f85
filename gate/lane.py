"""One checkpoint lane: a single engine thread that takes events off a queue, runs
the session state machine, asks the pure policy, and tells the store, the door,
the voice and the display what happened, in that order.

Session states: idle -> waiting for a temperature -> (retest) -> decided, or
-> challenge (waits for the guard). Door, held-door and night-reminder timers run
on the lane's clock, so a drill can move time on and see the same behaviour.
"""
from __future__ import annotations

import collections
import itertools
import logging
import sqlite3
import queue
import random
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Protocol

from drivers.base import Counters
from gate import policy as pol
from gate.clock import Clock, TimeFloor
from gate.door_control import DoorControl, RelayLike, after as _after
from gate.config import DoorSection, LaneConfig, PolicyConfig
from gate.events import (
    AckAlarm,
    ApplyPolicy,
    CardRead,
    DeviceHealth,
    DoorContactChanged,
    Event,
    ExitPressed,
    FireAlarmChanged,
    GuardAnswer,
    ManualOpen,
    PresenceChanged,
    QrSeen,
    SetDoorMode,
    TemperatureRead,
    Tick,
)
from gate.passes import KeyRing, TokenError, time_step
from gate.prompts import Prompt, for_decision, spoken
from gate.records import (
    AckRecord,
    AlarmRecord,
    DecisionRecord,
    HealthRecord,
    LaneRecord,
    OverrideRecord,
    PassRecord,
    PromptRecord,
    Verdict,
)
from gate.site import SiteView
from gate.store import Store
from gate.sweep import SweepWatch

log = logging.getLogger(__name__)

Sink = Callable[[LaneRecord], None]


class SpeakerLike(Protocol):
    def say(self, key: str, text: str, lang: str) -> None: ...


@dataclass
class Session:
    """One person at the lane, from the credential to the decision."""

    credential: str  # qr | card
    pass_: PassRecord | None
    problem: str | None
    card: str | None
    started: datetime
    draw: float
    step: int | None = None  # a dynamic QR code's time step
    needs_card: bool = False  # a printed pass whose holder has a door card (policy.static_qr_needs_card)
    card_ok: bool = False
    temps: list[float] = field(default_factory=list)
    deadline: datetime | None = None
    retesting: bool = False
    waiting_for: str = ""


@dataclass
class Challenge:
    id: str
    session: Session
    reason: str
    temperature_c: float | None
    expires: datetime


@dataclass
class Reading:
    body_c: float
    at: datetime
    used: bool = False


class Lane:
    def __init__(
        self,
        cfg: LaneConfig,
        *,
        policy: PolicyConfig,
        door: DoorSection,
        languages: list[str],
        clock: Clock,
        keyring: KeyRing,
        open_store: Callable[[], Store],
        relay: RelayLike | None = None,
        speaker: SpeakerLike | None = None,
        sinks: list[Sink] | None = None,
        seed: int | None = None,
        floor: TimeFloor | None = None,
        site: SiteView | None = None,
        gate: str = "",
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.direction = cfg.direction
        self.policy = policy
        self.door_cfg = door
        self.languages = languages
        self.clock = clock
        self.keyring = keyring
        self._open_store = open_store
        self.relay = relay
        self.speaker = speaker
        self.sinks: list[Sink] = list(sinks or [])
        self.floor = floor or TimeFloor()
        self.site = site  # None: a gate on its own, whose knowledge is never stale
        self.gate = gate
        self.sweep = SweepWatch()
        self.needs_temperature = cfg.direction == "in" and cfg.thermometer is not None
        self.counters = Counters()
        self._rng = random.Random(seed)
        self._queue: queue.Queue[tuple[Event | None, datetime]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._ids = itertools.count(1)
        self.store: Store | None = None
        self.health: dict[str, tuple[bool, str]] = {}
        # state
        self.session: Session | None = None
        self.challenges: list[Challenge] = []
        self.reading: Reading | None = None
        self.door = DoorControl(self.name, relay, door, self._emit, self._alarm, self._say)
        self.reminder_at: datetime | None = None
        self._last_pass: tuple[datetime, float] | None = None  # (wall, monotonic) of the last timer pass
        self.alive_at: float = 0.0  # clock.monotonic() of the engine's last loop, for the watchdog
        self._unwritten: collections.deque[LaneRecord] = collections.deque()  # events a full disk could not take yet
        self._disk_full = False

    # ------------------------------------------------------------ threading

    def post(self, event: Event) -> None:
        """Called from any thread: drivers, the guard page, sync."""
        self._queue.put((event, self.clock.now()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"lane-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"lane {self.name} did not start")

    def stop(self, timeout: float = 3.0) -> None:
        if self._thread and self._thread.is_alive():
            self._queue.put((None, self.clock.now()))
            self._thread.join(timeout)

    def join(self) -> None:
        """Wait until every event posted so far has been handled."""
        self._queue.join()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    @property
    def unlocked(self) -> bool:
        return self.door.s.unlocked

    @property
    def door_open(self) -> bool:
        return self.door.s.door_open

    @property
    def door_mode(self) -> str:
        return self.door.s.mode

    def next_deadline(self) -> datetime | None:
        times = [t for t in (self.session.deadline if self.session else None, self.reminder_at) if t]
        times += self.door.deadlines()
        times += [c.expires for c in self.challenges[:1]]
        return min(times) if times else None

    def _run(self) -> None:
        self.store = self._open_store()
        self._guarded(self.door.follow_schedule, self.clock.now(), self.policy)  # a scheduled mode in force at start
        self._ready.set()
        try:
            while True:
                timeout = None
                if self.clock.realtime:
                    deadline = self.next_deadline()
                    timeout = 1.0 if deadline is None else max(0.0, min(1.0, (deadline - self.clock.now()).total_seconds()))
                try:
                    event, at = self._queue.get(timeout=timeout)
                except queue.Empty:
                    event = at = None
                if self.clock.realtime:
                    # Once a pass, before the event: a deadline the event sets is in the
                    # clock as it is now, and no step seen later moves it again.
                    self._guarded(self._follow_clock_steps, self.clock.now())
                if at is None:  # woken for a deadline, not an event
                    self.alive_at = self.clock.monotonic()
                    self._guarded(self._timers, self.clock.now())
                    continue
                try:
                    if event is None:
                        return
                    self._guarded(self._handle, event, at)
                    # On a drill clock, a deadline at exactly this event's moment is the
                    # runner's to fire (a Tick): whatever else arrives at that instant (a
                    # device's health, the credential itself) comes first.
                    tick = isinstance(event, Tick)
                    self._guarded(self._timers, self.clock.now() if self.clock.realtime else at if tick else at - _INSTANT)
                finally:
                    self._queue.task_done()
                self.alive_at = self.clock.monotonic()
        finally:
            self._shutdown()

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        # A bug or a bad input must not take the lane down: count, log, go on.
        try:
            fn(*args)
        except Exception:
            self.counters.inc("errors")
            log.exception("lane %s: error handling %r", self.name, args[:1])

    def _shutdown(self) -> None:
        if self.relay is not None:
            try:
                self.relay.lock()
            except Exception:
                log.exception("lane %s: could not lock the relay", self.name)
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------ output

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
        from gate.spill import disk_full, held_in_memory, should_tell, show

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

    # ------------------------------------------------------------ events

    def _handle(self, event: Event, at: datetime) -> None:
        match event:
            case QrSeen(text=text):
                if self._answering(at):
                    self._credential_qr(text, at)
            case CardRead(number=number):
                if self._answering(at):
                    self._credential_card(number, at)
            case TemperatureRead():
                self._temperature(event, at)
            case PresenceChanged(present=present):
                self._presence(present, at)
            case DoorContactChanged(open=is_open):
                self._door_contact(is_open, at)
            case ExitPressed():
                self._decided(None, Verdict("allow", "exit_button"), at, credential=None)
            case GuardAnswer():
                self._guard(event, at)
            case ManualOpen(reason=reason, who=who):
                self._emit(OverrideRecord(at=at, lane=self.name, action="open_door", reason=reason, who=who))
                door = self.door.unlock(at)
                if door is not None:
                    self._emit(door)
            case AckAlarm(alarm_id=alarm_id, kind=kind, who=who):
                self._emit(AckRecord(at=at, lane=self.name, alarm_id=alarm_id, kind=kind, who=who))
                if self.sweep.active and (kind == "card_sweep" or alarm_id == self.sweep.alarm_id):
                    self.sweep.acknowledge()  # the guard has seen it: full speed again
            case DeviceHealth():
                self._health(event, at)
            case ApplyPolicy(policy=new):
                self.policy = new
                self.door.s.mode_check_at = None  # its schedules may say otherwise now
                log.info("lane %s: policy version %s applied", self.name, new.version)
            case SetDoorMode(mode=mode, who=who, why=why):
                if not self.door.manual(mode, at, who, why):
                    self.counters.inc("door_mode_refused")
                    log.warning("lane %s: door mode %s from %s not taken (already so, or the fire alarm holds it open)",
                                self.name, mode, who)
            case FireAlarmChanged(active=active):
                self.door.fire(active, at, self.policy)
            case Tick():
                pass
            case _:
                self.counters.inc("unknown_events")
                log.warning("lane %s: ignored unknown event %r", self.name, event)

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
            rec = _narrow(rec, token.valid_from, token.valid_until)
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

    def _situation(self, s: Session, at: datetime, timed_out: bool) -> pol.Situation:
        at, _ = self.floor.apply(at)  # never judge validity by a clock set back
        inside = None
        held = False
        if s.pass_ is not None and self.direction == "in":
            assert self.store is not None
            inside = self.store.inside_since(s.pass_.id)
            since = self.store.fever_held_since(s.pass_.id)
            held = since is not None and at - since < timedelta(minutes=self.policy.fever_hold_min)
        return pol.Situation(
            direction=self.direction,
            now=at,
            pass_=s.pass_,
            problem=s.problem,
            temperatures=tuple(s.temps),
            needs_temperature=self.needs_temperature,
            timed_out=timed_out,
            inside_since=inside,
            draw=s.draw,
            needs_second_factor=s.needs_card,
            has_second_factor=s.card_ok,
            fever_held=held,
            lane=self.name,
            gate=self.gate,
            lane_schedule=self.cfg.schedule,
            door_mode=self.door.s.mode,
        )

    def _evaluate(self, s: Session, at: datetime, timed_out: bool = False) -> None:
        situation = self._situation(s, at, timed_out)
        verdict = pol.decide(situation, self.policy)
        temp = pol.temperature_used(situation)
        if verdict.decision == "wait":
            if s.deadline is None or verdict.reason != s.waiting_for:
                # Each thing awaited (the card, then a temperature) gets its own wait.
                s.deadline = _after(at, self.policy.temperature_wait_s)
                s.waiting_for = verdict.reason
                self._say("swipe_card" if verdict.reason == "second_factor" else "measure", at)
            return
        if verdict.decision == "retest":
            if s.retesting:
                return
            s.retesting = True
            s.deadline = _after(at, self.policy.retest_window_s)
            self._decided(s, verdict, at, temperature=temp, situation=situation)
            return
        if self.session is s:
            self.session = None
        if verdict.decision == "challenge":
            ch = Challenge(f"{self.name}-{next(self._ids)}", s, verdict.reason, temp, _after(at, self.policy.challenge_timeout_s))
            self.challenges.append(ch)
            self._decided(s, verdict, at, temperature=temp, challenge_id=ch.id, situation=situation)
            return
        self._decided(s, verdict, at, temperature=temp, situation=situation)

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

    def _temperature(self, ev: TemperatureRead, at: datetime) -> None:
        if not (self.policy.human_min_c <= ev.body_c <= self.policy.human_max_c):
            # Not a person (a hand too far away, a cup of tea): ask again, decide nothing.
            self.counters.inc("out_of_range")
            self._say("out_of_range", at)
            return
        s = self.session
        if s is not None and self.needs_temperature:
            s.temps.append(ev.body_c)
            self._evaluate(s, at)
            return
        self.reading = Reading(ev.body_c, at)

    def _presence(self, present: bool, at: datetime) -> None:
        # Whether it is night is asked when the reminder is due: someone who arrives at
        # 21:59:58 and lingers is reminded at 22:00:03.
        if present and self.session is None:
            self.reminder_at = _after(at, self.policy.reminder_after_s)
        elif not present:
            self.reminder_at = None

    def _door_contact(self, is_open: bool, at: datetime) -> None:
        self.door.contact(is_open, at)

    def _guard(self, ev: GuardAnswer, at: datetime) -> None:
        ch = None
        if ev.challenge_id is None:
            # No id (a button on the gate, a drill): the person most recently challenged,
            # the one standing there now.
            ch = self.challenges[-1] if self.challenges else None
        else:
            ch = next((c for c in self.challenges if c.id == ev.challenge_id), None)
        if ch is None:
            self.counters.inc("stale_guard_answers")
            log.warning("lane %s: guard answer %r with no open challenge", self.name, ev)
            return
        self.challenges.remove(ch)
        verdict = Verdict("allow", "guard_confirmed") if ev.answer == "confirm" else Verdict("deny", "guard_rejected")
        self._decided(ch.session, verdict, at, temperature=ch.temperature_c, challenge_id=ch.id, who=ev.who)

    def _health(self, ev: DeviceHealth, at: datetime) -> None:
        before = self.health.get(ev.device)
        self.health[ev.device] = (ev.ok, ev.detail)
        if before is not None and before[0] == ev.ok:
            return
        if before is None and ev.ok:
            return  # first report, healthy: nothing to tell
        self._emit(HealthRecord(at=at, lane=self.name, device=ev.device, ok=ev.ok, detail=ev.detail))
        if not ev.ok:
            self._alarm("sensor_fault", at, f"{ev.device}: {ev.detail}")

    # ------------------------------------------------------------ timers

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


def _narrow(rec: PassRecord, vfrom: datetime | None, vuntil: datetime | None) -> PassRecord:
    if vfrom is not None and (rec.valid_from is None or vfrom > rec.valid_from):
        rec = replace(rec, valid_from=vfrom)
    if vuntil is not None and (rec.valid_until is None or vuntil < rec.valid_until):
        rec = replace(rec, valid_until=vuntil)
    return rec
