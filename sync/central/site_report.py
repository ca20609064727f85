"""The site's day (日报告、零报告 for a whole community): central's daily report
built from every gate's own daily report, and the list of gates that sent none.

A gate that sent no report is named, with the events central holds from it that
day, so the office sees both the silence and what little is known.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from gate.core.words import REPORT, both
from sync.central import CentralStore

_SUMMED = ("events", "fevers", "challenges")


def known_gates(db: Any) -> set[str]:
    """Every gate central has heard of: its status, its reports, its events. The events'
    gates one index seek each (a loose scan of ``events_gate_seq``), not a scan of a
    year of events."""
    known = {r[0] for r in db.all("SELECT gate FROM status")}
    known |= {r[0] for r in db.all("SELECT DISTINCT gate FROM reports")}
    row = db.one("SELECT min(gate) FROM events")
    while row and row[0] is not None:
        known.add(row[0])
        row = db.one("SELECT min(gate) FROM events WHERE gate > ?", (row[0],))
    return known


def day_range(db: Any, day: str, last: str | None = None) -> tuple[str, tuple[str, str]]:
    """The SQL condition for a gate's local days day..last (events' ``ts`` begins with the
    gate's local date) and its bounds: one range of the ``events_gate_ts`` index (in byte
    order on PostgreSQL, as the index is: sync/central/console/report_schema.py)."""
    from datetime import date, timedelta

    after = (date.fromisoformat(last or day) + timedelta(days=1)).isoformat()
    c = ' COLLATE "C"' if db.pg else ""
    return f"ts{c} >= ? AND ts{c} < ?", (day, after)


def events_held(db: Any, gate: str, day: str) -> int:
    """The events central holds from ``gate`` of its local day ``day``."""
    cond, bounds = day_range(db, day)
    row = db.one(f"SELECT count(*) FROM events WHERE gate = ? AND {cond}", (gate, *bounds))
    return int(row[0]) if row else 0


def site_daily(store: CentralStore, day: str, site: str) -> dict[str, Any]:
    reports = {
        r[0]: json.loads(r[1])
        for r in store.db.all("SELECT gate, body FROM reports WHERE date = ? ORDER BY gate", (day,))
    }
    gates = sorted(known_gates(store.db) | set(reports))
    totals: dict[str, Any] = {k: 0 for k in _SUMMED}
    allowed: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    stale = 0
    by_hour = [0] * 24
    new_cards: set[str] = set()
    unknown_cards: set[str] = set()
    by_gate: dict[str, dict[str, Any]] = {}
    for gate, rep in reports.items():
        for k in _SUMMED:
            totals[k] += int(rep.get(k, 0))
        allowed.update(rep.get("allowed", {}))
        denied.update(rep.get("denied", {}))
        rules.update(rep.get("rules", {}))
        stale += int(rep.get("presence_stale", 0))
        by_hour = [a + int(b) for a, b in zip(by_hour, rep.get("by_hour", [0] * 24))]
        new_cards.update(rep.get("new_cards", []))
        unknown_cards.update(rep.get("unknown_cards", []))
        by_gate[gate] = {
            "reported": True,
            "events": int(rep.get("events", 0)),
            "allowed": sum(rep.get("allowed", {}).values()),
            "denied": sum(rep.get("denied", {}).values()),
            "fevers": int(rep.get("fevers", 0)),
        }
    missing = [g for g in gates if g not in reports]
    for gate in missing:
        # What central holds from a silent gate that day (events carry the gate's local
        # time with its offset, so the date is the first ten characters).
        by_gate[gate] = {"reported": False, "events_held": events_held(store.db, gate, day)}
    return {
        "date": day,
        "site": site,
        "gates": gates,
        "missing": missing,
        **totals,
        "allowed": dict(sorted(allowed.items())),
        "denied": dict(sorted(denied.items())),
        **({"rules": dict(sorted(rules.items()))} if rules else {}),
        **({"presence_stale": stale} if stale else {}),
        "new_cards": sorted(new_cards),
        "unknown_cards": sorted(unknown_cards),
        "by_hour": by_hour,
        "by_gate": by_gate,
    }


def text(rep: dict[str, Any]) -> str:
    r = lambda key: both(REPORT, key)  # noqa: E731
    lines = [f"{r('site_title')} {rep['site']} — {rep['date']}: {r('gates')} {len(rep['gates'])}, {r('events')} {rep['events']}, "
             f"{r('allowed')} {sum(rep['allowed'].values())}, {r('denied')} {sum(rep['denied'].values())}, "
             f"{r('fevers')} {rep['fevers']}"]
    for gate in rep["gates"]:
        g = rep["by_gate"][gate]
        if g["reported"]:
            lines.append(f"  {gate:<20} {g['events']:>6} events  {g['allowed']:>5} allowed  {g['denied']:>5} denied  "
                         f"{g['fevers']:>3} fevers")
        else:
            lines.append(f"  {gate:<20} {REPORT['no_report'][1].upper()} {REPORT['no_report'][0]} ({g['events_held']} events held at central)")
    if rep["missing"]:
        lines.append(f"{r('gates_no_report')}: {', '.join(rep['missing'])}")
    return "\n".join(lines)


def write_figure(rep: dict[str, Any], out: Path) -> None:
    """The site's day as a one-page PDF or PNG (by the file's suffix): totals, a bar
    per gate, categories, reasons and hours, and the gates that sent nothing."""
    import matplotlib
    from matplotlib.figure import Figure

    from gate.desk.report_doc import chart_style

    with matplotlib.rc_context(chart_style()):
        fig = Figure(figsize=(210 / 25.4, 297 / 25.4))
        gs = fig.add_gridspec(4, 2, height_ratios=[0.5, 1.3, 1.2, 1.2], hspace=0.6, wspace=0.35,
                              left=0.1, right=0.96, top=0.95, bottom=0.05)
        head = fig.add_subplot(gs[0, :])
        head.set_axis_off()
        r = lambda key: both(REPORT, key)  # noqa: E731
        head.text(0, 1.0, f"{r('site_title')} — {rep['site']} {rep['date']}", fontsize=15, va="top")
        head.text(0, 0.45, f"{r('gates')} {len(rep['gates'])}    {r('events')} {rep['events']}    {r('allowed')} "
                  f"{sum(rep['allowed'].values())}    {r('denied')} {sum(rep['denied'].values())}    {r('fevers')} {rep['fevers']}",
                  fontsize=9.5, va="top")
        missing = ", ".join(rep["missing"]) or r("none")
        head.text(0, 0.05, f"{r('gates_no_report')}: {missing}", fontsize=9, va="top",
                  color="#c62828" if rep["missing"] else "#555555")
        ax = fig.add_subplot(gs[1, :])
        gates = rep["gates"]
        a = [rep["by_gate"][g].get("allowed", 0) for g in gates]
        d = [rep["by_gate"][g].get("denied", 0) for g in gates]
        ax.bar(range(len(gates)), a, color="#2e7d32", label=r("allowed"))
        ax.bar(range(len(gates)), d, bottom=a, color="#c62828", label=r("denied"))
        ax.set_xticks(range(len(gates)), [g + ("" if rep["by_gate"][g]["reported"] else f"\n({REPORT['no_report'][0]})") for g in gates],
                      fontsize=7)
        ax.set_title(r("by_gate"), loc="left", fontsize=10)
        ax.legend(fontsize=7, frameon=False)
        for pos, (title, items) in enumerate(((r("allowed_by_category"), rep["allowed"]),
                                              (r("denied_by_reason"), rep["denied"]))):
            ax = fig.add_subplot(gs[2, pos])
            names = list(items)[:8]
            ax.barh(range(len(names)), [items[n] for n in names], color="#1565c0" if pos == 0 else "#c62828")
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_title(title, loc="left", fontsize=10)
        ax = fig.add_subplot(gs[3, :])
        ax.bar(range(24), rep["by_hour"], color="#455a64")
        ax.set_xticks(range(24), [str(h) for h in range(24)], fontsize=7)
        ax.set_title(r("by_hour"), loc="left", fontsize=10)
        fig.savefig(out, format="pdf" if out.suffix.lower() == ".pdf" else "png", dpi=120)
