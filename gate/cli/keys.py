"""`gate keys new`: make the Ed25519 key pair that signs passes (NAME.key and NAME.pub)."""
from __future__ import annotations

import re
from pathlib import Path

import click

from gate.cli.common import fail


@click.group("keys")
def keys_group() -> None:
    """Signing keys for passes."""


@keys_group.command("new")
@click.argument("name_arg", metavar="[NAME]", required=False)
@click.option("--name", default=None, help="the same as NAME (default: central)")
@click.option("--dir", "directory", default="keys", show_default=True, type=click.Path(file_okay=False),
              help="directory to write the pair into (made if missing)")
def keys_new(name_arg: str | None, name: str | None, directory: str) -> None:
    """Make an Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub.

    `gate keys new central` and `gate keys new --name central` are the same."""
    from gate.core.tokens import key_id, load_public, new_keypair

    if name_arg and name and name_arg != name:
        fail(f"two names given ({name_arg} and --name {name}): give one")
    name = name_arg or name or "central"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        fail(f"key name {name!r}: use letters, digits, '.', '_' and '-' (it becomes NAME.key and NAME.pub)")
    try:
        priv, pub = new_keypair(Path(directory), name)
    except FileExistsError as exc:
        fail(str(exc))
    click.echo(f"wrote {priv} (keep secret) and {pub}; key id {key_id(load_public(pub))}")
