"""`gate central keys`: withdraw a pass-signing key at every gate (sync/keylist.py), and
vouch for each gate's own key (sync/gatekeys.py).

    gate central -c CENTRAL.toml keys withdraw /etc/gate/keys/desk.pub --note "desk PC stolen"
    gate central -c CENTRAL.toml keys withdraw 1a2b3c4d
    gate central -c CENTRAL.toml keys restore 1a2b3c4d
    gate central -c CENTRAL.toml keys list [--json]
    gate central -c CENTRAL.toml keys gate-add east east.pub [--expect 1a2b3c4d] [--note "..."]
    gate central -c CENTRAL.toml keys gate-remove east
    gate central -c CENTRAL.toml keys gates [--json]

A gate's key is on the gate key list only because an operator put it there (the
public half of that gate's ``[keys] signing``, copied from the gate, its id compared
with what the gate shows): never because a gate announced it, which any holder of the
gate's broker login could do (sync/gatekeys.py says why).

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


def _change(ctx: click.Context, conf: Any, what: str, *, module: Any = None, topic: str | None = None, **kw: Any) -> None:
    from gate.core.tokens import load_private
    from sync import keylist
    from sync.central import now_iso, publish_once

    module = module or keylist
    topic = topic or conf.topics.keys
    name = "gate key list" if topic != conf.topics.keys else "key list"

    try:
        key = load_private(conf.signing_key)
    except ValueError as exc:
        fail(str(exc))
    with open_store(conf) as store:
        try:
            payload = module.change(store, key, by=conf.name, ts=now_iso(), **kw)
        except (RuntimeError, ValueError) as exc:
            fail(str(exc))
    v = payload["version"]
    try:
        ok = publish_once(conf, [(topic, payload, True)])
    except (ConnectionError, OSError) as exc:
        fail(f"{name} version {v} ({what}) stored but not sent: {exc} (the running central sends it)", 1)
    if not ok:
        fail(f"{name} version {v} ({what}) stored; the broker refused it", 1)
    if module is keylist:
        click.echo(f"key list version {v} published: {what}; withdrawn now: {', '.join(payload['withdrawn']) or 'none'}")
    else:
        now = ", ".join(f"{g} {e['kid']}" for g, e in payload["gates"].items()) or "none"
        click.echo(f"gate key list version {v} published: {what}; gate keys now: {now}")


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


# ---------------------------------------------------------------- gate keys (sync/gatekeys.py)


@keys_group.command("gate-add")
@click.argument("gate")
@click.argument("public_key", type=click.Path(dir_okay=False))
@click.option("--expect", "expect", default=None, help="the key id the gate shows (8 hex digits): refused if the file's differs")
@click.option("--note", default="", help="who checked it, how (kept in the list)")
@common_opts
@click.pass_context
def keys_gate_add(ctx: click.Context, gate: str, public_key: str, expect: str | None, note: str,
                  config_path: str | None, broker: str | None, db: str | None) -> None:
    """Vouch for GATE's own key (PUBLIC_KEY: the public half of its [keys] signing): the
    site's gates admit the visitor passes it signs, and nothing else (replaces GATE's earlier key)."""
    from gate.core.tokens import key_id, load_public
    from sync import gatekeys

    conf = load_conf(ctx, config_path, broker, db)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", gate):
        fail(f"{gate}: a gate id is letters, digits, - and _ ([gate] id)")
    try:
        public = load_public(Path(public_key))
    except ValueError as exc:
        fail(str(exc))
    kid = key_id(public)
    if expect is not None and expect.lower() != kid:
        fail(f"{public_key}: key id {kid}, not {expect.lower()} as expected: not the key the gate shows")
    _change(ctx, conf, f"vouched for {gate}'s key {kid}", module=gatekeys, topic=conf.topics.gatekeys,
            add={gate: public}, note=note)


@keys_group.command("gate-remove")
@click.argument("gates", nargs=-1, required=True)
@common_opts
@click.pass_context
def keys_gate_remove(ctx: click.Context, gates: tuple[str, ...], config_path: str | None, broker: str | None, db: str | None) -> None:
    """Take GATES' keys off the list: their visitor passes are refused at the other gates."""
    from sync import gatekeys

    conf = load_conf(ctx, config_path, broker, db)
    _change(ctx, conf, f"took off {', '.join(gates)}", module=gatekeys, topic=conf.topics.gatekeys, remove=list(gates))


@keys_group.command("gates")
@click.option("--json", "as_json", is_flag=True, help="the signed list as the gates get it")
@common_opts
@click.pass_context
def keys_gates(ctx: click.Context, as_json: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """The gate keys central vouches for, beside the key each gate says it signs with
    (its status): a gate whose key is not approved, or differs, is marked."""
    from sync import gatekeys

    conf = load_conf(ctx, config_path, broker, db)
    with open_store(conf) as store:
        payload = gatekeys.latest(store)
        statuses = store.statuses()
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False) if payload else "null")
        return
    approved = (payload or {}).get("gates", {})
    for gate in sorted(set(approved) | {g for g, st in statuses.items() if st.get("signing_kid")}):
        entry, said = approved.get(gate), statuses.get(gate, {}).get("signing_kid")
        if entry is None:
            click.echo(f"{gate:<16} -         NOT APPROVED: the gate signs with {said} (gate central keys gate-add {gate} FILE.pub)")
        elif said and said != entry["kid"]:
            click.echo(f"{gate:<16} {entry['kid']}  DIFFERS: the gate now signs with {said}; its visitors are refused elsewhere")
        else:
            click.echo(f"{gate:<16} {entry['kid']}  vouched  {entry.get('note', '')}".rstrip())
    if payload is None:
        click.echo("no gate key vouched for yet (gate central keys gate-add GATE FILE.pub)", err=True)
    else:
        click.echo(f"gate key list version {payload['version']}, {payload['ts']}, by {payload['by']}", err=True)
