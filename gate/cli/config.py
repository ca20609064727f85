"""`gate config check`: validate a configuration file without starting anything."""
from __future__ import annotations

import click

from gate import config as cfgmod
from gate.cli.common import fail
from gate.config import ConfigError


@click.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE without starting anything."""
    try:
        conf = cfgmod.load(file)
    except ConfigError as exc:
        fail(str(exc))
    lanes = ", ".join(f"{l.name} ({l.direction}: {', '.join(f'{k}={v.driver}' for k, v in l.devices().items())})" for l in conf.lanes)
    click.echo(f"{file}: ok — gate {conf.gate.id}, lanes: {lanes}")
