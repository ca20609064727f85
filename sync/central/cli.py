"""`gate central`: run the reference central, change its roster, list what it holds,
send commands and policy. Register with ``main.add_command(central)``.

    gate central -c CENTRAL.toml [--broker mqtt://HOST:PORT] [--db PATH|DSN]      # run
    gate central -c CENTRAL.toml passes add --id P1 --holder 李雷 --unit 3-2-501 --category resident
    gate central -c CENTRAL.toml passes revoke P1
    gate central -c CENTRAL.toml passes import roster.csv [--replace]
    gate central -c CENTRAL.toml events --json [--gate east-1]
    gate central -c CENTRAL.toml cmd open-door --gate east-1 --lane in --reason "ambulance"
    gate central -c CENTRAL.toml policy publish policy.toml
    gate central -c CENTRAL.toml keys withdraw desk.pub --note "stolen"   # sync/central/keys_cli.py
    gate central -c CENTRAL.toml quarantine [list|clear]   # messages set aside (sync/central/quarantine_cli.py)

-c (or $GATE_CENTRAL_CONFIG), --broker and --db may be given before or after the
sub-command. Roster changes go to the database; the running central publishes
them within its poll interval.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from gate.config import CATEGORIES, ConfigError

log = logging.getLogger("sync.central")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _opts(f: Any) -> Any:
    f = click.option("--db", "db", help="database: SQLite path or postgresql:// DSN (overrides the config)")(f)
    f = click.option("--broker", "broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (overrides the config)")(f)
    f = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="CENTRAL.toml")(f)
    return f


def _conf(ctx: click.Context, config_path: str | None = None, broker: str | None = None, db: str | None = None):  # type: ignore[no-untyped-def]
    from sync.central import load_central_config

    top = (ctx.find_root().obj or {}).get("central", {}) if isinstance(ctx.find_root().obj, dict) else {}
    config_path = config_path or top.get("config_path")
    broker = broker or top.get("broker")
    db = db or top.get("db")
    if not config_path:
        _fail("this command needs the central configuration: gate central -c CENTRAL.toml ... (see config/central.example.toml)")
    try:
        return load_central_config(config_path, {"broker": broker, "db": db})
    except ConfigError as exc:
        _fail(str(exc))


def _store(conf):  # type: ignore[no-untyped-def]
    from sync.central import CentralStore

    try:
        return CentralStore(conf.db)
    except ConfigError as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened
        _fail(f"cannot open the database {conf.db}: {exc}")


@click.group("central", invoke_without_command=True)
@_opts
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

    conf = _conf(ctx)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        c = Central(conf)
        c.start()
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. the database cannot be reached
        _fail(f"central cannot start: {exc}", 1)
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
    c.stop()
    click.echo(f"central stopped: {json.dumps(c.stats(), sort_keys=True)}", err=True)


# ---------------------------------------------------------------- passes


@central.group("passes")
def passes_group() -> None:
    """Central's roster: every change bumps the version and is sent to the gates."""


def _time_opt(name: str, help: str) -> Any:
    return click.option(name, default=None, help=help + " (YYYY-MM-DD, 'YYYY-MM-DD HH:MM' or ISO 8601; local time of the config's timezone)")


@passes_group.command("add")
@click.option("--id", "pass_id", required=True)
@click.option("--holder", required=True)
@click.option("--unit", required=True)
@click.option("--category", required=True, type=click.Choice(CATEGORIES))
@click.option("--phone-last4")
@click.option("--card", help="access card number (digits)")
@_time_opt("--valid-from", "valid from")
@_time_opt("--valid-until", "valid until; a date alone means through that day")
@_time_opt("--observation-until", "home observation ends")
@_time_opt("--pcr-at", "time of the last negative test")
@click.option("--health-code", type=click.Choice(["green", "yellow", "red"]))
@_opts
@click.pass_context
def passes_add(ctx: click.Context, pass_id: str, holder: str, unit: str, category: str, phone_last4: str | None,
               card: str | None, valid_from: str | None, valid_until: str | None, observation_until: str | None,
               pcr_at: str | None, health_code: str | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Add or update a pass (the whole record is replaced). Without --valid-until it
    ends pass_valid_days (365) from today."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from gate.roster import _when

    conf = _conf(ctx, config_path, broker, db)
    tz = ZoneInfo(conf.timezone)
    fields: dict[str, Any] = {"id": pass_id, "holder": holder, "unit": unit, "category": category,
                              "phone_last4": phone_last4, "card": card, "health_code": health_code}
    try:
        for key, value, eod in (("valid_from", valid_from, False), ("valid_until", valid_until, True),
                                ("observation_until", observation_until, False), ("pcr_at", pcr_at, False)):
            fields[key] = _when(value, tz, eod) if value else None
        if not valid_until and conf.pass_valid_days:
            # Passes end by default: a removed pass's tombstone (and its QR) need not last for ever.
            last = (datetime.now(tz) + timedelta(days=conf.pass_valid_days)).date()
            fields["valid_until"] = _when(last.isoformat(), tz, True)
        store = _store(conf)
        try:
            v = store.add_pass(**fields)
        finally:
            store.close()
    except ValueError as exc:
        _fail(f"pass {pass_id}: {exc}")
    click.echo(f"pass {pass_id} stored: roster version {v}")


@passes_group.command("revoke")
@click.argument("pass_id")
@click.option("--undo", is_flag=True, help="lift the revocation")
@_opts
@click.pass_context
def passes_revoke(ctx: click.Context, pass_id: str, undo: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Revoke a pass (gates refuse it even with a valid signature)."""
    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        v = store.revoke_pass(pass_id, revoked=not undo)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"pass {pass_id} {'restored' if undo else 'revoked'}: roster version {v}")


@passes_group.command("delete")
@click.argument("pass_id")
@_opts
@click.pass_context
def passes_delete(ctx: click.Context, pass_id: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Remove a pass from the roster. Its id stays as a tombstone: every gate refuses
    its QR `revoked` until the pass would have expired (its valid_until, or for good)."""
    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        v = store.delete_pass(pass_id)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"pass {pass_id} deleted: roster version {v}")


@passes_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--replace", is_flag=True, help="also delete passes that are not in the file (gates keep refusing them)")
@_opts
@click.pass_context
def passes_import(ctx: click.Context, file: str, replace: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Load a roster CSV (same format as `gate passes import`); all rows or none."""
    from sync.central import import_roster

    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        v0, v1 = import_roster(store, Path(file), tz=conf.timezone, replace=replace)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"{file}: {v1 - v0} changes, roster version {v0} -> {v1}")


@passes_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@_opts
@click.pass_context
def passes_list(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The roster as the gates get it."""
    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        rows = store.db.all("SELECT wire FROM passes ORDER BY id")
        version = store.passes_version
    finally:
        store.close()
    for (wire,) in rows:
        if as_json:
            click.echo(wire)
        else:
            w = json.loads(wire)
            click.echo(f"{w['id']:<24} {w['category']:<9} {w.get('unit') or '':<12} {w.get('holder') or ''}"
                       f"{'  REVOKED' if w.get('revoked') else ''}")
    if not as_json:
        click.echo(f"{len(rows)} passes, version {version}", err=True)


# ---------------------------------------------------------------- events, status


@central.command("events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line (the event as the gate sent it)")
@click.option("--gate", "gate_id", help="only this gate")
@click.option("--limit", type=int)
@_opts
@click.pass_context
def events_cmd(ctx: click.Context, as_json: bool, gate_id: str | None, limit: int | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The events central holds, ordered by gate and seq."""
    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        events = store.events(gate_id, limit=limit)
    finally:
        store.close()
    for ev in events:
        if as_json:
            click.echo(json.dumps(ev, ensure_ascii=False, separators=(",", ":")))
        else:
            what = ev.get("decision") or ev.get("kind") or ev.get("action") or ""
            click.echo(f"{ev['gate']:<16} {ev['seq']:>8} {ev['ts']:<32} {ev['type']:<10} {ev.get('lane') or '':<8} {what} {ev.get('reason') or ''}")


@central.command("status")
@click.option("--json", "as_json", is_flag=True)
@_opts
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Each gate's last status: online, OFFLINE, STALE (three heartbeats missed) or
    SILENT (an alarm: stale longer than gate_silent_alarm_s); versions, outbox depth."""
    import time

    conf = _conf(ctx, config_path, broker, db)
    store = _store(conf)
    try:
        statuses = store.liveness(time.time(), conf.gate_silent_alarm_s)
    finally:
        store.close()
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
    if silent:
        click.echo(f"ALARM: no heartbeat from {', '.join(silent)} for over {conf.gate_silent_alarm_s:g} s", err=True)


@central.group("report")
def report_group() -> None:
    """The site's reports, built from every gate's."""


@report_group.command("daily")
@click.option("--date", "day", default=None, help="YYYY-MM-DD (local date); default: yesterday")
@click.option("--json", "as_json", is_flag=True)
@click.option("--pdf", type=click.Path(dir_okay=False), help="also write the report as a one-page PDF")
@click.option("--png", type=click.Path(dir_okay=False), help="also write the report page as a PNG")
@_opts
@click.pass_context
def report_daily_cmd(ctx: click.Context, day: str | None, as_json: bool, pdf: str | None, png: str | None,
                     config_path: str | None, broker: str | None, db: str | None) -> None:
    """The community's day: every gate's report summed, and the gates that sent none (零报告)."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from sync.central.site_report import site_daily, text, write_figure

    conf = _conf(ctx, config_path, broker, db)
    if day is None:
        day = (datetime.now(ZoneInfo(conf.timezone)).date() - timedelta(days=1)).isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        _fail(f"--date: expected YYYY-MM-DD, got {day!r}")
    store = _store(conf)
    try:
        rep = site_daily(store, day, conf.site)
    finally:
        store.close()
    click.echo(json.dumps(rep, ensure_ascii=False) if as_json else text(rep))
    for out in (pdf, png):
        if out:
            write_figure(rep, Path(out))


# ---------------------------------------------------------------- commands


@central.group("cmd")
def cmd_group() -> None:
    """Send a signed command to one gate (nonce + expiry; a replay is refused by the gate)."""


def _send(ctx: click.Context, conf: Any, gate: str, cmd: str, ttl: float | None, **kw: Any) -> None:
    from sync.central import Signer, publish_once

    try:
        signer = Signer(conf.signing_key, conf.topics, conf.name)
        payload = signer.command(gate, cmd, ttl_s=ttl or conf.command_ttl_s, **kw)
    except ValueError as exc:
        _fail(str(exc))
    store = _store(conf)
    try:
        store.store_command(payload)
    finally:
        store.close()
    try:
        ok = publish_once(conf, [(conf.topics.gate(gate).cmd, payload, False)])
    except (ConnectionError, OSError) as exc:
        _fail(f"{cmd} to {gate} not sent: {exc}", 1)
    if not ok:
        _fail(f"{cmd} to {gate}: the broker refused or did not acknowledge it", 1)
    click.echo(f"{cmd} sent to {gate}: nonce {payload['nonce']}, expires {payload['expires']}")


def _cmd_opts(f: Any) -> Any:
    f = click.option("--ttl", type=float, help="seconds until the command expires (default: command_ttl_s)")(f)
    f = click.option("--gate", "gate", required=True, help="gate id")(f)
    return _opts(f)


@cmd_group.command("open-door")
@click.option("--lane", required=True)
@click.option("--reason", required=True)
@_cmd_opts
@click.pass_context
def cmd_open_door(ctx: click.Context, lane: str, reason: str, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Open a lane's door once, with a reason (recorded by the gate as an override)."""
    _send(ctx, _conf(ctx, config_path, broker, db), gate, "open_door", ttl, lane=lane, reason=reason)


@cmd_group.command("door-mode")
@click.option("--lane", required=True, help="a lane's name, or 'all'")
@click.option("--mode", type=click.Choice(["normal", "open", "locked"]), required=True)
@click.option("--reason", required=True)
@_cmd_opts
@click.pass_context
def cmd_door_mode(ctx: click.Context, lane: str, mode: str, reason: str, gate: str, ttl: float | None,
                  config_path: str | None, broker: str | None, db: str | None) -> None:
    """Set a lane's door mode (normal, open: held unlocked, locked: the guard opens), with a reason."""
    _send(ctx, _conf(ctx, config_path, broker, db), gate, "door_mode", ttl, lane=lane, mode=mode, reason=reason)


@cmd_group.command("resync")
@_cmd_opts
@click.pass_context
def cmd_resync(ctx: click.Context, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate fetch a fresh pass-table snapshot."""
    _send(ctx, _conf(ctx, config_path, broker, db), gate, "resync", ttl)


@cmd_group.command("report-now")
@click.option("--date", "day", help="the day (YYYY-MM-DD); default: today at the gate")
@_cmd_opts
@click.pass_context
def cmd_report_now(ctx: click.Context, day: str | None, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate send its daily report now."""
    _send(ctx, _conf(ctx, config_path, broker, db), gate, "report_now", ttl, day=day)


@cmd_group.command("reload")
@_cmd_opts
@click.pass_context
def cmd_reload(ctx: click.Context, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate reload its configuration."""
    _send(ctx, _conf(ctx, config_path, broker, db), gate, "reload", ttl)


# ---------------------------------------------------------------- policy


@central.group("policy")
def policy_group() -> None:
    """The signed policy every gate applies."""


@policy_group.command("publish")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--no-send", is_flag=True, help="only store it; the running central publishes it")
@_opts
@click.pass_context
def policy_publish(ctx: click.Context, file: str, no_send: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Sign FILE's [policy] table (its `version` must be higher than the last one) and publish it, retained."""
    from gate.config import load_policy
    from sync.central import Signer, publish_once

    conf = _conf(ctx, config_path, broker, db)
    try:
        payload = Signer(conf.signing_key, conf.topics, conf.name).policy(load_policy(file))
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    store = _store(conf)
    try:
        latest = store.latest_policy()
        if latest and latest["version"] >= payload["version"]:
            _fail(f"{file}: version {payload['version']} is not above the published version {latest['version']}; bump it")
        store.store_policy(payload)
    finally:
        store.close()
    if no_send:
        click.echo(f"policy version {payload['version']} stored")
        return
    try:
        ok = publish_once(conf, [(conf.topics.policy, payload, True)])
    except (ConnectionError, OSError) as exc:
        _fail(f"policy version {payload['version']} stored but not sent: {exc} (the running central sends it)", 1)
    if not ok:
        _fail(f"policy version {payload['version']} stored; the broker refused it", 1)
    click.echo(f"policy version {payload['version']} published")


# ---------------------------------------------------------------- keys, quarantine

from sync.central.keys_cli import keys_group  # noqa: E402 - it uses the helpers above
from sync.central.quarantine_cli import quarantine_group  # noqa: E402 - it uses the helpers above

central.add_command(keys_group)
central.add_command(quarantine_group)
