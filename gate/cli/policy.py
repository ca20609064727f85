"""`gate policy`: the policy as a document at the desk. Show the one in force, check a file,
replay recorded traffic through it, apply it here, and the history of what was applied."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from gate.cli.common import config_option, fail, load_config, local_tz, open_store, parse_day, store_option
from gate.config import ConfigError


@click.group("policy")
def policy_group() -> None:
    """The policy as a document: show, check, replay against recorded traffic, apply."""


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@config_option
@store_option
def policy_check(file: str, config_path: str | None, store_path: str | None) -> None:
    """Validate a policy document (with -c: and show what it changes)."""
    from gate.desk.policy_admin import diff, diff_lines, in_force, load_file, summary

    try:
        policy, _ = load_file(file)
    except ConfigError as exc:
        fail(str(exc))
    click.echo(f"{file}: ok — a valid policy")
    for line in summary(policy):
        click.echo(f"  {line}")
    if config_path:
        conf = load_config(config_path, store_path)
        store = open_store(conf)
        try:
            now = in_force(conf.policy, store.get_meta)
        finally:
            store.close()
        changes = diff(now.policy, policy)
        click.echo(f"against the policy in force (version {now.policy.version}, from the {now.source}): "
                   + (f"{len(changes)} changes" if changes else "no changes"))
        for line in diff_lines(changes):
            click.echo(f"  {line}")


@policy_group.command("show")
@config_option
@store_option
def policy_show(config_path: str | None, store_path: str | None) -> None:
    """Print the policy in force as a TOML document to edit."""
    from gate.desk.policy_admin import in_force, to_toml

    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        now = in_force(conf.policy, store.get_meta)
    finally:
        store.close()
    click.echo(f"# the policy in force: version {now.policy.version}, from the {now.source}"
               + (f" (applied by {now.by})" if now.by else ""))
    click.echo(to_toml(now.policy), nl=False)


@policy_group.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--since", required=True, help="first local day, YYYY-MM-DD")
@click.option("--until", default=None, help="last local day, YYYY-MM-DD (default: today)")
@click.option("--examples", default=3, show_default=True, type=click.IntRange(0, 100),
              help="recorded decisions to show for each change (old -> new decision and reason)")
@click.option("--json", "as_json", is_flag=True, help="the outcome as one JSON object")
@config_option
@store_option
def policy_replay(file: str, since: str, until: str | None, examples: int, as_json: bool,
                  config_path: str | None, store_path: str | None) -> None:
    """Run the recorded decisions of a period through a new policy; show what it would decide differently."""
    from gate.desk.policy_admin import load_file
    from gate.desk.replay import format_text, replay

    try:
        policy, _ = load_file(file)
    except ConfigError as exc:
        fail(str(exc))
    conf = load_config(config_path, store_path)
    tz = local_tz(conf)
    d0 = parse_day(since, "--since")
    d1 = parse_day(until, "--until") if until else datetime.now(tz).date()
    if d1 < d0:
        fail(f"--until {d1} is before --since {d0}")
    store = open_store(conf)
    try:
        result = replay(store.conn, policy, d0, d1, tz, examples=examples)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"policy": file, **result.to_json()}, ensure_ascii=False))
        return
    click.echo(format_text(result, title=f"policy replay: {file} over {conf.store.path}"))


@policy_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--by", required=True, help="who is applying it (recorded)")
@click.option("--note", default="", help="why (recorded)")
@click.option("--version", type=int, default=None, help="store as this version (default: one above the one in force)")
@config_option
@store_option
def policy_apply(file: str, by: str, note: str, version: int | None, config_path: str | None, store_path: str | None) -> None:
    """Put a policy in force on this gate, recording who, when and the diff."""
    from gate.desk.policy_admin import PolicyAdminError, apply, diff_lines, load_file

    try:
        policy, raw = load_file(file)
    except ConfigError as exc:
        fail(str(exc))
    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        done = apply(store, conf.policy, policy, by=by, source=str(Path(file).resolve()), file_bytes=raw, note=note,
                     version=version)
    except PolicyAdminError as exc:
        fail(str(exc), 1)
    finally:
        store.close()
    click.echo(f"applied {file} as policy version {done.version} (was {done.previous_version}) by {by}; "
               f"{len(done.changes)} changes:")
    for line in diff_lines(done.changes):
        click.echo(f"  {line}")
    click.echo("the gate uses it from its next start (sudo systemctl restart gate); "
               "central's next policy version above it replaces it")


@policy_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="the history as one JSON array")
@config_option
@store_option
def policy_history(as_json: bool, config_path: str | None, store_path: str | None) -> None:
    """Who applied which policy here, when, and what it changed."""
    from gate.desk.policy_admin import diff_lines, history

    conf = load_config(config_path, store_path)
    store = open_store(conf)
    try:
        rows = history(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("no policy has been applied here with `gate policy apply`")
    for r in rows:
        click.echo(f"{r['at']}  v{r['previous_version']} -> v{r['version']}  by {r['by']}"
                   + (f" ({r['note']})" if r["note"] else "") + f"  from {r['source']}")
        for line in diff_lines(r["changes"]):
            click.echo(f"    {line}")
