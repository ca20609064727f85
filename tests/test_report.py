"""The daily report (日报告, 零报告): every day, from the store, in the gate's local time."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.records import AlarmRecord, DecisionRecord, DoorRecord, PromptRecord
from gate.report import daily
from gate.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
DAY = "2026-11-22"


def at(h: int, m: int = 0, day: int = 22, tz=SHANGHAI) -> datetime:
    return datetime(2026, 11, day, h, m, tzinfo=tz)


def dec(when, decision="allow", reason="ok", *, category="resident", pass_id="r1", card=None, lane="in"):
    return DecisionRecord(
        at=when, lane=lane, pass_id=pass_id, credential="card" if card else "qr", category=category,
        decision=decision, reason=reason, temperature_c=36.5, card=card,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gate.db", gate_id="east-gate-1", tz=SHANGHAI)
    yield s
    s.close()


def zero_report(day: str, gate: str) -> dict:
    return {
        "date": day, "gate": gate, "events": 0, "allowed": {}, "denied": {}, "fevers": 0,
        "challenges": 0, "new_cards": [], "unknown_cards": [], "by_hour": [0] * 24,
    }


def test_a_day_with_nothing_is_a_zero_report(store):
    assert daily(store, DAY) == zero_report(DAY, "east-gate-1")


def test_a_quiet_day_between_busy_ones_is_still_a_zero_report(store):
    store.record(dec(at(23, 59, day=21)), direction="in")
    store.record(dec(at(0, 0, day=23), card="42"), direction="in")
    assert daily(store, DAY) == zero_report(DAY, "east-gate-1")
    assert daily(store, "2026-11-21")["events"] == 1
    assert daily(store, "2026-11-23")["events"] == 1


def test_a_busy_day_is_counted_by_category_reason_and_hour(store):
    store.upsert_passes([{"id": "r1", "category": "resident"}], {"1234567": "r1"})
    day = [
        dec(at(7, 5)),
        PromptRecord(at=at(7, 5), lane="in", key="welcome", text="请通行"),
        DoorRecord(at=at(7, 5), lane="in", action="unlock"),
        dec(at(7, 40), card="1234567"),
        dec(at(9, 15), category="visitor", pass_id="v1"),
        dec(at(9, 30), category=None, pass_id=None, reason="exit_button", lane="out"),
        dec(at(12, 0), "retest", "high_temperature", pass_id="r2"),
        dec(at(12, 0), "deny", "fever", pass_id="r2"),
        AlarmRecord(at=at(12, 0), lane="in", kind="fever", detail="38.2", pass_id="r2"),
        AlarmRecord(at=at(13, 0), lane="in", kind="door_held"),
        dec(at(18, 20), "deny", "category_refused", category="courier", pass_id="c1"),
        dec(at(18, 25), "deny", "unknown_card", category=None, pass_id=None, card="999"),
        dec(at(18, 26), "deny", "unknown_card", category=None, pass_id=None, card="999"),
        dec(at(18, 27), "deny", "unknown_card", category=None, pass_id=None, card="888"),
        dec(at(20, 0), "challenge", "passback"),
        dec(at(20, 1), "allow", "guard_confirmed"),
        dec(at(21, 0), "challenge", "holder_check", pass_id="r3", category="renter"),
        dec(at(21, 1), "deny", "guard_rejected", pass_id="r3", category="renter"),
    ]
    for rec in day:
        store.record(rec, direction="out" if rec.lane == "out" else "in")
    rep = daily(store, DAY)
    assert rep["date"] == DAY and rep["gate"] == "east-gate-1"
    assert rep["events"] == len(day)
    assert rep["allowed"] == {"resident": 3, "visitor": 1, "none": 1}
    assert rep["denied"] == {"fever": 1, "category_refused": 1, "unknown_card": 3, "guard_rejected": 1}
    assert rep["fevers"] == 1
    assert rep["challenges"] == 2
    assert rep["unknown_cards"] == ["888", "999"]
    assert rep["new_cards"] == ["1234567", "999", "888"]  # in the order they were first seen
    expected_hours = [0] * 24
    for rec in day:
        if isinstance(rec, DecisionRecord):
            expected_hours[rec.at.hour] += 1
    assert rep["by_hour"] == expected_hours
    assert sum(rep["by_hour"]) == 14 and len(rep["by_hour"]) == 24


def test_new_cards_are_those_first_seen_that_day(store):
    store.upsert_passes([{"id": "r1", "category": "resident"}], {"111": "r1", "222": "r1", "333": "r1"})
    store.record(dec(at(10, day=21), card="111"))  # yesterday, and again today: not new
    store.record(dec(at(10), card="111"))
    store.record(dec(at(0, 10), card="222"))  # 00:10 Beijing is still the 21st in UTC
    # 333 is bound but never swiped: not new
    store.record(dec(at(23, 50), "deny", "unknown_card", pass_id=None, card="444"))
    assert daily(store, DAY)["new_cards"] == ["222", "444"]
    assert daily(store, "2026-11-21")["new_cards"] == ["111"]
    assert daily(store, DAY)["unknown_cards"] == ["444"]


def test_local_day_and_hour_follow_the_store_time_zone_east_of_utc(store):
    # 00:30 on the 23rd in Beijing is 16:30 on the 22nd in UTC
    store.record(dec(datetime(2026, 11, 22, 16, 30, tzinfo=timezone.utc), card="77"))
    today, yesterday = daily(store, "2026-11-23"), daily(store, DAY)
    assert today["events"] == 1 and today["by_hour"][0] == 1 and sum(today["by_hour"]) == 1
    assert today["new_cards"] == ["77"]
    assert yesterday["events"] == 0 and yesterday["new_cards"] == []


def test_local_day_and_hour_follow_the_store_time_zone_west_of_utc(tmp_path):
    s = Store(tmp_path / "ny.db", gate_id="ny-gate", tz=NEW_YORK)
    try:
        # 23:30 on the 22nd in New York is 04:30 on the 23rd in UTC
        s.record(dec(at(23, 30, tz=NEW_YORK), card="55"))
        rep = daily(s, DAY)
        assert rep["gate"] == "ny-gate"
        assert rep["events"] == 1 and rep["by_hour"][23] == 1 and sum(rep["by_hour"]) == 1
        assert rep["new_cards"] == ["55"]
        assert daily(s, "2026-11-23") == zero_report("2026-11-23", "ny-gate")
    finally:
        s.close()


def test_new_cards_respect_a_daylight_saving_day(tmp_path):
    # 2026-11-01 in New York has 25 hours; a card first seen at 23:30 that day is still that day's
    s = Store(tmp_path / "ny.db", gate_id="ny-gate", tz=NEW_YORK)
    try:
        s.record(dec(datetime(2026, 11, 1, 23, 30, tzinfo=NEW_YORK), card="66"))
        assert daily(s, "2026-11-01")["new_cards"] == ["66"]
        assert daily(s, "2026-11-01")["by_hour"][23] == 1
        assert daily(s, "2026-11-02")["new_cards"] == []
    finally:
        s.close()


def test_cli_report_daily_json_matches_the_store(tmp_path):
    conf = tmp_path / "gate.toml"
    conf.write_text('[gate]\nid = "cli-gate"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n')
    db = tmp_path / "gate.db"
    s = Store(db, gate_id="cli-gate", tz=SHANGHAI)
    s.record(dec(at(9)), direction="in")
    s.record(dec(at(10), "deny", "expired"), direction="in")
    expected = daily(s, DAY)
    s.close()
    done = subprocess.run(
        [sys.executable, "-m", "gate.cli", "report", "daily", "--date", DAY, "--json", "-c", str(conf), "--store", str(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
    assert expected["allowed"] == {"resident": 1} and expected["denied"] == {"expired": 1}
