"""What the `gate` commands share: failing with a message and an exit code, loading the
configuration and opening the store, the -c/--store/--broker options, and small helpers
(the login name, a YYYY-MM-DD option, text written to a file or standard output)."""
from __future__ import annotations

import getpass
import logging
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click

from gate import config as cfgmod
from gate.config import ConfigError

config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="configuration file (TOML)")
broker_option = click.option(
    "--broker", default=None, metavar="mqtt://HOST:PORT", help="MQTT broker (mqtt:// or mqtts://); overrides the config"
)
store_option = click.option("--store", "store_path", type=click.Path(dir_okay=False), help="where the SQLite store lives (overrides the config)")


def fail(message: str, code: int = 2) -> NoReturn:
    """Say what is wrong on standard error and exit (2: a usage or configuration error)."""
    click.echo(message, err=True)
    sys.exit(code)


def load_config(path: str | None, store: str | None = None) -> cfgmod.Config:
    """The configuration at PATH (-c), with --store's path in place of its own if given."""
    if path is None:
        fail("this command needs a configuration: -c CONFIG (see config/gate.example.toml)")
    try:
        conf = cfgmod.load(path)
    except ConfigError as exc:
        fail(str(exc))
    if store:
        conf = conf.model_copy(update={"store": cfgmod.StoreSection(path=Path(store))})
    return conf


def open_store(conf: cfgmod.Config):  # type: ignore[no-untyped-def]
    """The configuration's store, opened (and migrated) in the gate's time zone."""
    from zoneinfo import ZoneInfo

    from gate.store.database import Store

    return Store(conf.store.path, gate_id=conf.gate.id, tz=ZoneInfo(conf.gate.timezone))


def local_tz(conf: Any) -> Any:
    """The gate's time zone."""
    from zoneinfo import ZoneInfo

    return ZoneInfo(conf.gate.timezone)


def check_broker(broker: str | None) -> None:
    """--broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]."""
    if broker is not None and not re.fullmatch(r"mqtts?://[^:/\s]+(:\d{1,5})?/?", broker):
        fail(f"--broker: expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {broker!r}")


def parse_day(value: str, option: str) -> date:
    """A YYYY-MM-DD option's value as a date, or fail naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected YYYY-MM-DD, got {value!r}")


def login_name() -> str:
    """Who is at the desk when --by is not given: the login name ("desk" if there is none)."""
    try:
        return getpass.getuser()
    except Exception:
        return "desk"


def write_text(out: str | None, text: str, *, bom: bool = False) -> None:
    """TEXT to the file OUT (UTF-8, with a BOM for a spreadsheet if asked), or to standard output for none or '-'."""
    if out is None or out == "-":
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8-sig" if bom else "utf-8", newline="")


def shorten(items: list[str], n: int = 20) -> str:
    """The first N items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:n])
    return shown + (f" ... and {len(items) - n} more" if len(items) > n else "")


def log_in_timezone(tz_name: str) -> None:
    """Log lines in the gate's local time with its offset, like the console's lines
    beside them (the machine's own zone is often UTC)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(tz_name)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(LocalFormatter(tz, "%(asctime)s %(levelname)s %(name)s: %(message)s"))


class LocalFormatter(logging.Formatter):
    """Log times as ISO 8601 in a given time zone, to the millisecond."""

    def __init__(self, tz: Any, fmt: str) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        from datetime import datetime

        return datetime.fromtimestamp(record.created, self.tz).isoformat(timespec="milliseconds")
