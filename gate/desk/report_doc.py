"""The daily report as a page people read: one A4 PDF (or a self-contained HTML
page) to print or forward in a work chat.

It carries the day's counts by category and by reason, an hourly traffic chart, a
temperature histogram with the fever line, the fevers, alarms and hand-opened doors
with their times, and the cards first seen that day and the unknown ones. Charts
are drawn with matplotlib (no pyplot, no global state; Chinese text in the font of
gate.desk.fonts, embedded as TrueType). Personal data is kept to what the office acts
on: units and card numbers, no names.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gate.config import CATEGORIES, PolicyConfig
from gate.store.daily import _day_bounds, daily
from gate.store.database import Store


try:  # the guard page's words (zh, en) for every code; plain codes if unavailable
    from gate.web.i18n import ALARMS, REASONS
except Exception:  # pragma: no cover - only without the web extras
    ALARMS, REASONS = {}, {}


def reason_label(code: str) -> str:
    zh, en = REASONS.get(code, ("", code))
    return f"{zh} {en}".strip() if zh else code


def alarm_label(code: str) -> str:
    zh, en = ALARMS.get(code, ("", code))
    return f"{zh} {en}".strip() if zh else code


@dataclass
class DayDetails:
    report: dict[str, Any]
    hours: dict[str, list[int]]  # allow / deny / other (retest, challenge), 24 each
    temperatures: list[float]
    fever_line: float  # the line in force at the end of the day (or now)
    incidents: list[dict[str, Any]]  # fevers, alarms, hand openings: time, lane, what, detail
    new_cards: list[dict[str, Any]]  # number, time, unit (or None)
    unknown_cards: list[dict[str, Any]]  # number, swipes, first
    generated: str = ""
    colours: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # Each reading judged by the policy in force when it was taken: at or over its line.
    high: list[bool] = field(default_factory=list)
    # The policies the day's decisions were made under, in order: (from HH:MM:SS, version, fever line).
    policies: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def policy_changed(self) -> bool:
        return len(self.policies) > 1


def collect(store: Store, day: str, policy: PolicyConfig) -> DayDetails:
    rep = daily(store, day)
    c = store.conn
    tz = store.tz

    def hhmm(ts: float) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).strftime("%H:%M:%S")

    hours = {k: [0] * 24 for k in ("allow", "deny", "other")}
    for hour, decision, n in c.execute(
        "SELECT hour, decision, count(*) FROM events WHERE day = ? AND type = 'decision' GROUP BY 1, 2", (day,)
    ):
        hours[decision if decision in ("allow", "deny") else "other"][hour] += n
    # One count a reading: a decision made because the wait ran out (a person who left
    # after a high first reading) repeats the reading its retest already counted.
    # Each reading is judged by the line of the policy it was decided under (recorded
    # with the decision), not by today's: raising the line must not rewrite the morning.
    temps: list[float] = []
    high: list[bool] = []
    policies: list[tuple[str, int, float]] = []
    for ts, t, reason, sit_text in c.execute(
        "SELECT ts, temperature_c, reason, situation FROM events WHERE day = ? AND type = 'decision' ORDER BY seq",
        (day,),
    ):
        sit = json.loads(sit_text) if sit_text else {}
        used = sit.get("policy") or {}
        line = used.get("fever_c", policy.fever_c)
        version = used.get("version", policy.version)
        if not policies or policies[-1][1:] != (version, line):
            policies.append((hhmm(ts), version, line))
        if t is None or sit.get("timed_out"):
            continue
        temps.append(t)
        high.append(reason in ("high_temperature", "fever") or t >= line)
    units = {}

    def unit_of(pass_id: str | None) -> str | None:
        if not pass_id:
            return None
        if pass_id not in units:
            row = c.execute("SELECT unit FROM passes WHERE id = ?", (pass_id,)).fetchone()
            units[pass_id] = row[0] if row else None
        return units[pass_id]

    acks: dict[str, tuple[float, str]] = {}
    for ts, body in c.execute("SELECT ts, body FROM events WHERE day >= ? AND type = 'ack' ORDER BY seq", (day,)):
        b = json.loads(body)
        if b.get("alarm_id"):
            acks.setdefault(b["alarm_id"], (ts, b.get("who") or ""))
    fever_alarms = {
        (lane, ts): json.loads(body).get("id")
        for lane, ts, body in c.execute("SELECT lane, ts, body FROM events WHERE day = ? AND type = 'alarm' AND kind = 'fever'", (day,))
    }
    incidents: list[dict[str, Any]] = []
    for seq, ts, lane, typ, kind, reason, pass_id, category, temp, body in c.execute(
        "SELECT seq, ts, lane, type, kind, reason, pass_id, category, temperature_c, body FROM events WHERE day = ?"
        " AND (type IN ('alarm', 'override') OR (type = 'decision' AND decision = 'deny' AND reason = 'fever'))"
        " ORDER BY seq",
        (day,),
    ):
        b = json.loads(body)
        if typ == "decision":
            what = reason_label("fever")
            unit = unit_of(pass_id)
            detail = " ".join(x for x in (unit or "(unit unknown)", category or "", f"{temp:.1f} °C" if temp else "") if x)
        elif typ == "alarm":
            if kind == "fever":
                continue  # the fever decision beside it carries the unit and temperature
            what = alarm_label(kind or "")
            detail = b.get("detail") or ""
        else:
            what = "人工开门 opened by hand"
            detail = f"{b.get('reason') or ''} ({b.get('who') or '?'})"
        ack = acks.get(fever_alarms.get((lane, ts), "") if typ == "decision" else b.get("id", ""))
        if ack:
            detail += f"; acknowledged {hhmm(ack[0])} by {ack[1]}"
        incidents.append({"time": hhmm(ts), "lane": lane or "", "what": what, "detail": detail})
    start, end = _day_bounds(store, day)
    new_cards = [
        {"number": n, "time": hhmm(first), "unit": unit_of(p) if p else None}
        for n, p, first in c.execute(
            "SELECT c.number, b.pass_id, c.first_seen FROM cards c LEFT JOIN card_bindings b ON b.number = c.number"
            " WHERE c.first_seen >= ? AND c.first_seen < ? ORDER BY c.first_seen, c.number",
            (start, end),
        )
    ]
    unknown_cards = [
        {"number": n, "swipes": k, "time": hhmm(first)}
        for n, k, first in c.execute(
            "SELECT card, count(*), min(ts) FROM events WHERE day = ? AND type = 'decision' AND reason = 'unknown_card'"
            " AND card IS NOT NULL GROUP BY card ORDER BY min(ts)",
            (day,),
        )
    ]
    colours = {name: policy.category(name).colour for name in CATEGORIES}
    labels = {name: f"{policy.category(name).label_zh} {name}".strip() for name in CATEGORIES}
    return DayDetails(
        report=rep, hours=hours, temperatures=temps, fever_line=policies[-1][2] if policies else policy.fever_c,
        incidents=incidents, new_cards=new_cards, unknown_cards=unknown_cards,
        generated=datetime.now(timezone.utc).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        colours=colours, labels=labels, high=high, policies=policies,
    )


def policy_note(d: DayDetails) -> str:
    """The fever line(s) of the day, and when the policy changed."""
    if not d.policy_changed:
        return f"发热线 fever line {d.fever_line:g} °C"
    lines = " → ".join(f"{line:g}" for _, _, line in d.policies)
    when = ", ".join(f"v{v} {t[:5]}" for t, v, _ in d.policies)
    return f"政策当天有变更 policy changed during the day ({when}); 发热线 fever line {lines} °C, each reading judged by its own"


# ---------------------------------------------------------------- charts


def _font_family() -> list[str]:
    from matplotlib import font_manager

    from gate.desk.fonts import cjk_font

    path = str(cjk_font())
    if not any(f.fname == path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
    names = [f.name for f in font_manager.fontManager.ttflist if f.fname == path and "Mono" not in f.name]
    return names[:1] + ["DejaVu Sans"]


def chart_style() -> dict[str, Any]:
    """matplotlib settings every report figure uses (Chinese fonts embedded in the PDF)."""
    return {"font.family": _font_family(), "pdf.fonttype": 42, "axes.unicode_minus": False, "font.size": 8}


def _bars(ax: Any, items: list[tuple[str, int, str]], title: str, empty: str) -> None:
    """Horizontal bars, each with its label written above it (labels of any length fit)."""
    ax.set_title(title, loc="left", fontsize=10)
    if not items:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="#777777", fontsize=10)
        ax.set_axis_off()
        return
    items = items[:8]
    top = max(v for _, v, _ in items)
    for i, (label, value, colour) in enumerate(items):
        y = -i
        ax.barh(y, value, height=0.42, color=colour)
        ax.text(0, y + 0.27, label, fontsize=8, va="bottom")
        ax.text(value + top * 0.02, y, str(value), fontsize=8, va="center")
    ax.set_ylim(-len(items) + 0.45, 0.95)
    ax.set_xlim(0, top * 1.15 + 0.5)
    ax.set_yticks([])
    ax.xaxis.set_major_locator(_int_locator())
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=7)


def _int_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _hourly(ax: Any, d: DayDetails) -> None:
    hrs = list(range(24))
    a, n, o = d.hours["allow"], d.hours["deny"], d.hours["other"]
    ax.bar(hrs, a, color="#2e7d32", label="通过 allowed")
    ax.bar(hrs, n, bottom=a, color="#c62828", label="拒绝 denied")
    ax.bar(hrs, o, bottom=[x + y for x, y in zip(a, n)], color="#f9a825", label="复测/核验 retest/check")
    ax.set_xticks(hrs, [f"{h}" for h in hrs], fontsize=7)
    ax.set_xlim(-0.6, 23.6)
    ax.set_title("每小时通行 Decisions by hour", loc="left", fontsize=10)
    ax.set_xlabel("时 hour", fontsize=7)
    ax.legend(fontsize=7, frameon=False, ncols=3, loc="upper left")
    top = max((x + y + z for x, y, z in zip(a, n, o)), default=0)
    ax.set_ylim(0, max(1, top) * 1.3)
    ax.yaxis.set_major_locator(_int_locator())
    ax.spines[["top", "right"]].set_visible(False)


def _histogram(ax: Any, d: DayDetails) -> None:
    ax.set_title("体温分布 Temperatures", loc="left", fontsize=10)
    t = d.temperatures
    if not t:
        ax.text(0.5, 0.5, "今天没有测温记录\nno temperatures today", ha="center", va="center", transform=ax.transAxes,
                color="#777777", fontsize=9)
        ax.set_axis_off()
        return
    lo = min(35.0, min(t)) - 0.05
    hi = max(38.5, max(t)) + 0.15
    bins = [round(lo + 0.1 * i, 2) for i in range(int((hi - lo) / 0.1) + 2)]
    flags = d.high if len(d.high) == len(t) else [x >= d.fever_line for x in t]
    normal = [x for x, h in zip(t, flags) if not h]
    high = [x for x, h in zip(t, flags) if h]
    ax.hist([normal, high], bins=bins, stacked=True, color=["#1565c0", "#c62828"], label=["正常 normal", "发热线以上 at or over the line"])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    lines = sorted({line for _, _, line in d.policies} or {d.fever_line})
    for i, line in enumerate(lines):
        ax.axvline(line, color="#c62828", linestyle="--" if line == d.fever_line else ":", linewidth=1)
        ax.text(line, ax.get_ylim()[1] * (0.98 - 0.1 * i), f" 发热线 {line:g} °C", color="#c62828", fontsize=7, va="top")
    ax.yaxis.set_major_locator(_int_locator())
    ax.set_xlabel("°C", fontsize=7)
    ax.legend(fontsize=6.5, frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)


ROW_IN = 0.165  # height of a table row on the page, inches


def _table(ax: Any, title: str, header: list[str], rows: list[list[str]], empty: str, widths: list[float]) -> None:
    """A table that fits its axes: as many rows as there is room for, then "and N more"."""
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=10)
    if not rows:
        ax.text(0.0, 0.85, empty, transform=ax.transAxes, color="#777777", fontsize=9, va="top")
        return
    ax_h = ax.get_position().height * ax.figure.get_figheight()
    fit = max(2, int(ax_h / ROW_IN) - 1)  # rows under the header
    shown = rows
    if len(rows) > fit:
        more = len(rows) - (fit - 1)
        shown = rows[: fit - 1] + [["…", f"and {more} more / 另有 {more} 条"] + [""] * (len(header) - 2)]
    h = (len(shown) + 1) * ROW_IN / ax_h
    tab = ax.table(cellText=shown, colLabels=header, colWidths=widths, bbox=[0, 1 - h, 1, h], cellLoc="left",
                   colLoc="left", edges="horizontal")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7.5)
    for (r, _c), cell in tab.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if r == 0:
            cell.set_facecolor("#eeeeee")


def figure(d: DayDetails, policy: PolicyConfig) -> Any:
    """The one-page report as a matplotlib Figure (A4 portrait)."""
    from matplotlib.figure import Figure

    rep = d.report
    fig = Figure(figsize=(210 / 25.4, 297 / 25.4))  # A4
    gs = fig.add_gridspec(5, 2, height_ratios=[0.55, 1.25, 1.2, 1.3, 1.9], hspace=0.55, wspace=0.35,
                          left=0.1, right=0.96, top=0.95, bottom=0.04)
    head = fig.add_subplot(gs[0, :])
    head.set_axis_off()
    weekday = "一二三四五六日"[datetime.fromisoformat(rep["date"]).weekday()]
    head.text(0, 1.0, f"门岗日报  Daily report — {rep['date']} (周{weekday})", fontsize=16, va="top")
    allowed, denied = sum(rep["allowed"].values()), sum(rep["denied"].values())
    head.text(0, 0.45, f"门岗 gate {rep['gate']}    通过 allowed {allowed}    拒绝 denied {denied}    "
              f"发热 fevers {rep['fevers']}    核验 checks {rep['challenges']}    事件 events {rep['events']}",
              fontsize=9.5, va="top")
    zero = "" if rep["events"] else "零报告：今天没有任何事件 (zero report: nothing happened today)    "
    head.text(0, 0.05, f"{zero}{policy_note(d)}    生成 generated {d.generated}",
              fontsize=8, va="top", color="#555555")
    _bars(
        fig.add_subplot(gs[1, 0]),
        [(d.labels.get(k, "无通行证 none" if k == "none" else k), v, d.colours.get(k, "#9e9e9e"))
         for k, v in sorted(rep["allowed"].items(), key=lambda kv: -kv[1])],
        "通过（按类别）Allowed by category", "无 none",
    )
    _bars(
        fig.add_subplot(gs[1, 1]),
        [(reason_label(k), v, "#c62828") for k, v in sorted(rep["denied"].items(), key=lambda kv: -kv[1])],
        "拒绝（按原因）Denied by reason", "无 none",
    )
    _hourly(fig.add_subplot(gs[2, :]), d)
    _histogram(fig.add_subplot(gs[3, 0]), d)
    unknown = {u["number"]: u for u in d.unknown_cards}
    cards = [[c["number"], c["time"], f"未知卡 unknown ×{unknown[c['number']]['swipes']}" if c["number"] in unknown
              else (c["unit"] or "未绑定 unbound")] for c in d.new_cards]
    cards += [[u["number"], u["time"], f"未知卡 unknown ×{u['swipes']}"] for u in d.unknown_cards
              if u["number"] not in {c["number"] for c in d.new_cards}]
    _table(fig.add_subplot(gs[3, 1]), f"新卡与未知卡 Cards: {len(d.new_cards)} new, {len(d.unknown_cards)} unknown",
           ["卡号 card", "时间 time", "单元 unit"], cards, "今天没有新卡或未知卡 none today", [0.3, 0.22, 0.48])
    _table(fig.add_subplot(gs[4, :]), f"发热、报警与人工开门 Fevers, alarms, doors opened by hand: {len(d.incidents)}",
           ["时间 time", "通道 lane", "事件 what", "详情 detail"],
           # fevers first: if the list is cut short, what is cut is not a fever
           [[i["time"], i["lane"], i["what"], i["detail"]]
            for i in sorted(d.incidents, key=lambda i: i["what"] != reason_label("fever"))], "今天没有 none today",
           [0.12, 0.08, 0.28, 0.52])
    return fig


def write_pdf(d: DayDetails, policy: PolicyConfig, out: Path) -> None:
    import matplotlib

    with matplotlib.rc_context(chart_style()):
        fig = figure(d, policy)
        fig.savefig(out, format="pdf", metadata={"Title": f"gate daily report {d.report['date']}", "Creator": "gate report daily"})


def write_png(d: DayDetails, policy: PolicyConfig, out: Path, dpi: int = 150) -> None:
    import matplotlib

    with matplotlib.rc_context(chart_style()):
        figure(d, policy).savefig(out, format="png", dpi=dpi)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(d: DayDetails, policy: PolicyConfig, out: Path) -> None:
    """A self-contained page: tables as text, the charts as embedded PNG images."""
    import matplotlib
    from matplotlib.figure import Figure

    rep = d.report
    with matplotlib.rc_context(chart_style()):
        f1 = Figure(figsize=(7.5, 2.6))
        _hourly(a1 := f1.add_subplot(), d)
        f2 = Figure(figsize=(5.5, 2.6))
        _histogram(a2 := f2.add_subplot(), d)
        a1.set_title("")  # the page's heading says it
        a2.set_title("")
        hourly, hist = _png(f1), _png(f2)
    e = html.escape

    def table(header: list[str], rows: list[list[Any]], empty: str) -> str:
        if not rows:
            return f'<p class="none">{e(empty)}</p>'
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    allowed = [[d.labels.get(k, k), v] for k, v in sorted(rep["allowed"].items(), key=lambda kv: -kv[1])]
    denied = [[reason_label(k), v] for k, v in sorted(rep["denied"].items(), key=lambda kv: -kv[1])]
    zero = "<p><b>零报告：今天没有任何事件</b> (zero report: nothing happened today)</p>" if not rep["events"] else ""
    page = f"""<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>门岗日报 {e(rep['date'])} {e(rep['gate'])}</title>
<style>
body {{ font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 1.2em; max-width: 52em; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: .2em; }} h2 {{ font-size: 1.1em; margin: 1.2em 0 .3em; }}
.sum span {{ display: inline-block; margin-right: 1.2em; }} .none {{ color: #777; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .15em .8em .15em 0; border-bottom: 1px solid #ddd; }}
img {{ max-width: 100%; }} .cols {{ display: flex; flex-wrap: wrap; gap: 2em; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>门岗日报 Daily report — {e(rep['date'])}</h1>
<p class="sum"><span>门岗 gate <b>{e(rep['gate'])}</b></span><span>通过 allowed <b>{sum(rep['allowed'].values())}</b></span>
<span>拒绝 denied <b>{sum(rep['denied'].values())}</b></span><span>发热 fevers <b>{rep['fevers']}</b></span>
<span>核验 checks <b>{rep['challenges']}</b></span><span>事件 events <b>{rep['events']}</b></span></p>
{zero}<p class="none">{e(policy_note(d))} · 生成 generated {e(d.generated)}</p>
<div class="cols"><div><h2>通过（按类别）Allowed by category</h2>{table(['类别 category', '人次 count'], allowed, '无 none')}</div>
<div><h2>拒绝（按原因）Denied by reason</h2>{table(['原因 reason', '人次 count'], denied, '无 none')}</div></div>
<h2>每小时通行 Decisions by hour</h2><img id="hourly" alt="decisions by hour" src="{hourly}">
<h2>体温分布 Temperatures</h2><img id="temperatures" alt="temperature histogram" src="{hist}">
<h2>发热、报警与人工开门 Fevers, alarms, doors opened by hand</h2>
{table(['时间 time', '通道 lane', '事件 what', '详情 detail'], [[i['time'], i['lane'], i['what'], i['detail']] for i in d.incidents], '今天没有 none today')}
<h2>新卡 New cards ({len(d.new_cards)})</h2>
{table(['卡号 card', '首次 first seen', '单元 unit'], [[c['number'], c['time'], c['unit'] or ('未知卡 unknown' if any(u['number'] == c['number'] for u in d.unknown_cards) else '未绑定 unbound')] for c in d.new_cards], '今天没有新卡 none today')}
<h2>未知卡 Unknown cards ({len(d.unknown_cards)})</h2>
{table(['卡号 card', '首次 first', '刷卡次数 swipes'], [[u['number'], u['time'], u['swipes']] for u in d.unknown_cards], '今天没有未知卡 none today')}
</body></html>
"""
    Path(out).write_text(page, encoding="utf-8")
