"""`gate report`: what the store recorded, for people. The daily report (text, JSON, or a
page as PDF/HTML/PNG) and every event of a period for a spreadsheet (range)."""
from __future__ import annotations

import json
from typing import Any

import click

from gate.cli.common import config_option, fail, load_config, open_store, parse_day, store_option, write_text


@click.group("report")
def report_group() -> None:
    """Reports from the store."""


@report_group.command("daily")
@click.option("--date", "day", default=None, help="YYYY-MM-DD (local date); default: yesterday, the last whole day")
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
@click.option("--pdf", type=click.Path(dir_okay=False), help="also write the report as a one-page PDF")
@click.option("--html", type=click.Path(dir_okay=False), help="also write the report as a self-contained HTML page")
@click.option("--png", type=click.Path(dir_okay=False), help="also write the report page as a PNG (for a chat)")
@config_option
@store_option
def report_daily(
    day: str | None, as_json: bool, config_path: str | None, store_path: str | None,
    pdf: str | None = None, html: str | None = None, png: str | None = None,
) -> None:
    """The daily report, also for a day with no events (default: yesterday's)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from gate.store.daily import daily

    conf = load_config(config_path, store_path)
    if day is None:
        day = (datetime.now(ZoneInfo(conf.gate.timezone)).date() - timedelta(days=1)).isoformat()
    parse_day(day, "--date")
    store = open_store(conf)
    try:
        rep = daily(store, day)
        if pdf or html or png:
            report_documents(conf, store, day, pdf, html, png)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rep, ensure_ascii=False))
        return
    click.echo(daily_text(rep))


def daily_text(rep: dict[str, Any]) -> str:
    """The day in a terminal, in the report's words (gate/core/words.toml)."""
    from gate.core.words import REPORT, both, reason_label

    def counts(items: dict[str, int], label: Any) -> str:
        return ", ".join(f"{label(k)} {v}" for k, v in items.items()) or "-"

    r = lambda key: both(REPORT, key)  # noqa: E731
    return "\n".join([
        f"{REPORT['title'][0]} {REPORT['title'][1]} {rep['date']} — {r('gate')} {rep['gate']}",
        f"  {r('events')}: {rep['events']}   {r('fevers')}: {rep['fevers']}   {r('checks')}: {rep['challenges']}",
        f"  {r('allowed')}: {counts(rep['allowed'], str)}",
        f"  {r('denied')}: {counts(rep['denied'], reason_label)}",
        f"  {r('new_cards')}: {', '.join(rep['new_cards']) or '-'}   {r('unknown_cards')}: {', '.join(rep['unknown_cards']) or '-'}",
        f"  {r('by_hour')}: {rep['by_hour']}",
    ])


def report_documents(conf: Any, store: Any, day: str, pdf: str | None, html: str | None, png: str | None) -> None:
    """`gate report daily --pdf/--html/--png`: the same day as a page people read."""
    from pathlib import Path

    from gate.desk.fonts import FontMissing
    from gate.desk.policy_admin import in_force
    from gate.desk.report_doc import collect, write_html, write_pdf, write_png

    policy = in_force(conf.policy, store.get_meta).policy
    details = collect(store, day, policy)
    try:
        if pdf:
            write_pdf(details, policy, Path(pdf))
            click.echo(f"wrote {pdf}", err=True)
        if html:
            write_html(details, policy, Path(html))
            click.echo(f"wrote {html}", err=True)
        if png:
            write_png(details, policy, Path(png))
            click.echo(f"wrote {png}", err=True)
    except FontMissing as exc:
        fail(str(exc))


@report_group.command("range")
@click.option("--since", required=True, help="first local day, YYYY-MM-DD")
@click.option("--until", required=True, help="last local day, YYYY-MM-DD")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (the default; UTF-8 with BOM when written to a file)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--out", type=click.Path(dir_okay=False), help="file to write (default: standard output)")
@config_option
@store_option
def report_range(since: str, until: str, as_json: bool, as_csv: bool, out: str | None,
                 config_path: str | None, store_path: str | None) -> None:
    """Every event of a period, one row each, for a spreadsheet."""
    import csv
    import io

    from gate.store.daily import RANGE_COLUMNS, events_range

    if as_json and as_csv:
        fail("--json or --csv, not both")
    d0, d1 = parse_day(since, "--since"), parse_day(until, "--until")
    if d1 < d0:
        fail(f"--until {d1} is before --since {d0}")
    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        rows = list(events_range(store, d0.isoformat(), d1.isoformat()))
    finally:
        store.close()
    if as_json:
        write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(RANGE_COLUMNS), lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
        write_text(out, buf.getvalue(), bom=True)
    if out and out != "-":
        click.echo(f"wrote {out}: {len(rows)} events {d0} .. {d1}", err=True)
