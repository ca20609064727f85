"""The daily report (日报告, 零报告): every day, from the store, in the gate's local time."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import re

import pytest

from gate.core.records import AlarmRecord, DecisionRecord, DoorRecord, PromptRecord
from gate.store.daily import daily
from gate.store.database import Store

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
        [sys.executable, "-m", "gate.cli.main", "report", "daily", "--date", DAY, "--json", "-c", str(conf), "--store", str(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
    assert expected["allowed"] == {"resident": 1} and expected["denied"] == {"expired": 1}


# ---------------------------------------------------------------- the page people read (PDF, HTML)

from gate.core.records import AckRecord, OverrideRecord  # noqa: E402


def busy_day(s: Store) -> None:
    """A day with a bit of everything, recorded as the lanes record it."""
    s.upsert_passes([
        {"id": "r1", "category": "resident", "unit": "3-2-501", "holder": "王芳"},
        {"id": "r2", "category": "renter", "unit": "5-1-302", "holder": "李雷"},
        {"id": "v1", "category": "visitor", "unit": "1-1-101", "holder": "访客"},
    ], {"1234567": "r1", "7654321": "r2"})
    for i, t in enumerate([36.2, 36.4, 36.5, 36.5, 36.6, 36.7, 36.8, 36.4]):
        s.record(DecisionRecord(
            at=at(7 + i, 10), lane="in", pass_id="r1" if i % 3 else "v1", credential="card" if i == 2 else "qr",
            category="resident" if i % 3 else "visitor", decision="allow", reason="ok", temperature_c=t,
            card="1234567" if i == 2 else None), direction="in")
    r = DecisionRecord(at=at(12, 0), lane="in", pass_id="r2", credential="qr", category="renter",
                       decision="retest", reason="high_temperature", temperature_c=38.1)
    s.record(r, direction="in")
    s.record(DecisionRecord(at=at(12, 1), lane="in", pass_id="r2", credential="qr", category="renter", decision="deny",
                            reason="fever", temperature_c=38.1, situation={"timed_out": True}), direction="in")
    alarm = AlarmRecord(at=at(12, 1), lane="in", kind="fever", detail="38.1 °C", pass_id="r2")
    s.record(alarm)
    s.record(AckRecord(at=at(12, 5), lane="in", alarm_id=alarm.id, kind="fever", who="老张"))
    s.record(AlarmRecord(at=at(13, 30), lane="in", kind="door_held", detail="open 45 s"))
    s.record(OverrideRecord(at=at(14, 0), lane="in", action="open_door", reason="救护/消防 emergency", who="老张"))
    s.record(dec(at(18, 25), "deny", "unknown_card", category=None, pass_id=None, card="999"), direction="in")
    s.record(dec(at(18, 26), "deny", "unknown_card", category=None, pass_id=None, card="999"), direction="in")
    s.record(dec(at(19, 0), "deny", "category_refused", category="courier", pass_id="c1"), direction="in")


def test_report_details_count_each_reading_once(store):
    from gate.config import PolicyConfig
    from gate.desk.report_doc import collect

    busy_day(store)
    d = collect(store, DAY, PolicyConfig())
    # the fever decision after the wait ran out repeats its retest's reading: counted once
    assert sorted(d.temperatures) == sorted([36.2, 36.4, 36.5, 36.5, 36.6, 36.7, 36.8, 36.4, 38.1, 36.5, 36.5, 36.5])
    assert d.hours["allow"][7:15] == [1] * 8 and d.hours["deny"][12] == 1 and d.hours["other"][12] == 1
    assert d.hours["deny"][18] == 2 and d.hours["deny"][19] == 1
    fever, held, opened = d.incidents
    assert (fever["time"], fever["lane"]) == ("12:01:00", "in")
    assert "5-1-302" in fever["detail"] and "38.1 °C" in fever["detail"] and "王" not in fever["detail"]
    assert fever["detail"].endswith("; acknowledged 12:05:00 by 老张")  # the guard's ack of its alarm
    assert held["time"] == "13:30:00" and "open 45 s" in held["detail"]
    assert opened["time"] == "14:00:00" and "救护/消防 emergency (老张)" in opened["detail"]
    assert [c["number"] for c in d.new_cards] == ["1234567", "999"]
    assert d.new_cards[0]["unit"] == "3-2-501" and d.new_cards[1]["unit"] is None
    assert d.unknown_cards == [{"number": "999", "swipes": 2, "time": "18:25:00"}]


def _render_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "gate.toml"
    conf.write_text('[gate]\nid = "east-gate-1"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n')
    return subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "report", "daily", "--date", DAY, "-c", str(conf),
         "--store", str(tmp_path / "gate.db"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def _png_of(pdf: Path):  # -> a BGR image
    import cv2

    subprocess.run(["pdftoppm", "-r", "60", "-png", "-singlefile", str(pdf), str(pdf.with_suffix(""))], check=True)
    return cv2.imread(str(pdf.with_suffix(".png")), cv2.IMREAD_COLOR)


def test_the_daily_report_prints_as_one_readable_page(store, tmp_path):
    import numpy as np

    busy_day(store)
    store.close()
    pdf, html_file = tmp_path / "report.pdf", tmp_path / "report.html"
    done = _render_cli(tmp_path, "--pdf", str(pdf), "--html", str(html_file))
    assert done.returncode == 0, done.stderr
    assert "Daily report 2026-11-22" in done.stdout and "WARNING" not in done.stderr
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Pages:\s+1\n", info) and "595.276 x 841.89" in info  # one A4 page
    img = _png_of(pdf)
    ink = (img < 200).any(axis=2).mean()
    assert 0.02 < ink < 0.5  # not blank, not a black box
    green = np.array([0x32, 0x7d, 0x2e])  # the resident colour (BGR), as a bar
    assert (np.abs(img.astype(int) - green).sum(axis=2) < 40).sum() > 100
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for word in ("门岗日报", "2026-11-22", "east-gate-1", "常住 resident", "发热 fever", "5-1-302", "38.1 °C",
                 "门没有关", "人工开门", "救护/消防 emergency", "1234567", "999", "未知卡 unknown", "此类人员不能进入",
                 "acknowledged 12:05:00 by 老张"):
        assert word in text, word
    assert "王芳" not in text and "李雷" not in text  # no names in a report that is forwarded


def test_the_daily_report_as_html_carries_its_figures(store, tmp_path):
    import base64

    import cv2
    import numpy as np

    busy_day(store)
    store.close()
    out = tmp_path / "report.html"
    assert _render_cli(tmp_path, "--html", str(out)).returncode == 0
    page = out.read_text(encoding="utf-8")
    for fig in ("hourly", "temperatures"):
        m = re.search(rf'<img id="{fig}" alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
        assert m, fig
        img = cv2.imdecode(np.frombuffer(base64.b64decode(m.group(1)), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert img is not None and img.shape[1] > 300 and (img < 200).mean() > 0.01
    for word in ("<td>5-1-302 renter 38.1 °C; acknowledged 12:05:00 by 老张</td>", "<td>999</td>", "<td>1234567</td>",
                 "<td>3-2-501</td>", "门没有关 Door left open", "救护/消防 emergency"):
        assert word in page, word
    assert "src=\"http" not in page and "王芳" not in page  # self-contained, no names


def test_a_zero_report_still_renders(tmp_path):
    pdf = tmp_path / "zero.pdf"
    done = _render_cli(tmp_path, "--pdf", str(pdf), "--png", str(tmp_path / "zero.png"))
    assert done.returncode == 0, done.stderr
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "零报告" in text and "no temperatures today" in text
    img = _png_of(pdf)
    assert (img < 200).any(axis=2).mean() > 0.005
    assert (tmp_path / "zero.png").stat().st_size > 10_000


def test_report_range_exports_events_for_a_spreadsheet(store, tmp_path):
    import csv
    import io

    busy_day(store)
    store.record(dec(at(9, day=21)), direction="in")  # the day before: outside the range
    store.record(dec(at(9, day=24)), direction="in")  # two days after: outside
    n_day = store.conn.execute("SELECT count(*) FROM events WHERE day = ?", (DAY,)).fetchone()[0]
    store.close()
    conf = tmp_path / "gate.toml"
    conf.write_text('[gate]\nid = "east-gate-1"\n[[lanes]]\nname = "in"\ndirection = "in"\ncamera = { driver = "sim" }\n')
    out = tmp_path / "events.csv"
    base = [sys.executable, "-m", "gate.cli.main", "report", "range", "--since", DAY, "--until", "2026-11-23", "-c", str(conf),
            "--store", str(tmp_path / "gate.db")]
    done = subprocess.run([*base, "--csv", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8 Chinese
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert len(rows) == n_day and {r["day"] for r in rows} == {DAY}
    fever = next(r for r in rows if r["reason"] == "fever")
    assert (fever["time"], fever["unit"], fever["temperature_c"], fever["category"]) == (
        "2026-11-22T12:01:00+08:00", "5-1-302", "38.10", "renter")
    opened = next(r for r in rows if r["type"] == "override")
    assert (opened["who"], opened["reason"], opened["action"]) == ("老张", "救护/消防 emergency", "open_door")
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    lines = subprocess.run([*base, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert lines.returncode == 0 and len(lines.stdout.splitlines()) == n_day
    backwards = subprocess.run([*base[:5], "--since", "2026-11-23", "--until", DAY, *base[9:]], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
    assert backwards.returncode == 2 and "before" in backwards.stderr


def test_a_long_day_stays_on_one_page_with_its_fevers(store, tmp_path):
    for i in range(40):
        when = at(6 + i // 4, (i * 7) % 60)
        store.record(dec(when, "deny", "unknown_card", category=None, pass_id=None, card=str(9000000 + i)), direction="in")
        store.record(AlarmRecord(at=when, lane="in", kind="door_held", detail=f"open {30 + i} s"))
    store.upsert_passes([{"id": "r9", "category": "resident", "unit": "9-9-909"}])
    store.record(DecisionRecord(at=at(23, 50), lane="in", pass_id="r9", credential="qr", category="resident",
                                decision="deny", reason="fever", temperature_c=39.2), direction="in")
    store.close()
    pdf = tmp_path / "long.pdf"
    assert _render_cli(tmp_path, "--pdf", str(pdf)).returncode == 0
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Pages:\s+1\n", info)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "9-9-909 resident 39.2 °C" in text  # the last event of the day, listed first
    assert re.search(r"and \d+ more", text)
    assert "Cards: 40 new, 40 unknown" in text
