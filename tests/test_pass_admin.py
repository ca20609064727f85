"""`gate passes list/show/revoke/export`: the pass table at the desk."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.core.records import DecisionRecord
from gate.store.database import Store
from tests.conftest import ROOT

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def desk(tmp_path: Path) -> dict:
    conf = tmp_path / "gate.toml"
    conf.write_text(f'[gate]\nid = "east"\n[store]\npath = "{tmp_path / "gate.db"}"\n'
                    '[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n', encoding="utf-8")
    s = Store(tmp_path / "gate.db", gate_id="east", tz=SHANGHAI)
    try:
        s.upsert_passes([
            {"id": "3-2-1001-张伟", "holder": "张伟", "unit": "3-2-1001", "category": "resident", "phone_last4": "0042"},
            {"id": "3-2-501-王芳", "holder": "王芳", "unit": "3-2-501", "category": "resident", "phone_last4": "1234",
             "valid_until": datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI),
             "pcr_at": datetime(2026, 11, 21, 9, 30, tzinfo=SHANGHAI)},
            {"id": "5-1-302-李雷", "holder": "李雷", "unit": "5-1-302", "category": "returnee",
             "observation_until": datetime(2026, 12, 5, 23, 59, 59, tzinfo=SHANGHAI)},
            {"id": "3-20-101-赵六", "holder": "赵六", "unit": "3-20-101", "category": "renter", "health_code": "yellow"},
        ], {"1234567": "3-2-501-王芳", "7654321": "5-1-302-李雷"})
        s.record(DecisionRecord(at=datetime(2026, 11, 22, 8, 0, tzinfo=SHANGHAI), lane="in", pass_id="3-2-501-王芳",
                                credential="card", category="resident", decision="allow", reason="ok",
                                temperature_c=36.4, card="1234567"), direction="in")
    finally:
        s.close()
    return {"conf": conf, "db": tmp_path / "gate.db", "tmp": tmp_path}


def gate(desk: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gate.cli.main", "passes", *args, "-c", str(desk["conf"])],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_list_sorts_by_unit_and_filters(desk):
    done = gate(desk, "list")
    assert done.returncode == 0, done.stderr
    units = [line.split()[0] for line in done.stdout.splitlines()]
    assert units == ["3-2-501", "3-2-1001", "3-20-101", "5-1-302"]  # 501 before 1001: numbers, not text
    assert "4 passes" in done.stderr
    only = gate(desk, "list", "--unit", "3-2", "--json")
    assert [json.loads(line)["id"] for line in only.stdout.splitlines()] == ["3-2-501-王芳", "3-2-1001-张伟"]
    by_cat = gate(desk, "list", "--category", "returnee", "--csv")
    rows = list(csv.DictReader(io.StringIO(by_cat.stdout)))
    assert [(r["name"], r["card"], r["observation_until"]) for r in rows] == [("李雷", "7654321", "2026-12-05 23:59:59")]
    found = gate(desk, "list", "--search", "1234567", "--json")
    assert [json.loads(line)["name"] for line in found.stdout.splitlines()] == ["王芳"]
    assert gate(desk, "list", "--json", "--csv").returncode == 2


def test_revoke_is_refused_at_once_recorded_and_can_be_taken_back(desk):
    done = gate(desk, "revoke", "3-2-501-王芳", "--by", "张主任", "--reason", "通行证遗失 lost")
    assert done.returncode == 0, done.stderr
    s = Store(desk["db"], gate_id="east", tz=SHANGHAI)
    try:
        assert s.get_pass("3-2-501-王芳").revoked
        event = s.events()[-1]
        assert {k: event[k] for k in ("type", "action", "pass", "who", "reason", "lane")} == {
            "type": "admin", "action": "revoke", "pass": "3-2-501-王芳", "who": "张主任", "reason": "通行证遗失 lost", "lane": ""}
        # it goes upstream like every event
        (payload,) = s.conn.execute("SELECT payload FROM outbox WHERE event_id = ?", (event["id"],)).fetchone()
        assert json.loads(payload)["action"] == "revoke"
    finally:
        s.close()
    again = gate(desk, "revoke", "3-2-501-王芳", "--by", "张主任", "--reason", "again")
    assert again.returncode == 1 and "already revoked" in again.stderr
    assert gate(desk, "list", "--revoked", "--json").stdout.count("\n") == 1
    undo = gate(desk, "revoke", "3-2-501-王芳", "--undo", "--by", "张主任", "--reason", "找到了 found")
    assert undo.returncode == 0, undo.stderr
    show = json.loads(gate(desk, "show", "3-2-501-王芳", "--json").stdout)
    assert show["revoked"] == ""
    assert [(d["action"], d["who"], d["reason"]) for d in show["desk"]] == [
        ("revoke", "张主任", "通行证遗失 lost"), ("unrevoke", "张主任", "找到了 found")]
    missing = gate(desk, "revoke", "nobody", "--by", "x", "--reason", "y")
    assert missing.returncode == 1 and "no pass" in missing.stderr
    nameless = gate(desk, "revoke", "3-2-501-王芳", "--by", " ", "--reason", "y")
    assert nameless.returncode == 1 and "--by" in nameless.stderr


def test_a_revoked_pass_is_denied_by_the_policy(desk):
    """What the lane will see: the pass table says revoked, and decide() refuses it."""
    from gate.config import PolicyConfig
    from gate.core.policy import Situation, decide

    assert gate(desk, "revoke", "3-2-501-王芳", "--by", "张主任", "--reason", "lost").returncode == 0
    s = Store(desk["db"], gate_id="east", tz=SHANGHAI)
    try:
        p = s.get_pass("3-2-501-王芳")
    finally:
        s.close()
    verdict = decide(Situation("in", datetime(2026, 11, 22, 9, 0, tzinfo=SHANGHAI), p, temperatures=(36.5,)), PolicyConfig())
    assert (verdict.decision, verdict.reason) == ("deny", "revoked")


def test_show_tells_everything_about_one_pass(desk):
    done = gate(desk, "show", "3-2-501-王芳")
    assert done.returncode == 0, done.stderr
    assert "3-2-501-王芳: 王芳, 3-2-501, resident" in done.stdout
    assert "card 1234567" in done.stdout and "1 swipes" in done.stdout
    assert "inside since 2026-11-22 08:00:00 (lane in)" in done.stdout
    assert "2026-11-22 08:00:00 in   allow ok 36.4 °C" in done.stdout
    assert "valid_until: 2026-12-31 23:59:59" in done.stdout
    nobody = gate(desk, "show", "nobody")
    assert nobody.returncode == 1 and "no pass" in nobody.stderr


def test_export_imports_back_unchanged(desk):
    out = desk["tmp"] / "passes.csv"
    done = gate(desk, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r["id"] for r in rows] == ["3-2-501-王芳", "3-2-1001-张伟", "3-20-101-赵六", "5-1-302-李雷"]
    assert rows[1]["phone_last4"] == "0042" and rows[2]["health_code"] == "yellow"
    back = gate(desk, "import", str(out), "--dry-run", "--json")
    assert back.returncode == 0, back.stderr
    result = json.loads(back.stdout)
    assert result["unchanged"] == 4 and result["new"] == [] and result["updated"] == []
    lines = gate(desk, "export", "--json", "--unit", "5-1")
    assert [json.loads(line)["id"] for line in lines.stdout.splitlines()] == ["5-1-302-李雷"]
