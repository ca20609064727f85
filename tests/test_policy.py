"""The pure decision: Situations built by hand, the verdicts DRILLS.md promises."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gate.config import PolicyConfig
from gate.core.policy import Situation, decide, in_span, is_night, temperature_used
from gate.core.records import PassRecord

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=TZ)
H = timedelta(hours=1)
S = timedelta(seconds=1)

# DRILLS.md, "decision is one of ...; reason is one of ..."
VOCABULARY = {
    ("allow", "ok"), ("allow", "guard_confirmed"), ("allow", "exit_button"),
    ("retest", "high_temperature"),
    ("challenge", "passback"), ("challenge", "holder_check"),
    *{("deny", r) for r in (
        "malformed", "forged", "unknown_pass", "revoked", "expired", "not_yet_valid", "fever",
        "no_temperature", "observation", "category_refused", "outside_hours", "pcr_required",
        "health_code", "unknown_card", "passback", "guard_rejected",
    )},
}
# Verdicts the lane makes itself, from a guard's answer or a button, never from decide().
LANE_ONLY = {("allow", "guard_confirmed"), ("allow", "exit_button"), ("deny", "guard_rejected")}


def a_pass(**kw) -> PassRecord:
    kw.setdefault("category", "resident")
    return PassRecord(id="r1", holder="王芳", unit="3-2-501", phone_last4="1234", **kw)


def situation(**kw) -> Situation:
    kw.setdefault("direction", "in")
    kw.setdefault("now", NOW)
    if "pass_" not in kw:
        kw["pass_"] = a_pass(**kw.pop("p", {}))
    kw.setdefault("temperatures", (36.5,))
    return Situation(**kw)


def verdict(policy: dict | None = None, **kw) -> tuple[str, str]:
    v = decide(situation(**kw), PolicyConfig(**(policy or {})))
    return v.decision, v.reason


# ---------------------------------------------------------------- every reason


SCENARIOS = {
    "resident with a normal temperature": (dict(), None, ("allow", "ok")),
    "first high reading": (dict(temperatures=(37.8,)), None, ("retest", "high_temperature")),
    "soft passback": (dict(inside_since=NOW - H), None, ("challenge", "passback")),
    "random holder check": (dict(draw=0.1), dict(challenge_rate=0.2), ("challenge", "holder_check")),
    "malformed QR": (dict(pass_=None, problem="malformed"), None, ("deny", "malformed")),
    "forged QR": (dict(pass_=None, problem="forged"), None, ("deny", "forged")),
    "unknown card": (dict(pass_=None, problem="unknown_card"), None, ("deny", "unknown_card")),
    "no pass record": (dict(pass_=None), None, ("deny", "unknown_pass")),
    "unlisted, not admitted": (dict(p=dict(listed=False)), dict(admit_unlisted=False), ("deny", "unknown_pass")),
    "revoked": (dict(p=dict(revoked=True)), None, ("deny", "revoked")),
    "expired": (dict(p=dict(valid_until=NOW - S)), None, ("deny", "expired")),
    "not yet valid": (dict(p=dict(valid_from=NOW + S)), None, ("deny", "not_yet_valid")),
    "second high reading": (dict(temperatures=(37.8, 37.6)), None, ("deny", "fever")),
    "never measured": (dict(temperatures=(), timed_out=True), None, ("deny", "no_temperature")),
    "returnee going out during observation": (
        dict(direction="out", p=dict(category="returnee", observation_until=NOW + 24 * H)), None, ("deny", "observation")),
    "courier": (dict(p=dict(category="courier")), None, ("deny", "category_refused")),
    "visitor at night": (
        dict(p=dict(category="visitor"), now=NOW.replace(hour=23)),
        dict(categories={"visitor": {"hours": "08:00-20:00"}}),
        ("deny", "outside_hours"),
    ),
    "no recent PCR test": (dict(p=dict(pcr_at=NOW - 72 * H)), dict(pcr_within_h=48), ("deny", "pcr_required")),
    "yellow health code": (dict(p=dict(health_code="yellow")), None, ("deny", "health_code")),
    "hard passback": (dict(inside_since=NOW - H), dict(passback="hard"), ("deny", "passback")),
}


@pytest.mark.parametrize("kw, policy, expected", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(kw, policy, expected):
    assert verdict(policy, **kw) == expected


def test_the_scenarios_reach_every_reason_decide_is_responsible_for():
    reached = {expected for _, _, expected in SCENARIOS.values()}
    assert reached <= VOCABULARY
    assert VOCABULARY - LANE_ONLY - reached == set()


def test_unlisted_pass_is_admitted_on_its_signature_by_default():
    assert verdict(p=dict(listed=False)) == ("allow", "ok")


# ---------------------------------------------------------------- order of checks


def test_a_problem_beats_everything_about_the_pass():
    assert verdict(problem="forged", p=dict(revoked=True)) == ("deny", "forged")


def test_revoked_beats_fever_and_expiry():
    assert verdict(p=dict(revoked=True, valid_until=NOW - H), temperatures=(38.5, 38.5)) == ("deny", "revoked")


def test_validity_is_checked_before_category():
    assert verdict(p=dict(category="courier", valid_until=NOW - H)) == ("deny", "expired")


@pytest.mark.parametrize(
    "kw, policy, reason",
    [
        (dict(p=dict(category="courier")), None, "category_refused"),
        (dict(p=dict(category="visitor")), dict(categories={"visitor": {"hours": "20:00-22:00"}}), "outside_hours"),
        (dict(p=dict(pcr_at=None)), dict(pcr_within_h=48), "pcr_required"),
        (dict(p=dict(health_code="red")), None, "health_code"),
        (dict(inside_since=NOW - H), dict(passback="hard"), "passback"),
        (dict(p=dict(revoked=True)), None, "revoked"),
    ],
    ids=["category_refused", "outside_hours", "pcr_required", "health_code", "hard passback", "revoked"],
)
def test_refusals_that_need_no_temperature_come_before_waiting_for_one(kw, policy, reason):
    # nobody has measured yet: the person is turned away at once, not asked to measure
    assert verdict(policy, temperatures=(), **kw) == ("deny", reason)


def test_hard_passback_denies_even_before_a_high_reading_is_retested():
    assert verdict(dict(passback="hard"), inside_since=NOW - H, temperatures=(38.0,)) == ("deny", "passback")


def test_soft_passback_waits_for_the_temperature_first():
    kw = dict(inside_since=NOW - H)
    assert verdict(temperatures=(), **kw) == ("wait", "temperature")
    assert verdict(temperatures=(38.0,), **kw) == ("retest", "high_temperature")
    assert verdict(temperatures=(38.0, 38.1), **kw) == ("deny", "fever")
    assert verdict(temperatures=(36.6,), **kw) == ("challenge", "passback")


def test_soft_passback_is_the_challenge_even_when_a_holder_check_is_drawn():
    assert verdict(dict(challenge_rate=1.0), inside_since=NOW - H, draw=0.0) == ("challenge", "passback")


def test_holder_check_only_after_the_temperature_passes():
    policy = dict(challenge_rate=1.0)
    assert verdict(policy, draw=0.0, temperatures=()) == ("wait", "temperature")
    assert verdict(policy, draw=0.0, temperatures=(38.0,)) == ("retest", "high_temperature")
    assert verdict(policy, draw=0.0, temperatures=(36.5,)) == ("challenge", "holder_check")


def test_passback_off_ignores_being_inside():
    assert verdict(dict(passback="off"), inside_since=NOW - H) == ("allow", "ok")


# ---------------------------------------------------------------- temperature


@pytest.mark.parametrize("line", [37.3, 37.5, 38.0])
def test_a_reading_at_the_line_is_high_and_just_under_is_normal(line):
    policy = dict(fever_c=line)
    assert verdict(policy, temperatures=(line,)) == ("retest", "high_temperature")
    assert verdict(policy, temperatures=(round(line - 0.01, 2),)) == ("allow", "ok")


def test_no_reading_yet_waits_and_a_timed_out_wait_is_no_temperature():
    assert verdict(temperatures=(), timed_out=False) == ("wait", "temperature")
    assert verdict(temperatures=(), timed_out=True) == ("deny", "no_temperature")


def test_retest_with_a_normal_second_reading_allows():
    assert verdict(temperatures=(37.6, 36.9)) == ("allow", "ok")


@pytest.mark.parametrize("second", [37.3, 37.6, 39.0])
def test_a_second_reading_at_or_over_the_line_is_fever(second):
    assert verdict(temperatures=(37.6, second)) == ("deny", "fever")


def test_walking_away_after_one_high_reading_is_fever():
    assert verdict(temperatures=(37.6,), timed_out=True) == ("deny", "fever")


def test_a_lane_without_a_thermometer_does_not_wait():
    assert verdict(temperatures=(), needs_temperature=False) == ("allow", "ok")


def test_a_normal_reading_is_not_overturned_by_the_timeout():
    assert verdict(temperatures=(36.5,), timed_out=True) == ("allow", "ok")


def test_policy_fever_line_is_honoured():
    assert verdict(dict(fever_c=37.0), temperatures=(37.1,)) == ("retest", "high_temperature")
    assert verdict(dict(fever_c=38.0), temperatures=(37.9,)) == ("allow", "ok")


def test_temperature_used_is_the_latest_reading():
    assert temperature_used(situation(temperatures=(37.6, 36.9))) == 36.9
    assert temperature_used(situation(temperatures=(36.4,))) == 36.4
    assert temperature_used(situation(temperatures=())) is None


# ---------------------------------------------------------------- exit


def test_exit_needs_no_temperature_and_is_never_challenged():
    kw = dict(direction="out", temperatures=(), needs_temperature=True, inside_since=NOW - H, draw=0.0)
    assert verdict(dict(passback="hard", challenge_rate=1.0), **kw) == ("allow", "ok")
    assert verdict(dict(passback="soft", challenge_rate=1.0), **kw) == ("allow", "ok")


@pytest.mark.parametrize(
    "p",
    [
        dict(valid_until=NOW - 30 * 24 * H),
        dict(valid_from=NOW + H),
        dict(revoked=True),
        dict(category="courier"),
        dict(health_code="red"),
        dict(pcr_at=None),
    ],
    ids=["expired", "not yet valid", "revoked", "courier", "red code", "no pcr"],
)
def test_people_may_always_go_home(p):
    policy = dict(pcr_within_h=48)
    assert verdict(policy, direction="out", temperatures=(), p=p) == ("allow", "ok")


def test_observation_forbids_going_out_until_it_ends():
    until = NOW + 3 * 24 * H
    p = dict(category="returnee", observation_until=until)
    assert verdict(direction="out", p=p, now=until - S) == ("deny", "observation")
    assert verdict(direction="out", p=p, now=until) == ("allow", "ok")
    assert verdict(direction="out", p=p, now=until + H) == ("allow", "ok")


def test_returnee_under_observation_may_enter():
    p = dict(category="returnee", observation_until=NOW + 3 * 24 * H)
    assert verdict(p=p) == ("allow", "ok")


def test_unknown_pass_cannot_leave_either():
    assert verdict(direction="out", pass_=None) == ("deny", "unknown_pass")


# ---------------------------------------------------------------- boundaries


def test_validity_edges():
    p = dict(valid_from=NOW, valid_until=NOW + H)
    assert verdict(p=p, now=NOW - S) == ("deny", "not_yet_valid")
    assert verdict(p=p, now=NOW) == ("allow", "ok")
    assert verdict(p=p, now=NOW + H) == ("allow", "ok")
    assert verdict(p=p, now=NOW + H + S) == ("deny", "expired")


def test_validity_compares_instants_not_wall_clocks():
    # valid until 10:00 in Beijing is 02:00 UTC; 02:30 UTC is after it
    utc_now = datetime(2026, 11, 22, 2, 30, tzinfo=ZoneInfo("UTC"))
    assert verdict(p=dict(valid_until=NOW), now=utc_now) == ("deny", "expired")


@pytest.mark.parametrize("rate, draw, expected", [
    (0.0, 0.0, ("allow", "ok")),
    (0.3, 0.0, ("challenge", "holder_check")),
    (0.3, 0.299, ("challenge", "holder_check")),
    (0.3, 0.3, ("allow", "ok")),
    (0.3, 0.9, ("allow", "ok")),
    (1.0, 0.999999, ("challenge", "holder_check")),
])
def test_challenge_rate_chooses_by_draw(rate, draw, expected):
    assert verdict(dict(challenge_rate=rate), draw=draw) == expected


def test_challenge_rate_share_over_uniform_draws():
    policy = PolicyConfig(challenge_rate=0.25)
    draws = [i / 1000 for i in range(1000)]
    checked = sum(decide(situation(draw=d), policy).reason == "holder_check" for d in draws)
    assert checked == 250


@pytest.mark.parametrize("reset_h", [12.0, 2.0])
def test_passback_reset_boundary(reset_h):
    window = timedelta(hours=reset_h)
    policy = dict(passback_reset_h=reset_h)
    assert verdict(policy, inside_since=NOW - window + S) == ("challenge", "passback")
    assert verdict(policy, inside_since=NOW - window) == ("allow", "ok")
    assert verdict(dict(policy, passback="hard"), inside_since=NOW - window + S) == ("deny", "passback")
    assert verdict(dict(policy, passback="hard"), inside_since=NOW - window) == ("allow", "ok")


def test_pcr_window_boundary():
    policy = dict(pcr_within_h=48)
    assert verdict(policy, p=dict(pcr_at=NOW - 48 * H)) == ("allow", "ok")
    assert verdict(policy, p=dict(pcr_at=NOW - 48 * H - S)) == ("deny", "pcr_required")
    assert verdict(policy, p=dict(pcr_at=NOW - H)) == ("allow", "ok")
    assert verdict(policy, p=dict(pcr_at=None)) == ("deny", "pcr_required")


def test_pcr_dated_in_the_future_is_not_proof():
    assert verdict(dict(pcr_within_h=48), p=dict(pcr_at=NOW + H)) == ("deny", "pcr_required")


def test_pcr_off_by_default():
    assert verdict(p=dict(pcr_at=None)) == ("allow", "ok")
    assert verdict(p=dict(pcr_at=NOW - 30 * 24 * H)) == ("allow", "ok")


@pytest.mark.parametrize("code, codes, expected", [
    (None, ["green"], ("allow", "ok")),
    ("green", ["green"], ("allow", "ok")),
    ("yellow", ["green"], ("deny", "health_code")),
    ("red", ["green"], ("deny", "health_code")),
    ("yellow", ["green", "yellow"], ("allow", "ok")),
    ("green", ["yellow"], ("deny", "health_code")),
])
def test_health_codes(code, codes, expected):
    assert verdict(dict(health_codes=codes), p=dict(health_code=code)) == expected


@pytest.mark.parametrize("hm, expected", [
    ((7, 59), ("deny", "outside_hours")),
    ((8, 0), ("allow", "ok")),
    ((19, 59), ("allow", "ok")),
    ((20, 0), ("deny", "outside_hours")),
    ((2, 0), ("deny", "outside_hours")),
])
def test_category_hours(hm, expected):
    policy = dict(categories={"visitor": {"hours": "08:00-20:00"}})
    now = NOW.replace(hour=hm[0], minute=hm[1])
    assert verdict(policy, p=dict(category="visitor"), now=now) == expected
    assert verdict(policy, p=dict(category="resident"), now=now) == ("allow", "ok")  # other categories unlimited


def test_category_hours_wrapping_past_midnight():
    policy = dict(categories={"staff": {"hours": "20:00-06:00"}})  # the night shift
    at = lambda h, m=0: NOW.replace(hour=h, minute=m)  # noqa: E731
    assert verdict(policy, p=dict(category="staff"), now=at(23)) == ("allow", "ok")
    assert verdict(policy, p=dict(category="staff"), now=at(5, 59)) == ("allow", "ok")
    assert verdict(policy, p=dict(category="staff"), now=at(6)) == ("deny", "outside_hours")
    assert verdict(policy, p=dict(category="staff"), now=at(12)) == ("deny", "outside_hours")


# ---------------------------------------------------------------- in_span


def at(h: int, m: int = 0, s: int = 0) -> datetime:
    return NOW.replace(hour=h, minute=m, second=s)


@pytest.mark.parametrize("span, moment, inside", [
    ("08:00-20:00", at(8), True),
    ("08:00-20:00", at(7, 59, 59), False),
    ("08:00-20:00", at(19, 59, 59), True),
    ("08:00-20:00", at(20), False),
    ("22:00-06:00", at(22), True),
    ("22:00-06:00", at(23, 59, 59), True),
    ("22:00-06:00", at(0), True),
    ("22:00-06:00", at(5, 59, 59), True),
    ("22:00-06:00", at(6), False),
    ("22:00-06:00", at(12), False),
    ("22:00-06:00", at(21, 59, 59), False),
    ("20:00-24:00", at(23, 59, 59), True),
    ("20:00-24:00", at(20), True),
    ("20:00-24:00", at(0), False),
    ("20:00-24:00", at(19, 59), False),
    ("00:00-24:00", at(0), True),
    ("00:00-24:00", at(12), True),
    ("00:00-24:00", at(23, 59, 59), True),
    ("7:30-9:05", at(9, 4), True),
    ("7:30-9:05", at(9, 5), False),
])
def test_in_span(span, moment, inside):
    assert in_span(span, moment) is inside


def test_is_night_follows_the_policy():
    assert is_night(PolicyConfig(), at(23)) and is_night(PolicyConfig(), at(3))
    assert not is_night(PolicyConfig(), at(12))
    assert is_night(PolicyConfig(night="12:00-13:00"), at(12, 30))
    assert not is_night(PolicyConfig(night="12:00-13:00"), at(23))
