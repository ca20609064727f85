"""Rosters: the CSV a community office keeps (Chinese or English headers, UTF-8 or
GBK), all of it imported or none of it."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gate.desk.roster import RosterError, read_roster
from gate.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
SHANGHAI = ZoneInfo("Asia/Shanghai")

ZH_HEADER = "姓名,楼栋,单元,房号,类别,手机号后四位,门禁卡号,隔离截止,核酸时间,有效期至"
ZH_ROWS = [
    "王芳,3,2,501,常住,1234,1234567,,2026-11-21 09:30,2026-12-31",
    "李雷,5,1,302,返京,5678,7654321,2026-12-05,2026-11-20,",
    "韩梅梅,5,1,303,租住,0042,,,,",
    "赵六,1,1,101,访客,,,,,2026-11-22",
    "钱七,物业,,值班室,工作人员,9999,,,,",
    "孙八,-,-,-,快递,,,,,",
]


def csv_file(tmp_path: Path, lines: list[str], name: str = "roster.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def by_holder(roster) -> dict:
    return {r["holder"]: r for r in roster.rows}


def roster_error(path: Path) -> str:
    with pytest.raises(RosterError) as info:
        read_roster(path)
    return str(info.value)


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_chinese_roster_maps_every_column(tmp_path, encoding):
    roster = read_roster(csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS], encoding=encoding))
    rows = by_holder(roster)
    assert len(roster.rows) == len(ZH_ROWS)
    wang = rows["王芳"]
    assert wang["unit"] == "3-2-501"
    assert wang["id"] == "3-2-501-王芳"
    assert wang["category"] == "resident"
    assert wang["phone_last4"] == "1234"
    assert wang["pcr_at"] == datetime(2026, 11, 21, 9, 30, tzinfo=SHANGHAI)
    assert wang["valid_until"] == datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)  # through that day
    assert wang["valid_from"] is None and wang["observation_until"] is None
    li = rows["李雷"]
    assert (li["category"], li["unit"]) == ("returnee", "5-1-302")
    assert li["observation_until"].date().isoformat() == "2026-12-05"
    assert li["observation_until"].utcoffset() == SHANGHAI.utcoffset(li["observation_until"])
    assert rows["韩梅梅"]["category"] == "renter" and rows["韩梅梅"]["phone_last4"] == "0042"
    assert rows["韩梅梅"]["valid_until"] is None
    assert rows["赵六"]["category"] == "visitor" and rows["赵六"]["phone_last4"] is None
    assert rows["钱七"]["category"] == "staff"
    assert rows["孙八"]["category"] == "courier"
    assert roster.cards == {"1234567": "3-2-501-王芳", "7654321": "5-1-302-李雷"}
    assert all("card" not in r for r in roster.rows)  # bindings travel separately


def test_gbk_and_utf8_files_read_the_same(tmp_path):
    a = read_roster(csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS], "a.csv", "utf-8"))
    b = read_roster(csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS], "b.csv", "gbk"))
    assert a.rows == b.rows and a.cards == b.cards


def test_english_roster_with_its_own_ids(tmp_path):
    path = csv_file(tmp_path, [
        "id,name,unit,category,phone_last4,card,valid_from,valid_until,health_code,pcr_at",
        "P-001,Wang Fang,3-2-501,resident,1234,1234567,2026-11-01,2026/12/31,green,2026-11-21T09:30:00",
        "P-002,Li Lei,5-1-302,Returnee,5678,,,,yellow,",
    ])
    roster = read_roster(path)
    one, two = roster.rows
    assert (one["id"], one["holder"], one["unit"], one["category"]) == ("P-001", "Wang Fang", "3-2-501", "resident")
    assert one["valid_from"] == datetime(2026, 11, 1, tzinfo=SHANGHAI)  # from the start of the day
    assert one["valid_until"] == datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)
    assert one["pcr_at"] == datetime(2026, 11, 21, 9, 30, tzinfo=SHANGHAI)
    assert one["health_code"] == "green"
    assert (two["id"], two["category"], two["health_code"]) == ("P-002", "returnee", "yellow")
    assert roster.cards == {"1234567": "P-001"}


def test_chinese_health_codes(tmp_path):
    path = csv_file(tmp_path, ["姓名,房号,类别,健康码", "甲,101,常住,绿码", "乙,102,常住,黄", "丙,103,常住,红码"])
    assert [r["health_code"] for r in read_roster(path).rows] == ["green", "yellow", "red"]


def test_dates_are_in_the_gate_time_zone(tmp_path):
    path = csv_file(tmp_path, ["name,unit,category,valid_until", "A,101,resident,2026-12-31"])
    (row,) = read_roster(path, tz="America/New_York").rows
    assert row["valid_until"] == datetime(2026, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("America/New_York"))


def test_blank_lines_are_skipped(tmp_path):
    roster = read_roster(csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0], "", ",,,,,,,,,", ZH_ROWS[2]]))
    assert [r["holder"] for r in roster.rows] == ["王芳", "韩梅梅"]


def test_a_header_only_roster_is_empty(tmp_path):
    roster = read_roster(csv_file(tmp_path, [ZH_HEADER]))
    assert roster.rows == [] and roster.cards == {}


# ---------------------------------------------------------------- refusing


BAD_ROWS = {
    "unknown category": ("张三,1,1,101,外卖,1111,,,,", "外卖"),
    "phone with 5 digits": ("张三,1,1,101,常住,12345,,,,", "12345"),
    "phone with 3 digits": ("张三,1,1,101,常住,123,,,,", "123"),
    "phone not digits": ("张三,1,1,101,常住,12a4,,,,", "12a4"),
    "card not digits": ("张三,1,1,101,常住,1111,A12,,,", "A12"),
    "duplicate card": ("张三,1,1,101,常住,1111,1234567,,,", "1234567"),
    "duplicate person": ("王芳,3,2,501,常住,1234,,,,", "3-2-501-王芳"),
    "empty name": (",1,1,101,常住,1111,,,,", "姓名"),
    "no unit": ("张三,,,,常住,1111,,,,", "房号"),
    "bad date": ("张三,1,1,101,常住,1111,,,,2026-13-45", "2026-13-45"),
}


@pytest.mark.parametrize("bad, shown", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_refuses_the_whole_file_naming_its_row(tmp_path, bad, shown):
    path = csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0], ZH_ROWS[1], bad, ZH_ROWS[2]])
    message = roster_error(path)
    assert re.findall(r"row (\d+):", message) == ["4"]  # the spreadsheet row: header is row 1
    assert str(path) in message and shown in message


def test_every_bad_row_is_listed(tmp_path):
    path = csv_file(tmp_path, [ZH_HEADER, "甲,1,1,101,外卖,,,,,", ZH_ROWS[0], "乙,1,1,102,常住,1,,,,"])
    message = roster_error(path)
    assert re.findall(r"row (\d+):", message) == ["2", "4"]


def test_row_numbers_count_blank_lines(tmp_path):
    path = csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0], "", "甲,1,1,101,外卖,,,,,"])
    assert re.findall(r"row (\d+):", roster_error(path)) == ["4"]


@pytest.mark.parametrize("header", ["房号,类别", "姓名,房号", "姓名,类别,手机号后四位", "姓名,楼栋,类别"])
def test_a_header_without_the_needed_columns_is_refused(tmp_path, header):
    roster_error(csv_file(tmp_path, [header, "x,y,z"]))


def test_unreadable_files_are_roster_errors(tmp_path):
    assert "roster.csv" in roster_error(tmp_path / "roster.csv")  # missing
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty.csv" in roster_error(empty)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xff\x80\x00")
    assert "binary.csv" in roster_error(binary)


# ---------------------------------------------------------------- the import command


CONFIG = '[[lanes]]\nname="in"\ndirection="in"\ncamera={driver="sim"}\n'


def gate_import(tmp_path: Path, roster: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "gate.toml"
    if not conf.exists():
        conf.write_text(CONFIG)
    return subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "passes", "import", str(roster), "-c", str(conf),
         "--store", str(tmp_path / "gate.db"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def snapshot(db: Path) -> tuple[list, list]:
    s = Store(db)
    try:
        passes = s.conn.execute("SELECT id, holder, unit, category, phone_last4, valid_until FROM passes ORDER BY id").fetchall()
        cards = s.conn.execute("SELECT number, pass_id FROM card_bindings ORDER BY number").fetchall()
        return passes, cards
    finally:
        s.close()


def test_cli_imports_a_good_roster(tmp_path):
    done = gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS], encoding="gbk"))
    assert done.returncode == 0, done.stderr
    s = Store(tmp_path / "gate.db")
    try:
        assert s.pass_count() == len(ZH_ROWS)
        wang = s.get_pass("3-2-501-王芳")
        assert (wang.holder, wang.unit, wang.category, wang.phone_last4) == ("王芳", "3-2-501", "resident", "1234")
        assert wang.valid_until == datetime(2026, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)
        assert s.card_pass("1234567") == "3-2-501-王芳"
        assert s.get_pass("5-1-302-李雷").observation_until.astimezone(SHANGHAI).date().isoformat() == "2026-12-05"
    finally:
        s.close()
    again = gate_import(tmp_path, tmp_path / "roster.csv")
    assert again.returncode == 0
    assert "0 new" in again.stdout
    assert len(snapshot(tmp_path / "gate.db")[0]) == len(ZH_ROWS)


def test_cli_a_roster_with_a_bad_row_changes_nothing(tmp_path):
    assert gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS[:2]], "first.csv")).returncode == 0
    before = snapshot(tmp_path / "gate.db")
    changed = ZH_ROWS[0].replace(",1234,", ",4321,")  # a good change to an existing pass ...
    bad = csv_file(tmp_path, [ZH_HEADER, changed, ZH_ROWS[2], "张三,1,1,101,外卖,1111,,,,"], "second.csv")
    done = gate_import(tmp_path, bad)  # ... in a file with a bad row
    assert done.returncode == 2
    assert "row 4" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(tmp_path / "gate.db") == before


def test_cli_dry_run_writes_nothing(tmp_path):
    assert gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0]], "first.csv")).returncode == 0
    before = snapshot(tmp_path / "gate.db")
    roster = csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0].replace(",1234,", ",4321,"), *ZH_ROWS[1:]], "second.csv")
    done = gate_import(tmp_path, roster, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run" in done.stdout
    assert snapshot(tmp_path / "gate.db") == before


def test_cli_dry_run_does_not_create_a_store(tmp_path):
    done = gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS]), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "gate.db").exists()


# ---------------------------------------------------------------- XLSX, a whole community, what changes

import json  # noqa: E402
import time  # noqa: E402

from tests.rosters import household_rows, write_csv, write_xlsx  # noqa: E402


def test_xlsx_reads_like_the_csv_it_was_saved_from(tmp_path):
    rows = household_rows(60)
    from_csv = read_roster(write_csv(tmp_path / "r.csv", rows))
    from_xlsx = read_roster(write_xlsx(tmp_path / "r.xlsx", rows, title="阳光小区住户花名册"))  # a title row above the header
    assert from_xlsx.rows == from_csv.rows and from_xlsx.cards == from_csv.cards
    assert from_xlsx.ignored == ["备注"]
    # Excel stored the phone tails as numbers; leading zeros come back.
    assert any(r["phone_last4"].startswith("0") for r in from_xlsx.rows)


def test_xlsx_bad_row_is_reported_by_its_sheet_row(tmp_path):
    rows = household_rows(5)
    rows[2][4] = "外卖"  # the third person: sheet row 5 (title row 1, header row 2)
    rows[3][5] = "12345"
    path = write_xlsx(tmp_path / "bad.xlsx", rows, title="花名册")
    message = roster_error(path)
    assert re.findall(r"row (\d+):", message) == ["5", "6"]
    assert "外卖" in message and "12345" in message and "bad.xlsx" in message


def test_a_file_that_is_not_a_workbook_is_refused(tmp_path):
    fake = tmp_path / "roster.xlsx"
    fake.write_bytes(b"PK\x03\x04 not really a zip")
    assert "roster.xlsx" in roster_error(fake)
    old = tmp_path / "roster.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0 old excel")
    assert ".xlsx" in roster_error(old)


def test_a_full_phone_number_keeps_only_its_last_four_digits(tmp_path):
    path = csv_file(tmp_path, ["姓名,房号,类别,手机号", "甲,101,常住,138-0013-8000", "乙,102,常住,+86 139 0000 0042"])
    assert [r["phone_last4"] for r in read_roster(path).rows] == ["8000", "0042"]


def test_validity_that_ends_before_it_starts_is_a_bad_row(tmp_path):
    path = csv_file(tmp_path, ["姓名,房号,类别,有效期自,有效期至", "甲,101,常住,2026-12-01,2026-11-01"])
    assert "row 2" in roster_error(path)


def test_a_3000_household_chinese_roster_imports(tmp_path):
    rows = household_rows(3000)
    path = write_xlsx(tmp_path / "community.xlsx", rows, title="阳光小区住户花名册")
    t0 = time.perf_counter()
    done = gate_import(tmp_path, path, "--json", "--by", "张主任")
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rows"] == len(rows) and len(out["new"]) == len(rows) and out["unchanged"] == 0
    assert elapsed < 60  # the figure to report is out["seconds"]; this bound only catches a hang
    s = Store(tmp_path / "gate.db")
    try:
        assert s.pass_count() == len(rows)
        cards = sum(1 for r in rows if r[6])
        assert s.conn.execute("SELECT count(*) FROM card_bindings").fetchone()[0] == cards
        first = rows[0]
        p = s.get_pass(f"{first[0]}-{first[1]}-{first[2]}-{first[3]}")
        assert p is not None and p.holder == first[3] and p.phone_last4 == first[5]
        (event,) = s.events()
        assert (event["type"], event["action"], event["who"], event["reason"]) == ("admin", "roster_import", "张主任", "community.xlsx")
        assert f"{len(rows)} new" in event["detail"]
    finally:
        s.close()
    again = gate_import(tmp_path, write_csv(tmp_path / "community.csv", rows), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == len(rows)  # the same people from the CSV: nothing to do


def test_a_3000_household_roster_with_one_bad_row_changes_nothing(tmp_path):
    rows = household_rows(3000)
    assert gate_import(tmp_path, write_csv(tmp_path / "first.csv", rows[:100])).returncode == 0
    before = snapshot(tmp_path / "gate.db")
    bad = [list(r) for r in rows]
    bad[2500][4] = "外卖"
    done = gate_import(tmp_path, write_xlsx(tmp_path / "bad.xlsx", bad))
    assert done.returncode == 2
    assert re.findall(r"row (\d+):", done.stderr) == ["2502"] and "外卖" in done.stderr
    assert snapshot(tmp_path / "gate.db") == before
    s = Store(tmp_path / "gate.db")
    try:
        assert [e["action"] for e in s.events()] == ["roster_import"]  # only the first, good import
    finally:
        s.close()


def test_dry_run_names_what_is_new_updated_and_unchanged(tmp_path):
    assert gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS[:3]], "first.csv")).returncode == 0
    before = snapshot(tmp_path / "gate.db")
    second = [ZH_HEADER, ZH_ROWS[0].replace(",1234,", ",4321,"), ZH_ROWS[1], *ZH_ROWS[2:]]
    roster = csv_file(tmp_path, second, "second.csv")
    done = gate_import(tmp_path, roster, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["dry_run"] is True
    assert out["new"] == ["1-1-101-赵六", "物业-值班室-钱七", "------孙八"]
    assert out["updated"] == [{"id": "3-2-501-王芳", "row": 2, "changes": [{"field": "phone_last4", "old": "1234", "new": "4321"}]}]
    assert out["unchanged"] == 2
    text = gate_import(tmp_path, roster, "--dry-run")
    assert "3 new, 1 updated, 2 unchanged" in text.stdout and "dry run" in text.stdout
    assert "updated (row 2) 3-2-501-王芳: phone_last4 1234 -> 4321" in text.stdout
    assert "new: 1-1-101-赵六" in text.stdout
    assert snapshot(tmp_path / "gate.db") == before


def test_a_replaced_card_stops_working_and_a_revocation_stays(tmp_path):
    assert gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, *ZH_ROWS[:2]], "first.csv")).returncode == 0
    conf = tmp_path / "gate.toml"
    revoke = subprocess.run(
        [sys.executable, "-m", "gate.cli.main", "passes", "revoke", "5-1-302-李雷", "--by", "张主任", "--reason", "搬走",
         "-c", str(conf), "--store", str(tmp_path / "gate.db")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    # 王芳 lost her card 1234567 and got 1111111; the office's file still lists 李雷 (moved out, revoked here).
    second = [ZH_HEADER, ZH_ROWS[0].replace(",1234567,", ",1111111,"), ZH_ROWS[1]]
    done = gate_import(tmp_path, csv_file(tmp_path, second, "second.csv"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cards_bound"] == [{"card": "1111111", "pass": "3-2-501-王芳"}]
    assert out["cards_unbound"] == [{"card": "1234567", "pass": "3-2-501-王芳"}]
    assert out["revoked_kept"] == ["5-1-302-李雷"]
    s = Store(tmp_path / "gate.db")
    try:
        assert s.card_pass("1111111") == "3-2-501-王芳"
        assert s.card_pass("1234567") is None  # the lost card opens nothing
        assert s.get_pass("5-1-302-李雷").revoked
    finally:
        s.close()


def test_columns_the_file_does_not_have_are_left_alone(tmp_path):
    assert gate_import(tmp_path, csv_file(tmp_path, [ZH_HEADER, ZH_ROWS[0]], "full.csv")).returncode == 0
    # A later file with only name, unit and category: the phone, card and dates stay as they were.
    slim = csv_file(tmp_path, ["姓名,楼栋,单元,房号,类别", "王芳,3,2,501,常住"], "slim.csv")
    done = gate_import(tmp_path, slim, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["unchanged"] == 1
    s = Store(tmp_path / "gate.db")
    try:
        p = s.get_pass("3-2-501-王芳")
        assert p.phone_last4 == "1234" and p.pcr_at is not None and p.valid_until is not None
        assert s.card_pass("1234567") == "3-2-501-王芳"
    finally:
        s.close()


def test_columns_the_config_names_become_attributes_that_rules_read(tmp_path):
    (tmp_path / "gate.toml").write_text(CONFIG + '[roster]\nattributes = {"疫苗剂次" = "vaccine_doses", "安全培训" = "safety_course"}\n')
    header = ["姓名", "房号", "类别", "身份证号", "疫苗剂次", "安全培训"]
    rows = [["何静", "2-2-202", "常住", "110101199001011234", "2", "是"],
            ["吕刚", "2-2-201", "租住", "110101199001015678", "1", "否"],
            ["施洁", "2-2-203", "常住", "110101199001019012", "", ""]]
    done = gate_import(tmp_path, csv_file(tmp_path, [",".join(r) for r in (header, *rows)]), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ignored_columns"] == ["身份证号"]
    s = Store(tmp_path / "gate.db")
    try:
        he, lv, shi = (s.get_pass(p) for p in ("2-2-202-何静", "2-2-201-吕刚", "2-2-203-施洁"))
        dump = "\n".join(s.conn.iterdump())
    finally:
        s.close()
    assert he.attributes == {"vaccine_doses": 2, "safety_course": True}
    assert lv.attributes == {"vaccine_doses": 1, "safety_course": False}
    assert shi.attributes is None
    assert "110101199001011234" not in dump  # an unmapped column is never kept
    from gate.config import PolicyConfig
    from gate.core.policy import Situation, decide

    policy = PolicyConfig.model_validate({"rules": [{"name": "vaccinated", "require": "pass.attributes.vaccine_doses >= 2",
                                                     "prompt": {"zh": "请先接种", "en": "Vaccinate first."}}]})
    now = datetime(2026, 11, 22, 10, tzinfo=SHANGHAI)
    verdicts = [decide(Situation("in", now, p, temperatures=(36.5,)), policy) for p in (he, lv, shi)]
    assert [(v.reason, v.rule) for v in verdicts] == [("ok", None), ("rule", "vaccinated"), ("rule", "vaccinated")]
    # Importing again changes nothing; a changed dose count is an update.
    assert "0 new, 0 updated" in gate_import(tmp_path, tmp_path / "roster.csv").stdout
    rows[1][4] = "2"
    changed = gate_import(tmp_path, csv_file(tmp_path, [",".join(r) for r in (header, *rows)]))
    assert "1 updated" in changed.stdout, changed.stdout


def test_reading_a_large_roster_tells_its_progress(tmp_path):
    rows = household_rows(1000)
    heard: list[tuple[int, int]] = []
    roster = read_roster(write_xlsx(tmp_path / "c.xlsx", rows, title="花名册"),
                         progress=lambda done, total: heard.append((done, total)))
    assert len(roster.rows) == len(rows)
    total = heard[-1][1]
    assert total >= len(rows) and heard[-1] == (total, total)  # ends with every row read
    assert [d for d, _ in heard] == sorted(d for d, _ in heard) and len(heard) >= 5  # forward, in steps
    assert all(d <= t <= total for d, t in heard)
