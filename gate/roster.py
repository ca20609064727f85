"""Reading a roster of passes (CSV) into pass-table rows, validating every row.

Column headers may be English or Chinese (姓名 / name, 房号 / unit, 类别 / category ...);
a bad row is reported by its row number and nothing is imported.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gate.config import CATEGORIES

HEADERS = {
    "id": ("id", "pass_id", "编号", "通行证号"),
    "holder": ("name", "holder", "姓名"),
    "unit": ("unit", "房号"),
    "building": ("building", "楼栋"),
    "entrance": ("entrance", "单元"),
    "category": ("category", "类别"),
    "phone_last4": ("phone_last4", "手机号后四位"),
    "card": ("card", "门禁卡号"),
    "observation_until": ("observation_until", "隔离截止"),
    "pcr_at": ("pcr_at", "核酸时间"),
    "valid_from": ("valid_from", "有效期自"),
    "valid_until": ("valid_until", "有效期至"),
    "health_code": ("health_code", "健康码"),
}
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


class RosterError(Exception):
    pass


@dataclass
class Roster:
    rows: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, str] = field(default_factory=dict)


def _column_map(header: list[str], source: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lstrip("\ufeff").lower()
        for field_name, names in HEADERS.items():
            if key in {n.lower() for n in names}:
                found[field_name] = i
    if "holder" not in found or "category" not in found:
        raise RosterError(f"{source}: the header needs at least a name (姓名) and a category (类别) column; found {header}")
    if "unit" not in found and not {"building", "entrance"} <= found.keys():
        raise RosterError(f"{source}: the header needs a unit (房号) column, or 楼栋 + 单元 + 房号")
    return found


def _when(value: str, tz: ZoneInfo, end_of_day: bool) -> datetime:
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


def read_roster(path: Path, *, tz: str = "Asia/Shanghai") -> Roster:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RosterError(f"{path}: cannot read: {exc}") from None
    for enc in ("utf-8-sig", "gb18030"):  # Excel in China often saves CSV as GBK
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise RosterError(f"{path}: not UTF-8 or GBK text")
    return parse_roster(text, str(path), ZoneInfo(tz))


def parse_roster(text: str, source: str, tz: ZoneInfo) -> Roster:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RosterError(f"{source}: empty file") from None
    cols = _column_map(header, source)
    roster = Roster()
    errors: list[str] = []
    seen_ids: dict[str, int] = {}
    for rowno, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        get = lambda f: row[cols[f]].strip() if f in cols and cols[f] < len(row) else ""  # noqa: E731
        try:
            rec = _row(get, tz)
        except ValueError as exc:
            errors.append(f"{source}: row {rowno}: {exc}")
            continue
        if rec["id"] in seen_ids:
            errors.append(f"{source}: row {rowno}: pass id {rec['id']!r} repeats row {seen_ids[rec['id']]}")
            continue
        seen_ids[rec["id"]] = rowno
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
        out[f] = _when(v, tz, eod) if v else None
    return out
