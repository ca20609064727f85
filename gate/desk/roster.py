"""Rosters: the list of passes a community office keeps, as CSV or XLSX, with Chinese
or English column headers, read into pass-table rows and validated row by row.

Headers (any order; columns not listed here, such as 备注 or an ID number, are ignored):

    姓名 name | 房号 unit, or 楼栋 building + 单元 entrance + 房号 (joined 3-2-501)
    类别 category: 常住 resident, 租住 renter, 返京 returnee, 访客 visitor,
                   工作人员 staff, 快递 courier
    手机号后四位 phone_last4 (or 手机号 phone: only its last four digits are kept)
    门禁卡号 card | 隔离截止 observation_until | 核酸时间 pcr_at
    有效期自 valid_from | 有效期至 valid_until | 健康码 health_code | 编号 id
    and the columns the config maps to attributes ([roster] attributes), which rules read

A title row or two above the header is skipped. A bad row is reported by its row
number (as the spreadsheet numbers it) and why; one bad row and nothing is
imported. Importing (``apply_roster``, gate/desk/roster_changes.py) writes every change in one transaction with
an ``admin`` event saying who imported what, keeps revocations made here, leaves
alone the fields of columns the file does not have, and with a card column makes
each listed pass's card exactly the one in the file (a replaced card stops working).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from gate.desk import roster_attributes
from gate.config import CATEGORIES

HEADERS = {
    "id": ("id", "pass_id", "编号", "通行证号"),
    "holder": ("name", "holder", "姓名"),
    "unit": ("unit", "房号", "房间号", "门牌号"),
    "building": ("building", "楼栋", "楼号"),
    "entrance": ("entrance", "单元", "单元号"),
    "category": ("category", "类别", "人员类别"),
    "phone_last4": ("phone_last4", "手机号后四位", "手机尾号"),
    "phone": ("phone", "手机号", "手机", "联系电话"),
    "card": ("card", "门禁卡号", "卡号"),
    "observation_until": ("observation_until", "隔离截止"),
    "pcr_at": ("pcr_at", "核酸时间"),
    "valid_from": ("valid_from", "有效期自"),
    "valid_until": ("valid_until", "有效期至"),
    "health_code": ("health_code", "健康码"),
}
_HEADER_KEYS = {n.lower(): f for f, names in HEADERS.items() for n in names}
CATEGORY_NAMES = {
    "常住": "resident",
    "租住": "renter",
    "返京": "returnee",
    "访客": "visitor",
    "工作人员": "staff",
    "快递": "courier",
    **{c: c for c in CATEGORIES},
}
HEALTH = {"绿": "green", "绿码": "green", "黄": "yellow", "黄码": "yellow", "红": "red", "红码": "red", "green": "green", "yellow": "yellow", "red": "red"}

# The pass-table fields a roster sets (besides the id), in the order they are shown.
FIELDS = ("holder", "unit", "category", "phone_last4", "valid_from", "valid_until", "observation_until", "pcr_at", "health_code",
          "attributes")
_TIME_FIELDS = ("valid_from", "valid_until", "observation_until", "pcr_at")
HEADER_SEARCH_ROWS = 10  # a title row or two may stand above the header


class RosterError(Exception):
    pass


@dataclass
class Roster:
    rows: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, str] = field(default_factory=dict)  # card number -> pass id
    # The pass fields (FIELDS, plus "card") the file has columns for; the others are
    # left as they are in the store when importing.
    columns: frozenset[str] = frozenset(FIELDS) | {"card"}
    ignored: list[str] = field(default_factory=list)  # header cells that map to nothing
    rownos: dict[str, int] = field(default_factory=dict)  # pass id -> row number in the file


# ---------------------------------------------------------------- reading


def _column_map(header: list[Any], source: str) -> tuple[dict[str, int], list[str]]:
    found: dict[str, int] = {}
    ignored: list[str] = []
    for i, name in enumerate(header):
        key = _plain(name).lstrip("\ufeff").lower()
        if not key:
            continue
        f = _HEADER_KEYS.get(key)
        if f is None:
            ignored.append(_plain(name))
            continue
        if f in found:
            raise RosterError(f"{source}: the header has two {HEADERS[f][-1]} / {HEADERS[f][0]} columns ({i + 1} and {found[f] + 1})")
        found[f] = i
    if "holder" not in found or "category" not in found:
        shown = [_plain(h) for h in header]
        raise RosterError(f"{source}: the header needs at least a name (姓名) and a category (类别) column; found {shown}")
    if "unit" not in found and not {"building", "entrance"} <= found.keys():
        raise RosterError(f"{source}: the header needs a unit (房号) column, or 楼栋 + 单元 + 房号")
    return found, ignored


def _plain(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_when(value: str, tz: ZoneInfo, end_of_day: bool) -> datetime:
    """A roster date or time (the formats a spreadsheet writes) as an aware datetime;
    a bare date is its start, or with end_of_day its last second."""
    value = value.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d"):
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if len(value) <= 10 and end_of_day:
            dt = datetime.combine(dt.date(), time(23, 59, 59))
        return dt.replace(tzinfo=tz)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected a date like 2026-12-31, got {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def is_xlsx(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in (".xlsx", ".xlsm") or (head[:4] == b"PK\x03\x04" and path.suffix.lower() != ".csv")


def read_roster(path: Path, *, tz: str = "Asia/Shanghai", attributes: dict[str, str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> Roster:
    """A roster file (CSV in UTF-8 or GBK, or XLSX) as validated pass rows;
    `attributes` maps column headers to the attribute names rules read; `progress(done,
    total)` hears how far the reading is (rows)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".xls" and raw[:4] != b"PK\x03\x04":
        raise RosterError(f"{path}: the old Excel .xls format is not read; save the sheet as .xlsx (or CSV UTF-8) and import that")
    if is_xlsx(path, raw):
        return parse_rows(_counted(_xlsx_rows(raw, str(path)), progress), str(path), ZoneInfo(tz), attributes)
    for enc in ("utf-8-sig", "gb18030"):  # Excel in China often saves CSV as GBK
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise RosterError(f"{path}: not UTF-8 or GBK text")
    rows = _counted(enumerate(csv.reader(io.StringIO(text)), start=1), progress, total=text.count("\n") + 1)
    return parse_rows(rows, str(path), ZoneInfo(tz), attributes)


def _counted(rows: Iterator[tuple[int, list[Any]]], progress: Callable[[int, int], None] | None,
             total: int = 0) -> Iterator[tuple[int, list[Any]]]:
    """The rows, telling `progress` every 200 of them (an XLSX says its size first, as row 0,
    when the file records it; otherwise the total grows as rows come)."""
    last = 0
    for rowno, row in rows:
        if rowno == 0:  # _xlsx_rows's announcement of the sheet's size
            total = int(row[0])
            continue
        last = rowno
        if progress is not None and rowno % 200 == 0:
            progress(rowno, max(total, rowno))
        yield rowno, row
    if progress is not None:
        progress(last, last)  # all read


def _xlsx_rows(raw: bytes, source: str) -> Iterator[tuple[int, list[Any]]]:
    """(row number, cell values) of the first worksheet, as Excel numbers the rows."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise RosterError(f"{source}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        yield 0, [sheet.max_row or 0]  # how many rows there are, for a progress bar (_counted)
        for rowno, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield rowno, list(values)
    finally:
        book.close()


def parse_roster(text: str, source: str, tz: ZoneInfo, attributes: dict[str, str] | None = None) -> Roster:
    """A CSV roster's text."""
    return parse_rows(enumerate(csv.reader(io.StringIO(text)), start=1), source, tz, attributes)


def _cell(f: str, value: Any) -> str:
    """A cell as the text a person typed. Spreadsheet numbers lose leading zeros
    (phone tail 0042 becomes 42) and dates come as datetimes; undo both."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:04d}" if f == "phone_last4" and 0 <= value < 10000 else str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if value.time() == time(0) and value.tzinfo is None else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def parse_rows(
    rows: Iterable[tuple[int, list[Any]]], source: str, tz: ZoneInfo, attributes: dict[str, str] | None = None
) -> Roster:
    """Rows of cells (from CSV or a sheet) with their row numbers: the header first
    (after at most a few title rows), then one pass a row."""
    it = iter(rows)
    cols: dict[str, int] | None = None
    first_error: RosterError | None = None
    seen = 0
    for _rowno, header in it:
        if not any(_plain(c) for c in header):
            continue
        seen += 1
        try:
            cols, ignored = _column_map(header, source)
            break
        except RosterError as exc:
            first_error = first_error or exc
            if seen >= HEADER_SEARCH_ROWS:
                break
    if cols is None:
        raise first_error or RosterError(f"{source}: empty file")
    # Columns the config names as attributes (the rest of the unknown ones stay ignored).
    wanted = {h.strip().lower(): name for h, name in (attributes or {}).items()}
    attr_cols = {
        wanted[key]: i for i, c in enumerate(header) if (key := _plain(c).lstrip("\ufeff").lower()) in wanted
    }
    ignored = [h for h in ignored if h.lstrip("\ufeff").lower() not in wanted]
    roster = Roster(ignored=ignored)
    present = {f for f in cols if f in FIELDS or f == "card"}
    if attr_cols:
        present.add("attributes")
    if "building" in cols or "entrance" in cols:
        present.add("unit")
    if "phone" in cols:
        present.add("phone_last4")
    roster.columns = frozenset(present)
    errors: list[str] = []
    for rowno, row in it:
        if not any(_plain(c) for c in row):
            continue
        get = lambda f: _cell(f, row[cols[f]]) if f in cols and cols[f] < len(row) else ""  # noqa: E731
        try:
            rec = _row(get, tz)
            rec["attributes"] = roster_attributes.encode({
                name: roster_attributes.value(_cell(name, row[i]))
                for name, i in attr_cols.items() if i < len(row) and _cell(name, row[i])
            })
        except ValueError as exc:
            errors.append(f"{source}: row {rowno}: {exc}")
            continue
        if rec["id"] in roster.rownos:
            errors.append(f"{source}: row {rowno}: pass id {rec['id']!r} repeats row {roster.rownos[rec['id']]}")
            continue
        roster.rownos[rec["id"]] = rowno
        card = rec.pop("card")
        if card:
            if card in roster.cards:
                errors.append(f"{source}: row {rowno}: card {card} is already bound to {roster.cards[card]}")
                continue
            roster.cards[card] = rec["id"]
        roster.rows.append(rec)
    if errors:
        shown = errors[:20]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise RosterError("nothing imported; fix these rows:\n  " + "\n  ".join(shown) + more)
    return roster


def _row(get: Any, tz: ZoneInfo) -> dict[str, Any]:
    holder = get("holder")
    if not holder:
        raise ValueError("name (姓名) is empty")
    cat_raw = get("category")
    category = CATEGORY_NAMES.get(cat_raw) or CATEGORY_NAMES.get(cat_raw.lower())
    if category is None:
        raise ValueError(f"category {cat_raw!r} is not one of 常住 租住 返京 访客 工作人员 快递 (or {', '.join(CATEGORIES)})")
    unit = get("unit")
    if get("building"):
        unit = "-".join(p for p in (get("building"), get("entrance"), unit) if p)
    if not unit:
        raise ValueError("unit (房号) is empty")
    phone = get("phone_last4")
    if phone and not re.fullmatch(r"\d{4}", phone):
        raise ValueError(f"phone_last4 (手机号后四位) must be 4 digits, got {phone!r}")
    if not phone and get("phone"):
        digits = re.sub(r"[\s\-+()]", "", get("phone"))
        if not re.fullmatch(r"\d{4,15}", digits):
            raise ValueError(f"phone (手机号) must be digits, got {get('phone')!r}")
        phone = digits[-4:]  # only the last four are kept
    card = get("card")
    if card and not re.fullmatch(r"\d{1,10}", card):
        raise ValueError(f"card (门禁卡号) must be digits, got {card!r}")
    health = get("health_code")
    if health and health not in HEALTH:
        raise ValueError(f"health_code must be green, yellow or red, got {health!r}")
    pass_id = get("id") or f"{unit}-{holder}"
    out: dict[str, Any] = {
        "id": pass_id,
        "holder": holder,
        "unit": unit,
        "category": category,
        "phone_last4": phone or None,
        "card": card or None,
        "health_code": HEALTH.get(health) if health else None,
    }
    # A date alone in 有效期至 or 隔离截止 means "through that day".
    for f, eod in (("valid_from", False), ("valid_until", True), ("observation_until", True), ("pcr_at", False)):
        v = get(f)
        out[f] = parse_when(v, tz, eod) if v else None
    if out["valid_from"] and out["valid_until"] and out["valid_until"] < out["valid_from"]:
        raise ValueError("有效期至 valid_until is before 有效期自 valid_from")
    return out
