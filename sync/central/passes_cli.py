"""`gate central passes`: central's roster (add, revoke, delete, import, list); every
change bumps the version, and the running central sends it to the gates.

    gate central -c CENTRAL.toml passes add --id P1 --holder 李雷 --unit 3-2-501 --category resident
    gate central -c CENTRAL.toml passes import roster.csv [--replace]

Registered by sync/central/cli.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gate.config import CATEGORIES
from sync.central.cli_common import common_opts, fail, load_conf, open_store


@click.group("passes")
def passes_group() -> None:
    """Central's roster: every change bumps the version and is sent to the gates."""


def _time_opt(name: str, help: str) -> Any:
    return click.option(name, default=None, help=help + " (YYYY-MM-DD, 'YYYY-MM-DD HH:MM' or ISO 8601; local time of the config's timezone)")


@passes_group.command("add")
@click.option("--id", "pass_id", required=True, help="the pass id (what its QR names)")
@click.option("--holder", required=True, help="the holder's name")
@click.option("--unit", required=True, help="the unit, e.g. 3-2-501")
@click.option("--category", required=True, type=click.Choice(CATEGORIES), help="the pass's category")
@click.option("--phone-last4", help="the last four digits of the holder's phone (the guard asks for them)")
@click.option("--card", help="access card number (digits)")
@_time_opt("--valid-from", "valid from")
@_time_opt("--valid-until", "valid until; a date alone means through that day")
@_time_opt("--observation-until", "home observation ends")
@_time_opt("--pcr-at", "time of the last negative test")
@click.option("--health-code", type=click.Choice(["green", "yellow", "red"]), help="the holder's health code colour")
@common_opts
@click.pass_context
def passes_add(ctx: click.Context, pass_id: str, holder: str, unit: str, category: str, phone_last4: str | None,
               card: str | None, valid_from: str | None, valid_until: str | None, observation_until: str | None,
               pcr_at: str | None, health_code: str | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Add or update a pass (the whole record is replaced). Without --valid-until it
    ends pass_valid_days (365) from today."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from gate.desk.roster import parse_when

    conf = load_conf(ctx, config_path, broker, db)
    tz = ZoneInfo(conf.timezone)
    fields: dict[str, Any] = {"id": pass_id, "holder": holder, "unit": unit, "category": category,
                              "phone_last4": phone_last4, "card": card, "health_code": health_code}
    try:
        for key, value, eod in (("valid_from", valid_from, False), ("valid_until", valid_until, True),
                                ("observation_until", observation_until, False), ("pcr_at", pcr_at, False)):
            fields[key] = parse_when(value, tz, eod) if value else None
        if not valid_until and conf.pass_valid_days:
            # Passes end by default: a removed pass's tombstone (and its QR) need not last for ever.
            last = (datetime.now(tz) + timedelta(days=conf.pass_valid_days)).date()
            fields["valid_until"] = parse_when(last.isoformat(), tz, True)
    except ValueError as exc:
        fail(f"pass {pass_id}: {exc}")
    if fields["valid_from"] and fields["valid_until"] and fields["valid_from"] > fields["valid_until"]:
        # A pass that ends before it starts admits nobody: a typo, said now rather than at the gate.
        fail(f"pass {pass_id}: --valid-from {fields['valid_from'].isoformat()} is after its end "
             f"{fields['valid_until'].isoformat()}")
    with open_store(conf, what=f"pass {pass_id}: ") as store:
        v = store.add_pass(**fields)
    click.echo(f"pass {pass_id} stored: roster version {v}")


@passes_group.command("revoke")
@click.argument("pass_id")
@click.option("--undo", is_flag=True, help="lift the revocation")
@click.option("--by", "by", help="who revokes it (default: the config's name); the gates record it")
@click.option("--reason", help="why; the gates record it")
@common_opts
@click.pass_context
def passes_revoke(ctx: click.Context, pass_id: str, undo: bool, by: str | None, reason: str | None, config_path: str | None,
                  broker: str | None, db: str | None) -> None:
    """Revoke a pass (gates refuse it even with a valid signature). Each gate records an
    `admin` event naming who revoked it and why."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        v = store.revoke_pass(pass_id, revoked=not undo, by=by or conf.name, reason=reason)
    click.echo(f"pass {pass_id} {'restored' if undo else 'revoked'}: roster version {v}")


@passes_group.command("delete")
@click.argument("pass_id")
@common_opts
@click.pass_context
def passes_delete(ctx: click.Context, pass_id: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Remove a pass from the roster. Its id stays as a tombstone: every gate refuses
    its QR `revoked` until the pass would have expired (its valid_until, or for good)."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        v = store.delete_pass(pass_id)
    click.echo(f"pass {pass_id} deleted: roster version {v}")


@passes_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--replace", is_flag=True, help="also delete passes that are not in the file (gates keep refusing them)")
@common_opts
@click.pass_context
def passes_import(ctx: click.Context, file: str, replace: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Load a roster CSV or XLSX (same format and rules as `gate passes import`); all rows or none."""
    from sync.central import import_roster

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        v0, v1 = import_roster(store, Path(file), tz=conf.timezone, replace=replace, attributes=conf.roster.attributes)
    click.echo(f"{file}: {v1 - v0} changes, roster version {v0} -> {v1}")


@passes_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@common_opts
@click.pass_context
def passes_list(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The roster as the gates get it."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        rows = store.db.all("SELECT wire FROM passes ORDER BY id")
        version = store.passes_version
    for (wire,) in rows:
        if as_json:
            click.echo(wire)
        else:
            w = json.loads(wire)
            click.echo(f"{w['id']:<24} {w['category']:<9} {w.get('unit') or '':<12} {w.get('holder') or ''}"
                       f"{'  REVOKED' if w.get('revoked') else ''}")
    if not as_json:
        click.echo(f"{len(rows)} passes, version {version}", err=True)
