"""`gate central`: run the reference central, change its roster, list what it holds,
send commands and policy. Register with ``main.add_command(central)``.

    gate central -c CENTRAL.toml [--broker mqtt://HOST:PORT] [--db PATH|DSN]      # run
    gate central -c CENTRAL.toml passes add --id P1 --holder 李雷 --unit 3-2-501 --category resident
    gate central -c CENTRAL.toml passes revoke P1
    gate central -c CENTRAL.toml passes import roster.csv [--replace]
    gate central -c CENTRAL.toml events --json [--gate east-1]
    gate central -c CENTRAL.toml cmd open-door --gate east-1 --lane in --reason "ambulance"
    gate central -c CENTRAL.toml policy publish policy.toml
    gate central -c CENTRAL.toml keys withdraw desk.pub --note "stolen"
    gate central -c CENTRAL.toml keys gate-add east east.pub     # vouch for a gate's own key (visitors)
    gate central -c CENTRAL.toml visitors [--overstay] [--json]  # the site's visitor register
    gate central -c CENTRAL.toml quarantine [list|clear]   # messages set aside
    gate central -c CENTRAL.toml privacy export|erase --pass P1 [--by NAME]   # a resident's request, site-wide
    gate central -c CENTRAL.toml privacy purge|status   # retention now; erasures not yet confirmed
    gate central -c CENTRAL.toml users add NAME --role admin|staff|viewer   # the office console's accounts

-c (or $GATE_CENTRAL_CONFIG), --broker and --db may be given before or after the
sub-command (sync/central/cli_common.py). Roster changes go to the database; the
running central publishes them within its poll interval. The sub-groups live in
passes_cli.py, commands_cli.py, keys_cli.py, quarantine_cli.py, privacy_cli.py, users_cli.py and
broker_cli.py; with a [console] section the run also serves the office console
(sync/central/console/).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from gate.config import ConfigError
from sync.central.broker_cli import broker_group
from sync.central.cli_common import common_opts, fail, load_conf, open_store
from sync.central.commands_cli import cmd_group, policy_group
from sync.central.keys_cli import keys_group
from sync.central.passes_cli import passes_group
from sync.central.privacy_cli import privacy_group
from sync.central.quarantine_cli import quarantine_group
from sync.central.users_cli import users_group

log = logging.getLogger("sync.central")


@click.group("central", invoke_without_command=True)
@common_opts
@click.pass_context
def central(ctx: click.Context, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Run the reference central (without a sub-command), or manage it."""
    import os

    config_path = config_path or os.environ.get("GATE_CENTRAL_CONFIG")
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        root.obj = {}
    root.obj["central"] = {"config_path": config_path, "broker": broker, "db": db}
    if ctx.invoked_subcommand is None:
        _run(ctx)


def _run(ctx: click.Context) -> None:
    from sync.central import Central

    conf = load_conf(ctx)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        c = Central(conf)
        c.start()
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. the database cannot be reached
        fail(f"central cannot start: {exc}", 1)
    console = _console(conf, c)
    done = threading.Event()

    def bye(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    click.echo(
        f"central {conf.mqtt_client_id} for site {conf.site}: broker {conf.broker}, db {conf.db}, "
        f"passes v{c.passes_version}", err=True,
    )
    last = time.monotonic()
    while not done.wait(1.0):
        if time.monotonic() - last >= 60:
            last = time.monotonic()
            log.info("stats: %s", c.stats())
    if console is not None:
        console.stop()
    c.stop()
    click.echo(f"central stopped: {json.dumps(c.stats(), sort_keys=True)}", err=True)


def _console(conf: Any, central: Any) -> Any:
    """The office console when CENTRAL.toml has [console] (sync/central/console/), else None."""
    if conf.console is None:
        return None
    from sync.central.console.server import Console, ConsoleError

    try:
        console = Console(conf, db_url=central.db_url, notify=central.wake_publisher).start()
    except ConsoleError as exc:
        central.stop()
        fail(str(exc))
    click.echo(f"office console: {console.url}", err=True)
    return console


# ---------------------------------------------------------------- events, status


@central.command("events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line (the event as the gate sent it)")
@click.option("--gate", "gate_id", help="only this gate")
@click.option("--limit", type=int, help="at most this many events (the newest)")
@common_opts
@click.pass_context
def events_cmd(ctx: click.Context, as_json: bool, gate_id: str | None, limit: int | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The events central holds, ordered by gate and seq."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        events = store.events(gate_id, limit=limit)
    for ev in events:
        if as_json:
            click.echo(json.dumps(ev, ensure_ascii=False, separators=(",", ":")))
        else:
            what = ev.get("decision") or ev.get("kind") or ev.get("action") or ""
            click.echo(f"{ev['gate']:<16} {ev['seq']:>8} {ev['ts']:<32} {ev['type']:<10} {ev.get('lane') or '':<8} {what} {ev.get('reason') or ''}")


@central.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
@common_opts
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Each gate's last status: online, OFFLINE, STALE (three heartbeats missed) or
    SILENT (an alarm: stale longer than gate_silent_alarm_s); versions, outbox depth."""
    import time

    from sync.central import visitors

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        statuses = store.liveness(time.time(), conf.gate_silent_alarm_s)
        over = visitors.overstays(store.db, time.time())
    silent = []
    for gate, st in statuses.items():
        if as_json:
            click.echo(json.dumps(st, ensure_ascii=False, separators=(",", ":")))
            continue
        state = {"online": "online ", "offline": "OFFLINE", "stale": "STALE  ", "silent": "SILENT "}[st["state"]]
        quiet = f" (nothing for {st['quiet_s']:.0f} s)" if st["state"] in ("stale", "silent") else ""
        click.echo(f"{gate:<16} {state} {st['ts']}  passes v{st.get('passes_version', '?')}"
                   f"  policy v{st.get('policy_version', '?')}  outbox {st.get('outbox_depth', '?')}{quiet}")
        if st["state"] == "silent":
            silent.append(gate)
    for v in over:  # visitors still inside after their visit ended (sync/central/visitors.py)
        if as_json:
            click.echo(json.dumps({"alarm": "overstay", **v}, ensure_ascii=False, separators=(",", ":")))
        else:
            click.echo(_overstay_line(v, conf.timezone))
    if silent:
        click.echo(f"ALARM: no heartbeat from {', '.join(silent)} for over {conf.gate_silent_alarm_s:g} s", err=True)


def _local(iso: str, tz: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def _overstay_line(v: dict[str, Any], tz: str) -> str:
    return (f"OVERSTAY {v['pass']:<16} {v.get('holder') or '':<10} host unit {v['unit']}: visit ended "
            f"{_local(v['valid_until'], tz)}, entered {_local(v['last_move']['at'], tz)} at {v['last_move']['gate']} "
            f"(registered at {v['gate']})")


@central.command("visitors")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--overstay", is_flag=True, help="only visitors still inside after their visit ended")
@click.option("--days", type=int, default=7, show_default=True, help="visits that ended within this many days (or have not)")
@common_opts
@click.pass_context
def visitors_cmd(ctx: click.Context, as_json: bool, overstay: bool, days: int, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The site's visitor register: who, the host unit, the visit's end, where they are
    (inside, left, not yet come) and OVERSTAY for a visitor inside after the end."""
    from sync.central import visitors

    conf = load_conf(ctx, config_path, broker, db)
    now = time.time()
    with open_store(conf) as store:
        rows = visitors.overstays(store.db, now) if overstay else visitors.listing(store.db, now, since=now - days * 86400)
    for v in rows:
        if as_json:
            click.echo(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
        elif v["overstay"]:
            click.echo(_overstay_line(v, conf.timezone))
        else:
            click.echo(f"{v['pass']:<16} {v.get('holder') or '':<10} host unit {v['unit']:<12} until {_local(v['valid_until'], conf.timezone)}"
                       f"  {v['state']:<8} registered at {v['gate']}")


@central.group("report")
def report_group() -> None:
    """The site's reports, built from every gate's."""


@report_group.command("daily")
@click.option("--date", "day", default=None, help="YYYY-MM-DD (local date); default: yesterday")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
@click.option("--pdf", type=click.Path(dir_okay=False), help="also write the report as a one-page PDF")
@click.option("--png", type=click.Path(dir_okay=False), help="also write the report page as a PNG")
@common_opts
@click.pass_context
def report_daily_cmd(ctx: click.Context, day: str | None, as_json: bool, pdf: str | None, png: str | None,
                     config_path: str | None, broker: str | None, db: str | None) -> None:
    """The community's day: every gate's report summed, and the gates that sent none (零报告)."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sync.central.site_report import site_daily, text, write_figure

    conf = load_conf(ctx, config_path, broker, db)
    if day is None:
        day = (datetime.now(ZoneInfo(conf.timezone)).date() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        fail(f"--date: expected YYYY-MM-DD, got {day!r}")
    with open_store(conf) as store:
        rep = site_daily(store, day, conf.site)
    click.echo(json.dumps(rep, ensure_ascii=False) if as_json else text(rep))
    for out in (pdf, png):
        if out:
            write_figure(rep, Path(out))


for _group in (passes_group, cmd_group, policy_group, keys_group, quarantine_group, broker_group, privacy_group,
               users_group):
    central.add_command(_group)
