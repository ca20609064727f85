"""`gate tokens add|list|remove`: the HTTP API's bearer tokens, one per client
(gate/desk/api_tokens.py; the API: gate/web/api.py)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from gate.cli.common import config_option, fail, load_config


def _tokens_file(config_path: str | None) -> Path:
    return Path(load_config(config_path).tokens_path())


@click.group("tokens")
def tokens_group() -> None:
    """Bearer tokens of the HTTP API under /api/v1 ([guard] api = true): one per client."""

@tokens_group.command("add")
@click.argument("name")
@click.option("--can", "can", required=True, metavar="open,read",
              help="its rights: open (open a lane's door), read (the events); comma-separated")
@config_option
def add(name: str, can: str, config_path: str | None) -> None:
    """Make a token for a client NAME and print it once (only its hash is kept)."""
    from gate.desk.api_tokens import TokensError, add as add_token, parse_rights

    path = _tokens_file(config_path)
    try:
        token = add_token(path, name, parse_rights(can))
    except TokensError as exc:
        fail(str(exc))
    click.echo(f"token {name} ({can}) added to {path}; it is shown this once, keep it in the client:", err=True)
    click.echo(token)

@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON array")
@config_option
def list_(as_json: bool, config_path: str | None) -> None:
    """The tokens: name, rights, when made, the last four of the id (never the token)."""
    from gate.desk.api_tokens import TokensError, load

    try:
        rows = [t.listing() for t in sorted(load(_tokens_file(config_path)).values(), key=lambda t: t.name)]
    except TokensError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {','.join(r['rights']):<10} {r['created']}  …{r['id_last4']}")

@tokens_group.command("remove")
@click.argument("name")
@config_option
def remove(name: str, config_path: str | None) -> None:
    """Remove a token: a running gate refuses it from its next request."""
    from gate.desk.api_tokens import TokensError, remove as remove_token

    path = _tokens_file(config_path)
    try:
        remove_token(path, name)
    except TokensError as exc:
        fail(str(exc))
    click.echo(f"token {name} removed from {path}")
