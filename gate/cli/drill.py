"""`gate drill`: run a drill (a timeline of what happens at the gate, gate/drill/) on a
fresh, temporary store, print what the lanes did and check its expectations."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from gate import config as cfgmod
from gate.cli.common import broker_option, check_broker, config_option, fail
from gate.config import ConfigError


@click.command("drill")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
@click.option("--report", "with_report", is_flag=True, help="end with the daily report of the drill's first day")
@config_option
@broker_option
@click.option("--central", "central_path", type=click.Path(dir_okay=False, exists=True), metavar="CENTRAL.toml",
              help="with --broker and several gates: the settings the drill's own central starts from")
def drill_cmd(file: str, as_json: bool, with_report: bool, config_path: str | None, broker: str | None,
              central_path: str | None) -> None:
    """Run a drill (a timeline of what happens at the gate) on a fresh store.

    With --broker, the gates sync through that broker; a drill with several gates
    (`gates:`) then also starts its own `gate central` (throwaway database, the
    drill's key, topics of its own), and presence travels through it."""
    from gate.app import console
    from gate.drill import runner as drill
    from gate.drill import file as drill_file

    if logging.getLogger().level > logging.DEBUG:
        # The timeline already shows every refusal; the daemon's warnings would only repeat it.
        logging.getLogger().setLevel(logging.ERROR)

    try:
        d = drill_file.load(file)
        base = None
        if config_path:
            base = cfgmod._resolve_paths(cfgmod.read_toml(Path(config_path)), Path(config_path).resolve().parent)
    except ConfigError as exc:
        fail(str(exc))

    def show(line: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(line, ensure_ascii=False))
        else:
            console.print_line(line)

    try:
        check_broker(broker)
        result = drill.run(d, base=base, with_report=with_report, on_line=show, broker=broker,
                           central=Path(central_path) if central_path else None)
    except (ConfigError, drill.DrillError) as exc:
        fail(f"{file}: {exc}")
    for report in result.reports:
        click.echo(json.dumps(report, ensure_ascii=False) if as_json else json.dumps(report, ensure_ascii=False, indent=2))
    if result.unmet is not None:
        click.echo(f"{file}: FAILED: expected {json.dumps(result.unmet, ensure_ascii=False)} was not seen", err=True)
        sys.exit(1)
    if result.forbidden is not None:
        bad, line = result.forbidden
        click.echo(
            f"{file}: FAILED: forbidden {json.dumps(bad, ensure_ascii=False)} happened:"
            f" {json.dumps(line, ensure_ascii=False)}",
            err=True,
        )
        sys.exit(1)
    if d.expect or d.forbid:
        said = [f"{len(d.expect)} expectations met"] if d.expect else []
        said += [f"nothing of {len(d.forbid)} forbidden seen"] if d.forbid else []
        click.echo(f"{file}: ok, {', '.join(said)}", err=True)
