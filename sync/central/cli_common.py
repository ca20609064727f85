"""What every `gate central` command shares: the -c/--broker/--db options (given
before or after the sub-command), loading CENTRAL.toml and opening the database,
failing with a message and an exit code."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import click

from gate.config import ConfigError


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def common_opts(f: Any) -> Any:
    f = click.option("--db", "db", help="database: SQLite path or postgresql:// DSN (overrides the config)")(f)
    f = click.option("--broker", "broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (overrides the config)")(f)
    f = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="CENTRAL.toml")(f)
    return f


def load_conf(ctx: click.Context, config_path: str | None = None, broker: str | None = None, db: str | None = None):  # type: ignore[no-untyped-def]
    from sync.central import load_central_config

    top = (ctx.find_root().obj or {}).get("central", {}) if isinstance(ctx.find_root().obj, dict) else {}
    config_path = config_path or top.get("config_path")
    broker = broker or top.get("broker")
    db = db or top.get("db")
    if not config_path:
        fail("this command needs the central configuration: gate central -c CENTRAL.toml ... (see config/central.example.toml)")
    try:
        return load_central_config(config_path, {"broker": broker, "db": db})
    except ConfigError as exc:
        fail(str(exc))


@contextmanager
def open_store(conf, *, what: str = "") -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The central database for one command, closed when the command is done. A
    change the store refuses (ValueError) becomes a clear error, `what` before it."""
    from sync.central import CentralStore

    try:
        store = CentralStore(conf.db)
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened
        fail(f"cannot open the database {conf.db}: {exc}")
    try:
        yield store
    except ValueError as exc:
        fail(f"{what}{exc}")
    finally:
        store.close()
