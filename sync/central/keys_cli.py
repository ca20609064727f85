"""`gate central keys`: withdraw a pass-signing key at every gate (sync/keylist.py).

    gate central -c CENTRAL.toml keys withdraw /etc/gate/keys/desk.pub --note "desk PC stolen"
    gate central -c CENTRAL.toml keys withdraw 1a2b3c4d
    gate central -c CENTRAL.toml keys restore 1a2b3c4d
    gate central -c CENTRAL.toml keys list [--json]

Each change makes a new version of the whole list, signed with central's
``signing_key``, stored in central's database and published retained on
``{prefix}/keys``; the running central publishes it again after every reconnect.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from sync.central.cli_common import common_opts, fail, load_conf, open_store


@click.group("keys")
def keys_group() -> None:
    """Withdraw pass-signing keys at every gate (a signed, versioned list)."""


def _kid(text: str) -> str:
    """A key id (8 hex digits) or a public key file, to its key id."""
    from gate.core.tokens import key_id, load_public

    if re.fullmatch(r"[0-9a-fA-F]{8}", text) and not Path(text).exists():
        return text.lower()
    try:
        return key_id(load_public(Path(text)))
    except ValueError as exc:
        fail(f"{text}: neither a key id (8 hex digits, as `gate keys new` prints) nor a usable public key: {exc}")


def _change(ctx: click.Context, conf: Any, what: str, **kw: Any) -> None:
    from gate.core.tokens import load_private
    from sync import keylist
    from sync.central import now_iso, publish_once

    try:
        key = load_private(conf.signing_key)
    except ValueError as exc:
        fail(str(exc))
    with open_store(conf) as store:
        try:
            payload = keylist.change(store, key, by=conf.name, ts=now_iso(), **kw)
        except RuntimeError as exc:
            fail(str(exc))
    v = payload["version"]
    try:
        ok = publish_once(conf, [(conf.topics.keys, payload, True)])
    except (ConnectionError, OSError) as exc:
        fail(f"key list version {v} ({what}) stored but not sent: {exc} (the running central sends it)", 1)
    if not ok:
        fail(f"key list version {v} ({what}) stored; the broker refused it", 1)
    click.echo(f"key list version {v} published: {what}; withdrawn now: {', '.join(payload['withdrawn']) or 'none'}")


@keys_group.command("withdraw")
@click.argument("keys", nargs=-1, required=True)
@click.option("--note", default="", help="why (kept in the list, shown by `keys list`)")
@common_opts
@click.pass_context
def keys_withdraw(ctx: click.Context, keys: tuple[str, ...], note: str, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Withdraw KEYS (public key files or key ids): gates refuse the passes they signed."""
    conf = load_conf(ctx, config_path, broker, db)
    kids = [_kid(k) for k in keys]
    _change(ctx, conf, f"withdrew {', '.join(kids)}", withdraw=kids, note=note)


@keys_group.command("restore")
@click.argument("keys", nargs=-1, required=True)
@common_opts
@click.pass_context
def keys_restore(ctx: click.Context, keys: tuple[str, ...], config_path: str | None, broker: str | None, db: str | None) -> None:
    """Give withdrawn KEYS back (a new version of the list without them)."""
    conf = load_conf(ctx, config_path, broker, db)
    kids = [_kid(k) for k in keys]
    _change(ctx, conf, f"gave back {', '.join(kids)}", restore=kids)


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="the signed list as the gates get it")
@common_opts
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The withdrawn keys and the list's version."""
    from sync import keylist

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        payload = keylist.latest(store)
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False) if payload else "null")
        return
    if payload is None:
        click.echo("no key withdrawn (no key list yet)")
        return
    notes = payload.get("notes", {})
    for kid in payload["withdrawn"]:
        click.echo(f"{kid}  withdrawn  {notes.get(kid, '')}".rstrip())
    click.echo(f"key list version {payload['version']}, {payload['ts']}, by {payload['by']}", err=True)
