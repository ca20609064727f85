"""`gate central quarantine`: what central set aside, and clearing it.

    gate central -c CENTRAL.toml quarantine [list] [--gate G] [--reason R] [--json]
    gate central -c CENTRAL.toml quarantine clear (--all | --gate G | --reason R | --key K ...)

Registered by sync/central/cli.py.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from sync.central import quarantine
from sync.central.cli_common import common_opts, load_conf, open_store


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


@click.group("quarantine", invoke_without_command=True)
@click.pass_context
def quarantine_group(ctx: click.Context) -> None:
    """Messages central could not store (bad JSON, schema, too large, refused by the
    database): kept with their raw bytes, acknowledged, never retried."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(quarantine_list)


@quarantine_group.command("list")
@click.option("--gate", "gate_id", help="only this gate")
@click.option("--reason", help="only this reason (too_large, malformed, schema, gate_mismatch, topic, unstorable)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line, with the raw message")
@click.option("--limit", type=int, help="at most this many messages")
@common_opts
@click.pass_context
def quarantine_list(ctx: click.Context, gate_id: str | None = None, reason: str | None = None, as_json: bool = False,
                    limit: int | None = None, config_path: str | None = None, broker: str | None = None,
                    db: str | None = None) -> None:
    """What is held, oldest first, and the counts per gate and reason."""
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        held = quarantine.entries(store.db, gate=gate_id, reason=reason, limit=limit)
        counts = quarantine.counts(store.db)
    for e in held:
        if as_json:
            click.echo(json.dumps(e.as_json(), ensure_ascii=False, separators=(",", ":")))
        else:
            head = e.raw[:80].decode("utf-8", "backslashreplace").replace("\n", " ")
            click.echo(f"{e.key[:12]}  {_when(e.first_seen)}  {e.gate or '-':<12} {e.kind or '-':<16} {e.reason:<13}"
                       f" x{e.times:<4} {e.size:>8} B  {e.detail[:100]}  |  {head}")
    if not as_json:
        total = sum(n for _, _, n, _ in counts)
        for gate, why, n, times in counts:
            click.echo(f"{gate or '-'}: {why} {n} message(s), {times} delivery(ies)", err=True)
        click.echo(f"{total} message(s) in quarantine", err=True)


@quarantine_group.command("clear")
@click.option("--all", "everything", is_flag=True, help="everything held")
@click.option("--gate", "gate_id", help="only this gate's")
@click.option("--reason", help="only this reason")
@click.option("--key", "keys", multiple=True, help="one message by its key (the first column of list; the full key)")
@common_opts
@click.pass_context
def quarantine_clear(ctx: click.Context, everything: bool, gate_id: str | None, reason: str | None, keys: tuple[str, ...],
                     config_path: str | None, broker: str | None, db: str | None) -> None:
    """Forget what was set aside (after looking at it)."""
    if not (everything or gate_id or reason or keys):
        raise click.UsageError("say what to clear: --all, --gate G, --reason R or --key K")
    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        n = quarantine.clear(store.db, gate=gate_id, reason=reason, keys=list(keys) or None)
    click.echo(f"{n} message(s) cleared from quarantine")
