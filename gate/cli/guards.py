"""`gate guards add|remove|list`: the named guards and their own PINs (gate/desk/guards.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from gate.cli.common import config_option, fail, load_config


def _guards_file(config_path: str | None) -> Path:
    conf = load_config(config_path)
    if conf.guard.guards_file is None:
        fail("guard.guards_file is not set in the configuration: name the file that keeps the guards' PINs")
    return Path(conf.guard.guards_file)


@click.group("guards")
def guards_group() -> None:
    """Named guards, each with a PIN of their own (who is on duty, who did what)."""


@guards_group.command("add")
@click.argument("name")
@click.option("--pin-stdin", is_flag=True, help="read the PIN from standard input (for scripts) instead of asking")
@config_option
def add(name: str, pin_stdin: bool, config_path: str | None) -> None:
    """Add a guard (or give them a new PIN): 4 to 12 digits, asked twice, kept hashed."""
    from gate.desk.guards import GuardsError, add as add_guard

    path = _guards_file(config_path)
    pin = sys.stdin.readline().strip() if pin_stdin else click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    try:
        add_guard(path, name, pin)
    except GuardsError as exc:
        fail(str(exc))
    click.echo(f"guard {name} added to {path}")


@guards_group.command("remove")
@click.argument("name")
@config_option
def remove(name: str, config_path: str | None) -> None:
    """Remove a guard: their PIN opens nothing from now on (a running gate reads the file again)."""
    from gate.desk.guards import GuardsError, remove as remove_guard

    path = _guards_file(config_path)
    try:
        remove_guard(path, name)
    except GuardsError as exc:
        fail(str(exc))
    click.echo(f"guard {name} removed from {path}")


@guards_group.command("list")
@config_option
def list_(config_path: str | None) -> None:
    """The named guards (names only)."""
    from gate.desk.guards import GuardsError, load

    try:
        names = sorted(load(_guards_file(config_path)))
    except GuardsError as exc:
        fail(str(exc))
    for n in names:
        click.echo(n)
