"""`gate clock floor`: show the time floor; `--reset --by NAME` is the operator's way
back from a floor that a wrong clock or a wrong central once put in the future."""
from __future__ import annotations

import json
from datetime import datetime

import click

from gate.cli.common import fail, load_config, open_store


@click.group("clock")
def clock_group() -> None:
    """The gate's time floor (what validity is judged by when the clock is behind)."""


@clock_group.command("floor")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="configuration file (TOML)")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), help="the SQLite store (overrides the config)")
@click.option("--reset", is_flag=True, help="put the floor at the clock's time now (or --to), recorded as an event")
@click.option("--by", default=None, help="who resets it (required with --reset)")
@click.option("--to", "to", default=None, metavar="TIME", help="ISO time with offset to put the floor at instead of now")
@click.option("--reason", default="", help="why (kept in the event)")
def clock_floor(config_path: str | None, store_path: str | None, reset: bool, by: str | None, to: str | None,
                reason: str) -> None:
    """Show the time floor, or reset it (`--reset --by NAME`). A running gate takes a
    reset up within seconds."""
    from zoneinfo import ZoneInfo

    from gate.store import time_floor as floor_admin

    conf = load_config(config_path, store_path)
    tz = ZoneInfo(conf.gate.timezone)
    now = datetime.now(tz)
    if not reset and (by or to):
        fail("--by and --to go with --reset")
    store = open_store(conf)
    try:
        if not reset:
            click.echo(json.dumps(floor_admin.describe(store, now), ensure_ascii=False))
            return
        if not by:
            fail("--reset needs --by NAME: the reset is recorded as an event")
        target = now
        if to:
            try:
                target = datetime.fromisoformat(to)
            except ValueError:
                fail(f"--to {to!r}: expected an ISO time such as 2026-11-22T08:00:00+08:00")
            if target.tzinfo is None:
                fail(f"--to {to!r}: needs a UTC offset, e.g. +08:00")
        before, after = floor_admin.reset(store, by, target, reason)
        click.echo(f"time floor {before or '(none)'} → {after} (by {by}; recorded as an event)")
    finally:
        store.close()
