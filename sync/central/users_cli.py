"""`gate central users`: the office console's staff accounts (sync/central/console/users.py),
in central's database. Each change is in the console's audit, by the command line's user.

    gate central -c CENTRAL.toml users add 王芳 --role staff          # password from standard input
    gate central -c CENTRAL.toml users add li --role admin --password-file pw.txt
    gate central -c CENTRAL.toml users list [--json]
    gate central -c CENTRAL.toml users disable 王芳                    # (enable gives it back)

Registered by sync/central/cli.py.
"""
from __future__ import annotations

import getpass
import json
import sys
from datetime import datetime
from pathlib import Path

import click

from sync.central.cli_common import common_opts, fail, load_conf, open_store
from sync.central.console import audit, users


def _by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "cli"


def _password(password_file: str | None) -> str:
    if password_file:
        try:
            return Path(password_file).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            fail(f"--password-file: cannot read {password_file}: {exc.strerror or exc}")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            fail("the two passwords differ; nothing changed")
        return first
    return sys.stdin.readline().strip("\r\n")


@click.group("users")
def users_group() -> None:
    """Staff accounts of the office console (admin, staff, viewer)."""


@users_group.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(users.ROLES), help="viewer reads; staff also revokes and restores; admin also sees the accounts")
@click.option("--password-file", type=click.Path(dir_okay=False), help="read the password from this file (else standard input)")
@common_opts
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str, password_file: str | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Add an account; its password comes from standard input (asked twice on a terminal) or --password-file."""
    conf = load_conf(ctx, config_path, broker, db)
    password = _password(password_file)
    with open_store(conf, what=f"user {name}: ") as store:
        user = users.add(store.db, name, role, password)
        audit.record(store.db, _by(), "user_add", user.name, detail=f"role {role}")
    click.echo(f"user {user.name} added ({role})")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@common_opts
@click.pass_context
def users_list(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Every account, with its role and whether it is disabled."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        accounts = users.all_users(store.db)
    for u in accounts:
        if as_json:
            click.echo(json.dumps({"name": u.name, "role": u.role, "disabled": u.disabled, "created": u.created}, ensure_ascii=False))
        else:
            when = datetime.fromtimestamp(u.created).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{u.name:<20} {u.role:<7} {'DISABLED' if u.disabled else 'enabled ':<8} since {when}")
    if not as_json:
        click.echo(f"{len(accounts)} account(s)", err=True)


def _set_disabled(ctx: click.Context, name: str, disabled: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf, what=f"user {name}: ") as store:
        users.set_disabled(store.db, name, disabled)
        audit.record(store.db, _by(), "user_disable" if disabled else "user_enable", name)
    click.echo(f"user {name} {'disabled: signed out of the console at their next click' if disabled else 'enabled'}")


@users_group.command("disable")
@click.argument("name")
@common_opts
@click.pass_context
def users_disable(ctx: click.Context, name: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Disable an account: it cannot sign in, and a browser signed in as it is signed out."""
    _set_disabled(ctx, name, True, config_path, broker, db)


@users_group.command("enable")
@click.argument("name")
@common_opts
@click.pass_context
def users_enable(ctx: click.Context, name: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Give a disabled account back."""
    _set_disabled(ctx, name, False, config_path, broker, db)
