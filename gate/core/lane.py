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
import queue
import random
import threading
from datetime import datetime, timedelta
from typing import Callable, Protocol

from drivers.base import Counters
from gate.core import policy as pol
from gate.core.clock import Clock, TimeFloor
from gate.core.door import DoorControl, RelayLike, after as _after
from gate.config import DoorSection, LaneConfig, PolicyConfig
from gate.core.events import (
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
from gate.core.tokens import KeyRing
from gate.core.records import (
    AckRecord,
    HealthRecord,
    LaneRecord,
    OverrideRecord,
    Verdict,
)
from gate.core.credentials import LaneCredentials
from gate.core.output import LaneOutput
from gate.core.session import Challenge, Reading, Session
from gate.core.timers import _INSTANT, LaneTimers
from gate.core.site import SiteView
from gate.store.database import Store
from gate.core.sweep import SweepWatch

log = logging.getLogger(__name__)

Sink = Callable[[LaneRecord], None]


class SpeakerLike(Protocol):
    def say(self, key: str, text: str, lang: str) -> None: ...


class Lane(LaneOutput, LaneCredentials, LaneTimers):
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
        self.admitted_at: datetime | None = None  # the lane's last allow
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
        # 21:59:58 and lingers is reminded at 22:00:03. Someone the PIR sees within the
        # reminder's seconds after an allow is the person just admitted, walking through:
        # they showed their pass, as someone who shows it after the PIR sees them does.
        # (A refusal does not count: the refused person who stays is reminded.)
        admitted = self.admitted_at
        walking_through = admitted is not None and (at - admitted).total_seconds() <= self.policy.reminder_after_s
        if present and self.session is None and not walking_through:
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
