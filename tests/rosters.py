"""A community office's roster, made up: households in buildings, entrances and
rooms, people with Chinese names, categories, door cards and dates, written as the
office would save it (CSV in UTF-8 with BOM or GBK, or XLSX)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉梅宏文斌婷雪琳鹏辉宇浩晨欣怡子涵梓轩一诺思远佳琪雨桐嘉怡俊杰"
ZH_HEADER = ["楼栋", "单元", "房号", "姓名", "类别", "手机号后四位", "门禁卡号", "隔离截止", "核酸时间", "有效期至", "备注"]
KINDS = [("常住", 70), ("租住", 20), ("返京", 5), ("工作人员", 2), ("访客", 3)]


def household_rows(households: int = 3000, seed: int = 7) -> list[list[str]]:
    """One row a person; 1-4 people a household; ids are unit-name, so names in a
    household are kept distinct."""
    rnd = random.Random(seed)
    base = datetime(2026, 11, 20, 9, 0)
    rows: list[list[str]] = []
    card = 3_000_000
    kinds = [k for k, w in KINDS for _ in range(w)]
    for h in range(households):
        building = 1 + h // 160
        entrance = 1 + (h // 40) % 4
        floor = 1 + (h // 2) % 20
        room = f"{floor}{1 + h % 2:02d}"
        surname = SURNAMES[h % len(SURNAMES)]
        kind = rnd.choice(kinds)
        used: set[str] = set()
        for _ in range(rnd.choice((1, 2, 2, 3, 3, 4))):
            while True:
                name = surname + "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2))))
                if name not in used:
                    used.add(name)
                    break
            has_card = rnd.random() < 0.6
            card += rnd.randint(1, 50)
            obs = (base + timedelta(days=rnd.randint(1, 14))).strftime("%Y-%m-%d") if kind == "返京" else ""
            pcr = (base - timedelta(hours=rnd.randint(2, 120))).strftime("%Y-%m-%d %H:%M") if rnd.random() < 0.5 else ""
            until = "2026-12-31" if kind in ("租住", "访客") else ""
            rows.append([str(building), str(entrance), room, name, kind, f"{rnd.randint(0, 9999):04d}",
                         str(card) if has_card else "", obs, pcr, until, "" if rnd.random() < 0.9 else "独居老人"])
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = ZH_HEADER, encoding: str = "utf-8-sig") -> Path:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[object]], header: list[str] = ZH_HEADER, title: str | None = None) -> Path:
    """As Excel keeps it: numbers as numbers (a phone tail 0042 becomes 42), dates as dates."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("花名册")
    if title:
        sheet.append([title])
    sheet.append(header)
    for r in rows:
        sheet.append([_excel(h, v) for h, v in zip(header, r)])
    book.save(path)
    return path


def _excel(header: str, value: object) -> object:
    if not isinstance(value, str) or value == "":
        return value if value != "" else None
    if header in ("楼栋", "单元", "房号", "手机号后四位", "门禁卡号") and value.isdigit():
        return int(value)
    if header in ("隔离截止", "有效期至", "核酸时间"):
        for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                return datetime.strptime(value, fmt)
            except ValueError:
                pass
    return value
