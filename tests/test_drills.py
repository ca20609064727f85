"""The drills are the acceptance tests: every shared drill and every drill of ours
passes, through the real lane, simulated devices and the real decoders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gate.drill import runner as drill

from gate.drill import file as drill_file
from tests.conftest import ROOT, SHARED
from tests.helpers import decisions, of_type, run_drill

SHARED_DRILLS = sorted((SHARED / "drills").glob("*.yaml"))
OUR_DRILLS = sorted((ROOT / "tests" / "drills").glob("*.yaml"))


def test_shared_drills_are_present() -> None:
    assert len(SHARED_DRILLS) >= 6, f"expected the shared drills in {SHARED / 'drills'}"


@pytest.mark.parametrize("path", SHARED_DRILLS + OUR_DRILLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_drill_passes(path: Path) -> None:
    d = drill_file.load(path)
    assert d.expect, "a drill in the suite must say what it expects"
    result = drill.run(d)
    assert result.unmet is None, f"unmet: {result.unmet}\nlines:\n" + "\n".join(map(str, result.lines))
    assert result.forbidden is None, f"forbidden: {result.forbidden}\nlines:\n" + "\n".join(map(str, result.lines))


def test_drill_cli_json_and_exit_codes(tmp_path: Path) -> None:
    gate = [sys.executable, "-m", "gate.cli.main"]
    ok = subprocess.run([*gate, "drill", "--json", str(SHARED / "drills" / "resident_enters.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    lines = [json.loads(l) for l in ok.stdout.splitlines()]
    assert all({"t", "type", "lane"} <= l.keys() for l in lines)
    allow = next(l for l in lines if l["type"] == "decision")
    assert allow == {
        "t": 1.2, "type": "decision", "lane": "in", "pass": "r1", "credential": "qr", "category": "resident",
        "decision": "allow", "reason": "ok", "temperature_c": 36.4,
    }
    # An expectation that cannot be met: exit 1, naming it.
    bad = tmp_path / "bad.yaml"
    bad.write_text((SHARED / "drills" / "resident_enters.yaml").read_text(encoding="utf-8").replace("reason: ok", "reason: guard_confirmed"), encoding="utf-8")
    res = subprocess.run([*gate, "drill", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1
    assert "guard_confirmed" in res.stderr and "was not seen" in res.stderr


def test_drill_report_is_last_line() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "drill", "--json", "--report", str(SHARED / "drills" / "lent_pass.yaml")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    last = json.loads(res.stdout.splitlines()[-1])
    assert last["type"] == "report"
    assert last["date"] == "2026-11-22"
    assert last["allowed"] == {"resident": 1}
    assert last["denied"] == {"guard_rejected": 1}
    assert last["challenges"] == 1
    assert last["new_cards"] == ["7340021"]
    assert last["unknown_cards"] == []
    assert last["by_hour"][15] == 3 and sum(last["by_hour"]) == 3


def test_drill_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text('name: x\nstart: "2026-11-22T08:00:00+08:00"\nsteps:\n  - {at: 0, lane: in, qrr: r1}\n', encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gate.cli.main", "drill", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "steps[0].qrr: unknown key" in res.stderr


def test_drill_runs_faster_than_real_time() -> None:
    # 43,301 s of gate time (passback_reset) must not take 43,301 s: the clock is moved.
    import time

    t0 = time.monotonic()
    result = drill.run(drill_file.load(ROOT / "tests" / "drills" / "passback_reset.yaml"))
    assert result.ok
    assert time.monotonic() - t0 < 43301 / 100


def test_no_reminder_when_a_pass_comes_in_time_or_by_day() -> None:
    night = run_drill(
        """
        name: night, but the pass follows at once
        start: "2026-11-22T23:10:00+08:00"
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}]
        steps:
          - {at: 0.0, lane: in, presence: true}
          - {at: 2.0, lane: in, qr: r1}
          - {at: 3.0, lane: in, temperature: 36.5}
        """
    )
    assert [l["key"] for l in of_type(night, "prompt") if l["key"] == "reminder"] == []
    assert decisions(night, decision="allow")
    day = run_drill(
        """
        name: daytime presence
        start: "2026-11-22T10:00:00+08:00"
        steps:
          - {at: 0.0, lane: in, presence: true}
          - {at: 30.0, lane: in, presence: false}
        """
    )
    assert of_type(day, "prompt") == []


def test_passback_off_lets_a_pass_in_twice() -> None:
    res = run_drill(
        """
        name: passback off
        start: "2026-11-22T10:00:00+08:00"
        config: {policy: {passback: "off"}}
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}]
        steps:
          - {at: 0.0, lane: in, qr: r1}
          - {at: 1.0, lane: in, temperature: 36.5}
          - {at: 30.0, lane: in, qr: r1}
          - {at: 31.0, lane: in, temperature: 36.5}
        """
    )
    assert [l["reason"] for l in decisions(res)] == ["ok", "ok"]
    assert of_type(res, "alarm") == []


def test_stray_code_does_not_cut_short_a_waiting_person() -> None:
    res = run_drill(
        """
        name: an advert QR passes through the frame while the resident measures
        start: "2026-11-22T10:00:00+08:00"
        passes: [{id: r1, holder: 王芳, unit: 3-2-501, category: resident}]
        steps:
          - {at: 0.0, lane: in, qr: r1}
          - {at: 1.0, lane: in, qr_text: "https://example.com/menu"}
          - {at: 2.0, lane: in, temperature: 36.5}
        """
    )
    assert [(l["pass"], l["reason"]) for l in decisions(res)] == [(None, "malformed"), ("r1", "ok")]


def test_every_dril_rule_has_a_drill() -> None:
    """Each reason of DRILLS.md's vocabulary is exercised by a drill that expects it."""
    reasons = {
        "ok", "guard_confirmed", "exit_button", "high_temperature", "passback", "holder_check", "malformed",
        "forged", "unknown_pass", "revoked", "expired", "not_yet_valid", "fever", "no_temperature", "observation",
        "category_refused", "outside_hours", "pcr_required", "health_code", "unknown_card", "guard_rejected",
    }
    expected = set()
    for path in SHARED_DRILLS + OUR_DRILLS:
        for e in drill_file.load(path).expect:
            if "reason" in e:
                expected.add(e["reason"])
    assert reasons - expected == set()
