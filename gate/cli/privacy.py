"""`gate privacy export|erase`: a resident's request, answered from this gate's store:
everything it holds about a pass, or the pass erased and its events unlinked."""
from __future__ import annotations

import json

import click

from gate.cli.common import config_option, fail, load_config, open_store, store_option


@click.group("privacy")
def privacy_group() -> None:
    """A resident's request: what the gate holds about a pass, or erase it."""


@privacy_group.command("export")
@click.option("--pass", "pass_id", required=True, help="the pass id")
@config_option
@store_option
def privacy_export(pass_id: str, config_path: str | None, store_path: str | None) -> None:
    """Print everything this gate holds about a pass, as JSON."""
    from gate.desk.privacy import export

    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        data = export(store, pass_id)
    finally:
        store.close()
    if data["pass"] is None and not data["events"]:
        fail(f"no pass {pass_id!r} and no events for it in {conf.store.path}", 1)
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@privacy_group.command("erase")
@click.option("--pass", "pass_id", required=True, help="the pass id")
@click.option("--yes", is_flag=True, help="do not ask")
@config_option
@store_option
def privacy_erase(pass_id: str, yes: bool, config_path: str | None, store_path: str | None) -> None:
    """Delete a pass and its cards, and strip it from the events kept here."""
    from gate.desk.privacy import erase

    conf = load_config(config_path, store_path)
    if not yes:
        click.confirm(f"Erase pass {pass_id} and unlink its events in {conf.store.path}?", abort=True)
    store = open_store(conf)
    try:
        n = erase(store, pass_id)
    finally:
        store.close()
    click.echo(f"erased pass {pass_id}: {n['passes']} pass, {n['cards']} cards, {n['events']} events unlinked")
