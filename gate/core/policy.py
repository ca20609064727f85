"""The decision: a pure function of (pass, credential, readings, lane state, clock)
to a decision with a reason code from DRILLS.md.

Nothing here touches hardware, the store or the real time: the lane gathers the
facts into a Situation, and `policy replay` can feed recorded situations through
a changed policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gate.core import rules

from gate.core import schedules
from gate.core.schedules import in_span
from gate.config import PolicyConfig
from gate.core.records import PassRecord, Verdict

WAIT = Verdict("wait", "temperature")
WAIT_CARD = Verdict("wait", "second_factor")


@dataclass(frozen=True)
class Situation:
    direction: str  # in | out
    now: datetime  # local, aware
    pass_: PassRecord | None
    problem: str | None = None  # malformed | forged | unknown_pass | unknown_card, found before any pass
    temperatures: tuple[float, ...] = ()  # body temperatures taken for this person, in order
    needs_temperature: bool = True  # the lane has a thermometer and this is an entry
    timed_out: bool = False  # the lane's wait for a (second) reading has run out
    inside_since: datetime | None = None  # the pass's last entry, if it has not exited since
    draw: float = 1.0  # uniform in [0, 1): chooses entries for a holder check
    needs_second_factor: bool = False  # a printed (static) QR where the policy wants the door card too
    has_second_factor: bool = False  # the pass's own card was swiped for this entry
    fever_held: bool = False  # refused for fever earlier, and the guard has not acknowledged it yet
    lane: str = ""  # the lane's name and its gate, for the community's rules
    gate: str = ""
    lane_schedule: str | None = None  # the lane's own schedule (lanes[].schedule)
    door_mode: str = "normal"  # locked: nobody in on a credential alone (the guard opens)


def situation_to_json(s: Situation) -> dict[str, Any]:
    p = s.pass_
    iso = lambda v: None if v is None else v.isoformat()  # noqa: E731
    return {
        "direction": s.direction,
        "now": s.now.isoformat(),
        "problem": s.problem,
        "temperatures": list(s.temperatures),
        "needs_temperature": s.needs_temperature,
        "timed_out": s.timed_out,
        "inside_since": iso(s.inside_since),
        "draw": s.draw,
        "needs_second_factor": s.needs_second_factor,
        "has_second_factor": s.has_second_factor,
        "fever_held": s.fever_held,
        "lane": s.lane,
        "gate": s.gate,
        "lane_schedule": s.lane_schedule,
        "door_mode": s.door_mode,
        "pass": None
        if p is None
        else {
            "id": p.id, "category": p.category, "valid_from": iso(p.valid_from), "valid_until": iso(p.valid_until),
            "observation_until": iso(p.observation_until), "pcr_at": iso(p.pcr_at), "health_code": p.health_code,
            "revoked": p.revoked, "listed": p.listed, "unit": p.unit, "attributes": p.attributes,
        },
    }


def situation_from_json(d: dict[str, Any]) -> Situation:
    dt = lambda v: None if v is None else datetime.fromisoformat(v)  # noqa: E731
    p = d.get("pass")
    rec = None
    if p is not None:
        rec = PassRecord(
            id=p["id"], category=p["category"], valid_from=dt(p["valid_from"]), valid_until=dt(p["valid_until"]),
            observation_until=dt(p["observation_until"]), pcr_at=dt(p["pcr_at"]), health_code=p["health_code"],
            revoked=p["revoked"], listed=p["listed"], unit=p.get("unit"), attributes=p.get("attributes"),
        )
    return Situation(
        direction=d["direction"], now=datetime.fromisoformat(d["now"]), pass_=rec, problem=d["problem"],
        temperatures=tuple(d["temperatures"]), needs_temperature=d["needs_temperature"], timed_out=d["timed_out"],
        inside_since=dt(d["inside_since"]), draw=d["draw"],
        needs_second_factor=d.get("needs_second_factor", False), has_second_factor=d.get("has_second_factor", False),
        fever_held=d.get("fever_held", False), lane=d.get("lane", ""), gate=d.get("gate", ""),
        lane_schedule=d.get("lane_schedule"), door_mode=d.get("door_mode", "normal"),
    )


def is_night(policy: PolicyConfig, now: datetime) -> bool:
    return in_span(policy.night, now)


def decide(s: Situation, policy: PolicyConfig) -> Verdict:
    if s.problem:
        return Verdict("deny", s.problem)
    p = s.pass_
    if p is None:
        return Verdict("deny", "unknown_pass")
    if not p.listed and not policy.admit_unlisted:
        return Verdict("deny", "unknown_pass")
    if s.direction == "out":
        return _exit(s, p, policy)
    return _entry(s, p, policy)


def _exit(s: Situation, p: PassRecord, policy: PolicyConfig) -> Verdict:
    # Leaving is lenient on purpose (an expired pass may still go home); the one
    # built-in rule is home observation, which forbids going out before it ends.
    if p.observation_until is not None and s.now < p.observation_until:
        return Verdict("deny", "observation")
    return _community_rules(s, p, policy) or Verdict("allow", "ok")


def _community_rules(s: Situation, p: PassRecord, policy: PolicyConfig) -> Verdict | None:
    """The first of the community's rules (policy.rules) that this pass does not meet."""
    if not policy.rules:
        return None
    ctx = None
    for rule in policy.rules:
        if rule.direction != "both" and rule.direction != s.direction:
            continue
        if ctx is None:
            ctx = rules.context(rules.Facts(p, s.lane, s.direction, s.gate, s.now))
        # A `when` reading an attribute the pass lacks does not concern it; one that
        # fails for another reason (a type mismatch) counts as applying: fail closed.
        if rule.when is not None and rules.holds(rule.when, ctx, rule.name) is False:
            continue
        if not rules.holds(rule.require, ctx, rule.name):
            return Verdict("deny", "rule", rule=rule.name)
    return None


def _entry(s: Situation, p: PassRecord, policy: PolicyConfig) -> Verdict:
    if p.revoked:
        return Verdict("deny", "revoked")
    if p.valid_from is not None and s.now < p.valid_from:
        return Verdict("deny", "not_yet_valid")
    if p.valid_until is not None and s.now > p.valid_until:
        return Verdict("deny", "expired")
    cat = policy.category(p.category)
    if cat.refused:
        return Verdict("deny", "category_refused")
    if cat.hours and not in_span(cat.hours, s.now):
        return Verdict("deny", "outside_hours")
    own = (p.attributes or {}).get("schedule")
    for name in (cat.schedule, own if isinstance(own, str) else None, s.lane_schedule):
        if name is not None and not schedules.allows(policy.schedules, policy.holidays, name, s.now):
            return Verdict("deny", "outside_hours")
    if policy.pcr_within_h is not None:
        if p.pcr_at is None or s.now - p.pcr_at > timedelta(hours=policy.pcr_within_h) or p.pcr_at > s.now:
            return Verdict("deny", "pcr_required")
    if p.health_code is not None and p.health_code not in policy.health_codes:
        return Verdict("deny", "health_code")
    if s.fever_held:
        # Refused for fever and not yet seen by the guard: whatever it measures now.
        return Verdict("deny", "fever_hold")
    inside = s.inside_since is not None and s.now - s.inside_since < timedelta(hours=policy.passback_reset_h)
    if inside and policy.passback == "hard":
        return Verdict("deny", "passback")
    if s.needs_second_factor and not s.has_second_factor:
        # A printed pass can be photocopied: its holder's door card must come with it.
        return Verdict("deny", "second_factor") if s.timed_out else WAIT_CARD
    if s.needs_temperature:
        verdict = _temperature(s, policy)
        if verdict is not None:
            return verdict
    refused = _community_rules(s, p, policy)
    if refused is not None:
        return refused
    if inside and policy.passback == "soft":
        return Verdict("challenge", "passback")
    if s.door_mode == "locked":
        # Locked (a lockdown, the night): the credential is good, the guard opens.
        return Verdict("challenge", "door_locked")
    if s.draw < policy.challenge_rate:
        return Verdict("challenge", "holder_check")
    return Verdict("allow", "ok")


def _temperature(s: Situation, policy: PolicyConfig) -> Verdict | None:
    temps = s.temperatures
    if not temps:
        return Verdict("deny", "no_temperature") if s.timed_out else WAIT
    if temps[0] < policy.fever_c:
        return None
    if len(temps) == 1:
        # One high reading: measure again (IEC 80601-2-59 wants a second measurement).
        # If the person never measures again, the only reading we have is a fever.
        return Verdict("deny", "fever") if s.timed_out else Verdict("retest", "high_temperature")
    if temps[1] >= policy.fever_c:
        return Verdict("deny", "fever")
    return None


def temperature_used(s: Situation) -> float | None:
    """The body temperature a decision rests on: the latest reading taken."""
    return s.temperatures[-1] if s.temperatures else None
