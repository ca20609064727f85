"""`gate central privacy`: a resident's request across the site, and retention.

    gate central -c CENTRAL.toml privacy export --pass P1          # everything central holds, as JSON
    gate central -c CENTRAL.toml privacy erase --pass P1 --by 王主任 [--yes]
    gate central -c CENTRAL.toml privacy status                    # erasures some gate has not confirmed
    gate central -c CENTRAL.toml privacy purge                     # the retention purge, now

The erase is done in the database here; the signed `erase` command goes at once to
each gate central knows online, and the running central sends it again (to the others
as they come back) until each gate confirms (sync/central/privacy.py). Registered by
sync/central/cli.py.
"""
from __future__ import annotations

import json
import time

import click

from sync.central.cli_common import common_opts, fail, load_conf, open_store


@click.group("privacy")
def privacy_group() -> None:
    """A resident's export and erasure across the site; retention."""


@privacy_group.command("export")
@click.option("--pass", "pass_id", required=True, help="the pass id")
@common_opts
@click.pass_context
def privacy_export(ctx: click.Context, pass_id: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Print everything central holds about a pass (roster row and history, events from
    every gate, visitor registrations, presence, reports naming its cards), as JSON."""
    from sync.central import privacy

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        data = privacy.export(store, pass_id)
    if not privacy.holds_anything(data) and not data["erasures"]:
        fail(f"central holds nothing about pass {pass_id!r}", 1)
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@privacy_group.command("erase")
@click.option("--pass", "pass_id", required=True, help="the pass id")
@click.option("--by", "by", required=True, help="who erases it (recorded in the audit row)")
@click.option("--yes", is_flag=True, help="do not ask")
@click.option("--force", is_flag=True, help="erase (tombstone, tell the gates) even if central holds nothing about it")
@click.option("--no-send", is_flag=True, help="only erase here; the running central tells the gates")
@common_opts
@click.pass_context
def privacy_erase(ctx: click.Context, pass_id: str, by: str, yes: bool, force: bool, no_send: bool,
                  config_path: str | None, broker: str | None, db: str | None) -> None:
    """Erase a pass at central (roster row, personal fields of its events, registrations,
    presence), leave a tombstone that every gate refuses, and tell every gate to erase it."""
    from sync.central import Signer, privacy, publish_once

    conf = load_conf(ctx, config_path, broker, db)
    if not by.strip():
        fail("--by: who erases it, please")
    if not yes:
        click.confirm(f"Erase pass {pass_id} at central ({conf.db}) and on every gate?", abort=True)
    with open_store(conf, what="erase: ") as store:
        try:
            done = privacy.erase(store, pass_id, by.strip(), force=force)
        except privacy.UnknownPass as exc:
            fail(f"{exc.args[0]}; nothing erased (--force erases it anyway: a tombstone, and every gate told)", 1)
        n = done["counts"]
        click.echo(f"erased pass {pass_id} at central (erasure {done['erasure']}, by {by}): {n['passes']} roster row,"
                   f" {n['changes']} history changes, {n['events']} events and {n['registrations']} registrations"
                   f" scrubbed, {n['presence']} presence items, {n['reports']} reports, {n['quarantined']} quarantined")
        if no_send or not done["gates"]:
            click.echo(f"{len(done['gates'])} gate(s) to tell: the running central sends the erase until each confirms")
            return
        now = time.time()
        items = privacy.due(store.db, now, conf.erase_resend_s)
        try:
            signer = Signer(conf.signing_key, conf.topics, conf.name)
            sent = privacy.commands(signer, [i for i in items if i[0] == done["erasure"]], conf.command_ttl_s)
            ok = bool(sent) and publish_once(conf, [(conf.topics.gate(g).cmd, p, False) for _e, g, p in sent])
        except (ConnectionError, OSError, ValueError) as exc:
            click.echo(f"erase not sent now ({exc}): the running central sends it to each gate until it confirms")
            return
        if ok:
            for _e, _g, p in sent:
                store.store_command(p)
            privacy.mark_sent(store.db, [(e, g) for e, g, _p in sent], now)
        online = sorted(g for _e, g, _p in sent) if ok else []
        rest = sorted(set(done["gates"]) - set(online))
        click.echo(f"erase sent to {', '.join(online) or 'no gate'}; "
                   + (f"the running central sends it to {', '.join(rest)} when they are back, until each confirms"
                      if rest else "the running central sends it again until each confirms"))


@privacy_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON document")
@common_opts
@click.pass_context
def privacy_status(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Erasures some gate has not confirmed yet."""
    from sync.central import privacy

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        rows = privacy.pending(store.db)
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            click.echo(f"{r['erasure']}  pass {r['pass']}  gate {r['gate']}  {'online' if r['online'] else 'offline'}"
                       f"  sent {r['sends']} time(s)")
    if not rows and not as_json:
        click.echo("every gate has confirmed every erasure")


@privacy_group.command("purge")
@common_opts
@click.pass_context
def privacy_purge(ctx: click.Context, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Run the retention purge now (the running central runs it every retention.purge_every_s)."""
    from sync.central import privacy_worker

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        got = privacy_worker.purge(store, days=conf.retention.days, chunk=conf.retention.chunk)
    click.echo(f"retention {conf.retention.days} days: purged {got['events']} events, {got['registrations']} visitor"
               f" registrations, {got['visitor_passes']} ended visitor passes, {got['quarantined']} quarantined messages")
