"""The console's reports pages (Flask routes); every signed-in account reads them.

    /reports?day=YYYY-MM-DD          the site's day: every gate's report summed, charts,
                                     the gates that sent none (default: yesterday)
    /reports/site-<day>.pdf          the same day as site_report.py's one-page PDF
    /reports/gate/<gate>?day=...     one gate's report of a day, as it sent it
    /reports/export.csv?since=&until=[&gate=]
                                     every event of a period, one a row (UTF-8 with a BOM)
    /reports/cards?day=...           cards first seen that day, against the register
    /reports/missing?month=YYYY-MM   the days on which a gate sent no report

Words: gate/core/words.toml [console_reports]; data: report_data.py; charts: charts.py.
"""
from __future__ import annotations

import csv
import io
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterator, Mapping

from flask import Flask, Response, render_template, request, send_file
from markupsafe import Markup

from gate.core.words import CONSOLE_REPORTS, REASONS, Pair
from sync.central.console import charts, report_data
from sync.central.console.guard import Guard


def words_of(table: Mapping[str, Pair]) -> Any:
    """A template's words from one table: Chinese first, English beside it (as pages.words)."""
    def w(key: str, **fill: Any) -> Markup:
        zh, en = table.get(key, (key, key))
        if fill:
            zh, en = zh.format(**fill), en.format(**fill)
        return Markup('<span class="zh">{}</span> <span class="en">{}</span>').format(zh, en)
    return w


def plain_of(table: Mapping[str, Pair], key: str, **fill: Any) -> str:
    zh, en = table.get(key, (key, key))
    return f"{zh.format(**fill)} · {en.format(**fill)}" if fill else f"{zh} · {en}"


def parse_day(text: str | None, default: date) -> date | None:
    if not text:
        return default
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def reason_words(code: str) -> str:
    zh, en = REASONS.get(code, (code, code))
    return f"{zh} {en}" if zh != en else code


def day_charts(rep: dict[str, Any]) -> dict[str, Markup]:
    rw = CONSOLE_REPORTS
    gates = rep["gates"]
    by = rep["by_gate"]
    return {
        "by_gate": charts.columns(
            gates, [([by[g].get("allowed", 0) for g in gates], charts.ALLOWED, rw["allowed"][1]),
                    ([by[g].get("denied", 0) for g in gates], charts.DENIED, rw["denied"][1])],
            rw["by_gate"][1], marked={i for i, g in enumerate(gates) if not by[g]["reported"]}),
        "by_hour": charts.columns([str(h) for h in range(24)], [(list(rep["by_hour"]), charts.SLATE, rw["by_hour"][1])],
                                  rw["by_hour"][1]),
        "allowed": charts.bars(list(rep["allowed"].items()), charts.BLUE, rw["allowed_by_category"][1], rw["none"][0]),
        "denied": charts.bars([(reason_words(k), v) for k, v in rep["denied"].items()], charts.DENIED,
                              rw["denied_by_reason"][1], rw["none"][0]),
    }


def install(app: Flask, console: Any, guard: Guard) -> None:
    tz = console.tz
    app.jinja_env.globals.update(repw=words_of(CONSOLE_REPORTS), repplain=lambda k, **f: plain_of(CONSOLE_REPORTS, k, **f),
                                 reason_words=reason_words)

    def today() -> date:
        return datetime.now(tz).date()

    def bad(key: str) -> Response:
        return Response(render_template("report_bad.html", key=key), 400, mimetype="text/html")

    @app.get("/reports")
    def reports_page() -> Any:
        d = parse_day(request.args.get("day"), today() - timedelta(days=1))
        if d is None:
            return bad("bad_day")
        t0 = time.perf_counter()
        rep = report_data.site_day(console.store(), d.isoformat(), console.conf.site)
        trend = report_data.recent_days(console.db(), d.isoformat())
        trend_chart = charts.columns([t["date"][5:] for t in trend],
                                     [([t["allowed"] for t in trend], charts.ALLOWED, CONSOLE_REPORTS["allowed"][1]),
                                      ([t["denied"] for t in trend], charts.DENIED, CONSOLE_REPORTS["denied"][1])],
                                     CONSOLE_REPORTS["last_days"][1].format(n=len(trend)))
        return render_template("reports.html", rep=rep, day=d.isoformat(), charts=day_charts(rep), trend=trend_chart,
                               prev=(d - timedelta(days=1)).isoformat(), next=(d + timedelta(days=1)).isoformat(),
                               since=(d - timedelta(days=6)).isoformat(), ms=(time.perf_counter() - t0) * 1000)

    @app.get("/reports/site-<day>.pdf")
    def report_pdf(day: str) -> Any:
        from sync.central.site_report import write_figure

        d = parse_day(day, today())
        if d is None:
            return bad("bad_day")
        rep = report_data.site_day(console.store(), d.isoformat(), console.conf.site)
        with tempfile.TemporaryDirectory(prefix="console-report-") as tmp:
            out = Path(tmp) / f"site-{d.isoformat()}.pdf"
            write_figure(rep, out)
            data = out.read_bytes()
        return send_file(io.BytesIO(data), mimetype="application/pdf", as_attachment=True, download_name=out.name)

    @app.get("/reports/gate/<gate>")
    def gate_report(gate: str) -> Any:
        d = parse_day(request.args.get("day"), today() - timedelta(days=1))
        if d is None:
            return bad("bad_day")
        rep = report_data.gate_day(console.db(), gate, d.isoformat())
        chart = None
        if rep and not rep.get("missing"):
            chart = {"by_hour": charts.columns([str(h) for h in range(24)],
                                               [(list(rep.get("by_hour", [0] * 24)), charts.SLATE, CONSOLE_REPORTS["by_hour"][1])],
                                               CONSOLE_REPORTS["by_hour"][1]),
                     "allowed": charts.bars(list(rep.get("allowed", {}).items()), charts.BLUE,
                                            CONSOLE_REPORTS["allowed_by_category"][1], CONSOLE_REPORTS["none"][0]),
                     "denied": charts.bars([(reason_words(k), v) for k, v in rep.get("denied", {}).items()], charts.DENIED,
                                           CONSOLE_REPORTS["denied_by_reason"][1], CONSOLE_REPORTS["none"][0])}
        return render_template("report_gate.html", gate=gate, day=d.isoformat(), rep=rep, charts=chart,
                               prev=(d - timedelta(days=1)).isoformat(), next=(d + timedelta(days=1)).isoformat())

    @app.get("/reports/export.csv")
    def export_csv() -> Any:
        d0 = parse_day(request.args.get("since"), today() - timedelta(days=1))
        d1 = parse_day(request.args.get("until"), d0 or today())
        if d0 is None or d1 is None:
            return bad("bad_day")
        if d1 < d0 or (d1 - d0).days >= report_data.MAX_RANGE_DAYS:
            return bad("bad_range")
        gate = request.args.get("gate") or None
        db = console.db()

        def lines() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(report_data.COLUMNS), lineterminator="\r\n")
            buf.write("\ufeff")  # a BOM: Excel reads the file as UTF-8 (as `gate report range --out` writes it)
            w.writeheader()
            for n, row in enumerate(report_data.range_rows(db, d0.isoformat(), d1.isoformat(), tz, gate), 1):
                w.writerow(row)
                if n % 500 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        name = f"events-{d0.isoformat()}-{d1.isoformat()}{'-' + gate if gate else ''}.csv"
        return Response((s.encode("utf-8") for s in lines()), mimetype="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/reports/cards")
    def cards_page() -> Any:
        d = parse_day(request.args.get("day"), today())
        if d is None:
            return bad("bad_day")
        db = console.db()
        caught_up = report_data.refresh_cards(db, budget_s=2.0)
        found = report_data.cards_first_seen(db, d.isoformat())
        return render_template("report_cards.html", day=d.isoformat(), cards=found, caught_up=caught_up,
                               prev=(d - timedelta(days=1)).isoformat(), next=(d + timedelta(days=1)).isoformat())

    @app.get("/reports/missing")
    def missing_page() -> Any:
        month = request.args.get("month") or today().strftime("%Y-%m")
        try:
            first = date.fromisoformat(month + "-01")
        except ValueError:
            return bad("bad_day")
        cal = report_data.missing_days(console.db(), first.strftime("%Y-%m"), today())
        prev = (first - timedelta(days=1)).strftime("%Y-%m")
        nxt = (first + timedelta(days=32)).strftime("%Y-%m")
        return render_template("report_missing.html", cal=cal, prev=prev, next=nxt)
