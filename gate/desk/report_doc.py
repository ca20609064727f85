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

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gate.config import CATEGORIES, PolicyConfig
from gate.store.daily import _day_bounds, daily
from gate.store.database import Store


from gate.core.words import CATEGORIES as CATEGORY_WORDS, REPORT, alarm_label, both, reason_label  # noqa: F401


def _r(key: str, **fill: object) -> str:
    """A report's words, "中文 English" (gate/core/words.toml, [report])."""
    return both(REPORT, key, **fill)


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
            what = _r("opened_by_hand")
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
        return f"{_r('fever_line')} {d.fever_line:g} °C"
    lines = " → ".join(f"{line:g}" for _, _, line in d.policies)
    when = ", ".join(f"v{v} {t[:5]}" for t, v, _ in d.policies)
    return f"{_r('policy_changed')} ({when}); {_r('fever_line')} {lines} °C, {REPORT['each_judged'][1]}"


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
    ax.bar(hrs, a, color="#2e7d32", label=_r("allowed"))
    ax.bar(hrs, n, bottom=a, color="#c62828", label=_r("denied"))
    ax.bar(hrs, o, bottom=[x + y for x, y in zip(a, n)], color="#f9a825", label=_r("retest_check"))
    ax.set_xticks(hrs, [f"{h}" for h in hrs], fontsize=7)
    ax.set_xlim(-0.6, 23.6)
    ax.set_title(_r("by_hour"), loc="left", fontsize=10)
    ax.set_xlabel(_r("hour"), fontsize=7)
    ax.legend(fontsize=7, frameon=False, ncols=3, loc="upper left")
    top = max((x + y + z for x, y, z in zip(a, n, o)), default=0)
    ax.set_ylim(0, max(1, top) * 1.3)
    ax.yaxis.set_major_locator(_int_locator())
    ax.spines[["top", "right"]].set_visible(False)


def _histogram(ax: Any, d: DayDetails) -> None:
    ax.set_title(_r("temperatures"), loc="left", fontsize=10)
    t = d.temperatures
    if not t:
        ax.text(0.5, 0.5, "\n".join(REPORT["no_temperatures"]), ha="center", va="center", transform=ax.transAxes,
                color="#777777", fontsize=9)
        ax.set_axis_off()
        return
    lo = min(35.0, min(t)) - 0.05
    hi = max(38.5, max(t)) + 0.15
    bins = [round(lo + 0.1 * i, 2) for i in range(int((hi - lo) / 0.1) + 2)]
    flags = d.high if len(d.high) == len(t) else [x >= d.fever_line for x in t]
    normal = [x for x, h in zip(t, flags) if not h]
    high = [x for x, h in zip(t, flags) if h]
    ax.hist([normal, high], bins=bins, stacked=True, color=["#1565c0", "#c62828"], label=[_r("normal"), _r("over_line")])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    lines = sorted({line for _, _, line in d.policies} or {d.fever_line})
    for i, line in enumerate(lines):
        ax.axvline(line, color="#c62828", linestyle="--" if line == d.fever_line else ":", linewidth=1)
        ax.text(line, ax.get_ylim()[1] * (0.98 - 0.1 * i), f" {REPORT['fever_line'][0]} {line:g} °C", color="#c62828", fontsize=7, va="top")
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
        shown = rows[: fit - 1] + [["…", f"{REPORT['more'][1].format(n=more)} / {REPORT['more'][0].format(n=more)}"] + [""] * (len(header) - 2)]
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
    weekday = REPORT["weekdays"][0].split()[datetime.fromisoformat(rep["date"]).weekday()]
    head.text(0, 1.0, f"{REPORT['title'][0]}  {REPORT['title'][1]} — {rep['date']} ({REPORT['weekday'][0].format(d=weekday)})",
              fontsize=16, va="top")
    allowed, denied = sum(rep["allowed"].values()), sum(rep["denied"].values())
    head.text(0, 0.45, f"{_r('gate')} {rep['gate']}    {_r('allowed')} {allowed}    {_r('denied')} {denied}    "
              f"{_r('fevers')} {rep['fevers']}    {_r('checks')} {rep['challenges']}    {_r('events')} {rep['events']}",
              fontsize=9.5, va="top")
    zero = "" if rep["events"] else f"{REPORT['zero'][0]} ({REPORT['zero'][1]})    "
    stale = f"{_r('presence_stale')}: {rep['presence_stale']}    " if rep.get("presence_stale") else ""
    head.text(0, 0.05, f"{zero}{stale}{policy_note(d)}    {_r('generated')} {d.generated}",
              fontsize=8, va="top", color="#555555")
    _bars(
        fig.add_subplot(gs[1, 0]),
        [(d.labels.get(k, both(CATEGORY_WORDS, k)), v, d.colours.get(k, "#9e9e9e"))
         for k, v in sorted(rep["allowed"].items(), key=lambda kv: -kv[1])],
        _r("allowed_by_category"), _r("none"),
    )
    _bars(
        fig.add_subplot(gs[1, 1]),
        [(reason_label(k), v, "#c62828") for k, v in sorted(rep["denied"].items(), key=lambda kv: -kv[1])],
        _r("denied_by_reason"), _r("none"),
    )
    _hourly(fig.add_subplot(gs[2, :]), d)
    _histogram(fig.add_subplot(gs[3, 0]), d)
    unknown = {u["number"]: u for u in d.unknown_cards}
    cards = [[c["number"], c["time"], f"{_r('unknown_card')} ×{unknown[c['number']]['swipes']}" if c["number"] in unknown
              else (c["unit"] or _r("unbound"))] for c in d.new_cards]
    cards += [[u["number"], u["time"], f"{_r('unknown_card')} ×{u['swipes']}"] for u in d.unknown_cards
              if u["number"] not in {c["number"] for c in d.new_cards}]
    _table(fig.add_subplot(gs[3, 1]), f"{_r('cards')}: {len(d.new_cards)} new, {len(d.unknown_cards)} unknown",
           [_r("card"), _r("time"), _r("unit")], cards, _r("no_new_or_unknown"), [0.3, 0.22, 0.48])
    _table(fig.add_subplot(gs[4, :]), f"{_r('incidents')}: {len(d.incidents)}",
           [_r("time"), _r("lane"), _r("what"), _r("detail")],
           # fevers first: if the list is cut short, what is cut is not a fever
           [[i["time"], i["lane"], i["what"], i["detail"]]
            for i in sorted(d.incidents, key=lambda i: i["what"] != reason_label("fever"))], _r("none_today"),
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


def write_html(d: DayDetails, policy: PolicyConfig, out: Path) -> None:
    """A self-contained page: tables as text, the charts as embedded PNG images (gate/desk/report_html.py)."""
    from gate.desk.report_html import write_html as write

    write(d, policy, out)
