"""The `gate` command: the `main` group, logging, and every command group added from its
own module in gate/cli/ (the entry point of setup.cfg, and `python -m gate.cli.main`)."""
from __future__ import annotations

import logging

import click

from gate.cli.clock import clock_group
from gate.cli.common import LocalFormatter as _LocalFormatter  # noqa: F401 - imported from here by the tests
from gate.cli.config import config_group
from gate.cli.drill import drill_cmd
from gate.cli.guards import guards_group
from gate.cli.keys import keys_group
from gate.cli.ops import doctor_cmd, thermometer_group
from gate.cli.passes import passes_group
from gate.cli.policy import policy_group
from gate.cli.privacy import privacy_group
from gate.cli.report import report_group
from gate.cli.run import run_cmd
from gate.cli.scan import scan
from gate.cli.sync import sync_cmd
from gate.cli.tokens import tokens_group
from sync.central.cli import central


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log debug detail")
def main(verbose: bool) -> None:
    """gate: an offline-first checkpoint for a residential community's entrance."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (
    config_group,  # gate config check
    drill_cmd,  # gate drill
    report_group,  # gate report daily|range
    keys_group,  # gate keys new
    passes_group,  # gate passes issue|import|print|list|show|revoke|export
    policy_group,  # gate policy show|check|replay|apply|history
    privacy_group,  # gate privacy export|erase
    clock_group,  # gate clock floor
    guards_group,  # gate guards add|remove|list
    tokens_group,  # gate tokens add|list|remove
    scan,  # gate scan
    run_cmd,  # gate run
    sync_cmd,  # gate sync --drain
    doctor_cmd,  # gate doctor
    thermometer_group,  # gate thermometer calibrate
    central,  # gate central ... (sync/central/cli.py)
):
    main.add_command(command)


if __name__ == "__main__":
    main()
