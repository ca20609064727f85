"""`gate central cmd` and `gate central policy`: a signed command to one gate (nonce
and expiry), and the signed policy every gate applies.

    gate central -c CENTRAL.toml cmd open-door --gate east-1 --lane in --reason "ambulance"
    gate central -c CENTRAL.toml policy publish policy.toml

Registered by sync/central/cli.py.
"""
from __future__ import annotations

from typing import Any

import click

from gate.config import ConfigError
from sync.central.cli_common import common_opts, fail, load_conf, open_store


@click.group("cmd")
def cmd_group() -> None:
    """Send a signed command to one gate (nonce + expiry; a replay is refused by the gate)."""


def _send(ctx: click.Context, conf: Any, gate: str, cmd: str, ttl: float | None, **kw: Any) -> None:
    from sync.central import Signer, publish_once

    try:
        signer = Signer(conf.signing_key, conf.topics, conf.name)
        payload = signer.command(gate, cmd, ttl_s=ttl or conf.command_ttl_s, **kw)
    except ValueError as exc:
        fail(str(exc))
    with open_store(conf) as store:
        store.store_command(payload)
    try:
        ok = publish_once(conf, [(conf.topics.gate(gate).cmd, payload, False)])
    except (ConnectionError, OSError) as exc:
        fail(f"{cmd} to {gate} not sent: {exc}", 1)
    if not ok:
        fail(f"{cmd} to {gate}: the broker refused or did not acknowledge it", 1)
    click.echo(f"{cmd} sent to {gate}: nonce {payload['nonce']}, expires {payload['expires']}")


def _cmd_opts(f: Any) -> Any:
    f = click.option("--ttl", type=float, help="seconds until the command expires (default: command_ttl_s)")(f)
    f = click.option("--gate", "gate", required=True, help="gate id")(f)
    return common_opts(f)


@cmd_group.command("open-door")
@click.option("--lane", required=True, help="the lane's name in the gate's config")
@click.option("--reason", required=True, help="why (recorded by the gate with the override)")
@_cmd_opts
@click.pass_context
def cmd_open_door(ctx: click.Context, lane: str, reason: str, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Open a lane's door once, with a reason (recorded by the gate as an override)."""
    _send(ctx, load_conf(ctx, config_path, broker, db), gate, "open_door", ttl, lane=lane, reason=reason)


@cmd_group.command("door-mode")
@click.option("--lane", required=True, help="a lane's name, or 'all'")
@click.option("--mode", type=click.Choice(["normal", "open", "locked"]), required=True,
              help="normal (a pass opens it), open (held unlocked), locked (the guard opens)")
@click.option("--reason", required=True, help="why (recorded by the gate)")
@_cmd_opts
@click.pass_context
def cmd_door_mode(ctx: click.Context, lane: str, mode: str, reason: str, gate: str, ttl: float | None,
                  config_path: str | None, broker: str | None, db: str | None) -> None:
    """Set a lane's door mode (normal, open: held unlocked, locked: the guard opens), with a reason."""
    _send(ctx, load_conf(ctx, config_path, broker, db), gate, "door_mode", ttl, lane=lane, mode=mode, reason=reason)


@cmd_group.command("resync")
@_cmd_opts
@click.pass_context
def cmd_resync(ctx: click.Context, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate fetch a fresh pass-table snapshot."""
    _send(ctx, load_conf(ctx, config_path, broker, db), gate, "resync", ttl)


@cmd_group.command("report-now")
@click.option("--date", "day", help="the day (YYYY-MM-DD); default: today at the gate")
@_cmd_opts
@click.pass_context
def cmd_report_now(ctx: click.Context, day: str | None, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate send its daily report now."""
    _send(ctx, load_conf(ctx, config_path, broker, db), gate, "report_now", ttl, day=day)


@cmd_group.command("reload")
@_cmd_opts
@click.pass_context
def cmd_reload(ctx: click.Context, gate: str, ttl: float | None, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Make the gate reload its configuration."""
    _send(ctx, load_conf(ctx, config_path, broker, db), gate, "reload", ttl)


# ---------------------------------------------------------------- policy


@click.group("policy")
def policy_group() -> None:
    """The signed policy every gate applies."""


@policy_group.command("publish")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--no-send", is_flag=True, help="only store it; the running central publishes it")
@common_opts
@click.pass_context
def policy_publish(ctx: click.Context, file: str, no_send: bool, config_path: str | None, broker: str | None, db: str | None) -> None:
    """Sign FILE's [policy] table (its `version` must be higher than the last one) and publish it, retained."""
    from gate.config import load_policy
    from sync.central import Signer, publish_once

    conf = load_conf(ctx, config_path, broker, db)
    try:
        payload = Signer(conf.signing_key, conf.topics, conf.name).policy(load_policy(file))
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    with open_store(conf) as store:
        latest = store.latest_policy()
        if latest and latest["version"] >= payload["version"]:
            fail(f"{file}: version {payload['version']} is not above the published version {latest['version']}; bump it")
        store.store_policy(payload)
    if no_send:
        click.echo(f"policy version {payload['version']} stored")
        return
    try:
        ok = publish_once(conf, [(conf.topics.policy, payload, True)])
    except (ConnectionError, OSError) as exc:
        fail(f"policy version {payload['version']} stored but not sent: {exc} (the running central sends it)", 1)
    if not ok:
        fail(f"policy version {payload['version']} stored; the broker refused it", 1)
    click.echo(f"policy version {payload['version']} published")
