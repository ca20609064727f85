"""`gate policy replay`: a recorded week (tests/week.py, run through the real lanes)
replayed through changed policies reports exactly the decisions each change flips."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from gate.config import PolicyConfig
from gate.desk.replay import format_text, replay
from gate.store.database import Store
from tests.conftest import ROOT
from tests.week import POLICY, TZ, record_week

SINCE, UNTIL = date(2026, 11, 2), date(2026, 11, 8)


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("week") / "gate.db"
    lines = record_week(path)
    return path, lines


def run_replay(store_path: Path, **policy) -> dict:
    s = Store(store_path, gate_id="drill", tz=TZ)
    try:
        return replay(s.conn, PolicyConfig.model_validate(policy), SINCE, UNTIL, TZ).to_json()
    finally:
        s.close()


def flips(result: dict) -> Counter:
    return Counter({
        (t["old"]["decision"], t["old"]["reason"], t["new"]["decision"], t["new"]["reason"]): t["count"]
        for t in result["transitions"]
    })


def examples(result: dict, old: tuple[str, str], new: tuple[str, str]) -> list[tuple[str, str]]:
    (t,) = [t for t in result["transitions"] if (t["old"]["decision"], t["old"]["reason"]) == old
            and (t["new"]["decision"], t["new"]["reason"]) == new]
    return [(e["pass"], e["at"][:10]) for e in t["examples"]]


def test_the_week_was_recorded_as_its_script_says(week):
    _, lines = week
    got = Counter((l["pass"], l["decision"], l["reason"]) for l in lines)
    assert got == Counter({
        ("w1", "allow", "ok"): 3, ("w1", "deny", "pcr_required"): 4,
        ("w2", "deny", "pcr_required"): 4, ("w2", "allow", "ok"): 3,
        ("w3", "deny", "pcr_required"): 7,
        ("f_ok", "retest", "high_temperature"): 1, ("f_ok", "allow", "ok"): 1,
        ("f_twice", "retest", "high_temperature"): 1, ("f_twice", "deny", "fever"): 1,
        ("f_high", "retest", "high_temperature"): 1, ("f_high", "deny", "fever"): 1,
        ("f_walk", "retest", "high_temperature"): 1, ("f_walk", "deny", "fever"): 1,
        ("f_edge", "retest", "high_temperature"): 1, ("f_edge", "allow", "ok"): 1,
        (None, "allow", "exit_button"): 1,
    })


def test_the_policy_that_recorded_the_week_changes_nothing(week):
    result = run_replay(week[0], **POLICY)
    assert result["decisions"] == 32
    assert result["replayed"] == 31 and result["not_replayable"] == {"exit_button": 1}
    assert result["changed"] == 0 and result["transitions"] == [] and result["unchanged"] == 31


def test_a_higher_fever_line_flips_exactly_the_readings_between_the_lines(week):
    result = run_replay(week[0], **{**POLICY, "fever_c": 37.5})
    # 37.4 is under the new line: the retests of f_ok, f_twice and f_walk become entries, and so do
    # f_twice's and f_walk's fever denials; 37.5 (f_edge) and 37.8 (f_high) are still at or over it.
    assert flips(result) == Counter({
        ("retest", "high_temperature", "allow", "ok"): 3,
        ("deny", "fever", "allow", "ok"): 2,
    })
    assert result["unchanged"] == 26
    assert examples(result, ("retest", "high_temperature"), ("allow", "ok")) == [
        ("f_ok", "2026-11-02"), ("f_twice", "2026-11-03"), ("f_walk", "2026-11-05")]
    assert examples(result, ("deny", "fever"), ("allow", "ok")) == [("f_twice", "2026-11-03"), ("f_walk", "2026-11-05")]


def test_a_lower_fever_line_makes_normal_readings_retests(week):
    result = run_replay(week[0], **{**POLICY, "fever_c": 37.0})
    # f_ok's second reading 37.2 and f_edge's 37.0 are now at or over the line: their entries become
    # fever denials; the 36.5 entries stay.
    assert flips(result) == Counter({("allow", "ok", "deny", "fever"): 2})
    assert examples(result, ("allow", "ok"), ("deny", "fever")) == [("f_ok", "2026-11-02"), ("f_edge", "2026-11-06")]


def test_a_narrower_test_window_flips_exactly_the_entries_between_48_and_72_hours(week):
    result = run_replay(week[0], **{**POLICY, "pcr_within_h": 48})
    # w1 (tested day 0) on day 2 and w2 (tested day 3) on day 5: 49 hours after their tests.
    assert flips(result) == Counter({("allow", "ok", "deny", "pcr_required"): 2})
    assert examples(result, ("allow", "ok"), ("deny", "pcr_required")) == [("w1", "2026-11-04"), ("w2", "2026-11-07")]
    assert result["unchanged"] == 29


def test_no_test_window_leaves_the_refused_waiting_for_a_temperature(week):
    result = run_replay(week[0], **{**POLICY, "pcr_within_h": None})
    # Refused at the QR, before they measured: the recording cannot say what they would have measured.
    assert flips(result) == Counter({("deny", "pcr_required", "wait", "temperature"): 15})
    text = format_text(replay_obj(week[0], pcr_within_h=None))
    assert "wait (for a temperature not recorded)" in text


def replay_obj(store_path: Path, **change):
    s = Store(store_path, gate_id="drill", tz=TZ)
    try:
        return replay(s.conn, PolicyConfig.model_validate({**POLICY, **change}), SINCE, UNTIL, TZ)
    finally:
        s.close()


def test_the_period_limits_what_is_replayed(week):
    s = Store(week[0], gate_id="drill", tz=TZ)
    try:
        one = replay(s.conn, PolicyConfig.model_validate({**POLICY, "fever_c": 37.5}), date(2026, 11, 3), date(2026, 11, 3), TZ)
    finally:
        s.close()
    assert one.decisions == 5
    assert {(t.old, t.new): t.count for t in one.transitions} == {
        (("retest", "high_temperature"), ("allow", "ok")): 1, (("deny", "fever"), ("allow", "ok")): 1}


def test_cli_replay_text_and_json(week, tmp_path):
    conf = tmp_path / "gate.toml"
    conf.write_text('[gate]\nid = "drill"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n')
    new = tmp_path / "new.toml"
    new.write_text("[policy]\nfever_c = 37.5\npcr_within_h = 48\n")
    base = [sys.executable, "-m", "gate.cli.main", "policy", "replay", str(new), "--since", "2026-11-02", "--until", "2026-11-08",
            "-c", str(conf), "--store", str(week[0])]
    done = subprocess.run([*base, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert flips(result) == Counter({
        ("retest", "high_temperature", "allow", "ok"): 3,
        ("deny", "fever", "allow", "ok"): 2,
        ("allow", "ok", "deny", "pcr_required"): 2,
    })
    text = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "different: 7" in text.stdout
    assert "retest high_temperature -> allow ok" in text.stdout
    assert "2026-11-04T08:00:01+08:00  in   w1 (resident) 36.5 °C" in text.stdout
    bad = subprocess.run([*base[:5], str(new), "--since", "2026-11-08", "--until", "2026-11-02", *base[-4:]],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "before" in bad.stderr
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[policy]\nfever_c = 'hot'\n")
    refused = subprocess.run([*base[:5], str(wrong), *base[6:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "fever_c" in refused.stderr and "Traceback" not in refused.stderr
