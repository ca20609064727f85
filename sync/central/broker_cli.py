"""`gate central broker dynsec`: write the site broker's users and rights for mosquitto's
dynamic-security plugin (sync/dynsec.py), with docs/mosquitto-dynsec.conf.

    gate central -c CENTRAL.toml broker dynsec /var/lib/mosquitto/dynsec.json \\
        --gate east-1 --gate west-1 --passwords /etc/gate/broker-passwords

Each user's password is read from PASSWORDS/NAME (what the gate's `[sync]
password_file` holds); a user without a file gets a new random password, written
there with mode 0600 for the operator to copy to that gate. Central's user is the
config's `username` (default `central`); a second instance is one more `--central`.
With `--homeassistant USER`, Home Assistant gets that user and each gate a `GATE-ha`
user for its Home Assistant connection ([sync] homeassistant_username). With `--admin
USER`, USER may use the plugin's control topic (and nothing else), so that

    gate central -c CENTRAL.toml broker apply /var/lib/mosquitto/dynsec.json \
        --admin dynsec-admin --passwords /etc/gate/broker-passwords

brings the running broker's users and roles in line with the file, no restart
(sync/dynsec_apply.py): new gates can log in, withdrawn ones are deleted and disconnected.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import click

from sync.central.cli_common import common_opts, fail, load_conf

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@click.group("broker")
def broker_group() -> None:
    """The site broker's users and rights (mosquitto's dynamic-security plugin)."""


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        fail(f"{path}: cannot read the password file ({exc.strerror})")
    if not text:
        fail(f"{path}: empty password file")
    return text


def _password(directory: Path, name: str, made: list[str]) -> str:
    path = directory / name
    if path.exists():
        return _read_password(path)
    text = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    made.append(name)
    return text


@broker_group.command("dynsec")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--gate", "gates", multiple=True, required=True, help="a gate id of the site (repeatable): its user and role")
@click.option("--central", "centrals", multiple=True,
              help="a central instance's user (repeatable; default: the config's username, or central)")
@click.option("--bridge", "bridges", multiple=True, help="a site broker's bridge user, for a central broker (repeatable)")
@click.option("--homeassistant", "homeassistant", default=None, metavar="USER",
              help="Home Assistant's user (it alone may send door commands); each gate also gets a GATE-ha user")
@click.option("--admin", "admin", default=None, metavar="USER",
              help="a user that may only use the plugin's control topic, for `broker apply` (no restart)")
@click.option("--passwords", "password_dir", required=True, type=click.Path(file_okay=False),
              help="folder of one password file per user (PASSWORDS/NAME); missing ones are made (mode 0600)")
@common_opts
@click.pass_context
def dynsec(ctx: click.Context, out: str, gates: tuple[str, ...], centrals: tuple[str, ...], bridges: tuple[str, ...],
           homeassistant: str | None, admin: str | None, password_dir: str, config_path: str | None, broker: str | None,
           db: str | None) -> None:
    """Write OUT: every gate, central and bridge user with a role naming only its own
    topics (a SUBSCRIBE to anything else, `$share/...` included, is refused)."""
    from gate.core.tokens import load_private
    from sync import dynsec as ds
    from sync.central.hardening import share_group

    conf = load_conf(ctx, config_path, broker, db)
    centrals = centrals or (conf.username or "central",)
    ha_gates = tuple(f"{g}-ha" for g in gates) if homeassistant else ()
    for name in (*gates, *centrals, *bridges, *ha_gates, *((homeassistant,) if homeassistant else ()),
                 *((admin,) if admin else ())):
        if not _NAME.match(name):
            fail(f"{name!r}: a broker user name is letters, digits, '-', '_' and '.' (at most 64)")
    try:
        group = conf.group or share_group(load_private(conf.signing_key), conf.site)
    except ValueError as exc:
        fail(str(exc))
    directory = Path(password_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    made: list[str] = []

    def users(names: tuple[str, ...]) -> list[ds.User]:
        return [ds.User(n, _password(directory, n, made)) for n in names]

    try:
        doc = ds.build(conf.site, gates=users(gates), centrals=users(centrals), bridges=users(bridges),
                       ha_gates=users(ha_gates), homeassistant=users((homeassistant,))[0] if homeassistant else None,
                       admin=users((admin,))[0] if admin else None, share_group=group, prefix=conf.prefix)
    except ValueError as exc:
        fail(str(exc))
    target = Path(out)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, target)
    click.echo(f"{target}: {len(gates)} gate(s), {len(centrals)} central user(s), {len(bridges)} bridge(s)"
               + (f", Home Assistant ({homeassistant}, and a GATE-ha user per gate)" if homeassistant else "")
               + (f", admin {admin}" if admin else "")
               + f" for site {conf.site}; load it with `broker apply` (a broker with an admin user) or restart mosquitto")
    if made:
        click.echo(f"new passwords in {directory}: {', '.join(made)} (copy each gate's to its [sync] password_file)")


@broker_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--admin", "admin", required=True, metavar="USER",
              help="the plugin's admin user (`broker dynsec --admin`); its password is PASSWORDS/USER")
@click.option("--passwords", "password_dir", required=True, type=click.Path(file_okay=False),
              help="the folder `broker dynsec` used: a new client's password is PASSWORDS/NAME")
@click.option("--timeout", "timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds to wait for each of the broker's answers")
@common_opts
@click.pass_context
def apply_cmd(ctx: click.Context, file: str, admin: str, password_dir: str, timeout: float, config_path: str | None,
              broker: str | None, db: str | None) -> None:
    """Make the running broker's users and roles what FILE says, through the plugin's
    control topic, no restart: create what is missing, bring changed roles in line,
    delete the clients and roles FILE does not have (a deleted client is disconnected at
    once); the admin USER and its roles are never changed. Prints each change."""
    from sync import dynsec as ds
    from sync import dynsec_apply, dynsec_control as dc

    conf = load_conf(ctx, config_path, broker, db)
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
        dynsec_apply.check_file(doc)
    except OSError as exc:
        fail(f"{file}: cannot read it ({exc.strerror})")
    except ValueError as exc:
        fail(f"{file}: {exc}")
    directory = Path(password_dir)

    def password(client: dict) -> str:  # type: ignore[type-arg]
        path = directory / client["username"]
        if not path.exists():
            raise ValueError(f"{path}: no password for new client {client['username']} "
                             f"(write {file} with `broker dynsec --passwords {directory}`)")
        text = _read_password(path)
        if not ds.password_matches(client, text):
            raise ValueError(f"{path} is not the password {file} has for {client['username']} "
                             f"(write {file} again with `broker dynsec --passwords {directory}`)")
        return text

    host, port, tls = conf.endpoint()
    endpoint = dc.Endpoint(host, port, tls, *(str(p) if p else None for p in (conf.ca_file, conf.cert_file, conf.key_file)))
    admin_password = _read_password(directory / admin)
    try:
        with dc.Control(endpoint, admin, admin_password, timeout=timeout) as control:
            running = control.state()
            changes = dynsec_apply.plan(doc, running, admin=admin, password=password)
            for note in dynsec_apply.kept_differences(doc, running, admin=admin):
                click.echo(f"note: {note}", err=True)
            done = dynsec_apply.apply(control, changes, click.echo)
    except dc.ControlError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"{done} change(s) applied to {endpoint.url}" if done else "nothing to change")
