"""Bring a running broker's dynamic-security users and roles in line with the plugin's
file (sync/dynsec.py writes it), through its control topic (sync/dynsec_control.py): a
site adds or withdraws a gate without restarting its broker.

plan() compares the file with what the plugin holds and lists the changes, each a line
for the operator and the commands that make it, in an order that never leaves a client
without its role: the default access, new roles, changed roles' ACLs, new clients
(password from the caller, client id bound as in the file), changed clients' client id
and roles, then the clients the file does not have (deleting one closes its connection
at once: a withdrawn or stolen gate is out) and the roles no one needs any more.

The admin user applying the file is never deleted nor changed, and neither are the roles
it holds: apply cannot lock itself out half-way. Groups (the file has none) are left as
they are. A password is set only when a client is created: the plugin never tells its
hashes, so a changed password of an existing user is not seen.

Caveat of mosquitto 2.0: changing a client's or role's rights closes the connections of
the clients concerned (they reconnect with the new rights); apply changes only what differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sync.dynsec_control import Control, Running

ACCESS_TYPES = ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe")
# The plugin drops an ACL of another type without a word (mosquitto 2.0.11).
ACL_TYPES = ("publishClientSend", "publishClientReceive", "subscribeLiteral", "subscribePattern",
             "unsubscribeLiteral", "unsubscribePattern")
AclKey = tuple[str, str]  # (acltype, topic): the plugin keeps one ACL per pair


@dataclass(frozen=True)
class Change:
    line: str  # what it does, for the operator
    commands: tuple[dict[str, Any], ...]


def _acls(role: dict[str, Any]) -> dict[AclKey, tuple[int, bool]]:
    return {(a["acltype"], a["topic"]): (int(a.get("priority", 0)), bool(a.get("allow", True)))
            for a in role.get("acls") or []}


def _acl_list(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"acltype": kind, "topic": topic, "priority": prio, "allow": allow}
            for (kind, topic), (prio, allow) in _acls(role).items()]


def _roles(client: dict[str, Any]) -> dict[str, int]:
    return {r["rolename"]: int(r.get("priority", -1)) for r in client.get("roles") or []}


def _role_list(client: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"rolename": n, **({"priority": p} if p != -1 else {})} for n, p in _roles(client).items()]


def _names(roles: dict[str, int]) -> str:
    return ", ".join(sorted(roles)) or "none"


def check_file(doc: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The file's clients and roles by name; ValueError if it is not the plugin's file."""
    if not isinstance(doc, dict) or not isinstance(doc.get("clients"), list) or not isinstance(doc.get("roles"), list):
        raise ValueError("not a dynamic-security file (it needs \"clients\" and \"roles\" lists)")
    try:
        clients = {c["username"]: c for c in doc["clients"]}
        roles = {r["rolename"]: r for r in doc["roles"]}
        for r in roles.values():
            _acls(r)
        for c in clients.values():
            _roles(c)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"a client, role or ACL of the file is malformed ({exc!r})") from exc
    odd = sorted({f"{a['acltype']} in role {name}" for name, r in roles.items() for a in r.get("acls") or []
                  if a["acltype"] not in ACL_TYPES})
    if odd:
        raise ValueError(f"unknown ACL type(s): {', '.join(odd)} (the plugin knows {', '.join(ACL_TYPES)})")
    missing = sorted({n for c in clients.values() for n in _roles(c)} - set(roles))
    if missing:
        raise ValueError(f"the file's clients name roles it does not define: {', '.join(missing)}")
    return clients, roles


def plan(doc: dict[str, Any], running: Running, *, admin: str, password: Callable[[dict[str, Any]], str]) -> list[Change]:
    """The changes that make ``running`` what ``doc`` says. ``password(client)`` gives a
    new client's password (from the client's entry of the file); it may raise ValueError."""
    want_clients, want_roles = check_file(doc)
    have_clients = {c["username"]: c for c in running.clients}
    have_roles = {r["rolename"]: r for r in running.roles}
    kept_roles = set(_roles(have_clients.get(admin, {})))  # the admin's own rights stay as they are
    changes: list[Change] = []

    want_access = {k: bool(v) for k, v in (doc.get("defaultACLAccess") or {}).items() if k in ACCESS_TYPES}
    if any(running.default_access.get(k) != v for k, v in want_access.items()):
        text = ", ".join(f"{k} {'allow' if v else 'deny'}" for k, v in want_access.items())
        changes.append(Change(f"default access: {text}", ({"command": "setDefaultACLAccess",
                       "acls": [{"acltype": k, "allow": v} for k, v in want_access.items()]},)))

    for name, role in want_roles.items():
        if name not in have_roles:
            acls = _acl_list(role)
            changes.append(Change(f"created role {name} ({len(acls)} ACLs)",
                                  ({"command": "createRole", "rolename": name, "acls": acls},)))
        elif name not in kept_roles and _acls(role) != _acls(have_roles[name]):
            want, have = _acls(role), _acls(have_roles[name])
            added = sum(1 for k, v in want.items() if have.get(k) != v)
            removed = sum(1 for k, v in have.items() if want.get(k) != v)
            changes.append(Change(f"changed role {name}: {added} ACL(s) added or changed, {removed} removed",
                                  ({"command": "modifyRole", "rolename": name, "acls": _acl_list(role)},)))

    for name, client in want_clients.items():
        if name == admin:
            continue
        if name not in have_clients:
            cmd: dict[str, Any] = {"command": "createClient", "username": name, "password": password(client),
                                   "roles": _role_list(client)}
            for key in ("clientid", "textname", "textdescription"):
                if client.get(key):
                    cmd[key] = client[key]
            bound = f"client id {client['clientid']}" if client.get("clientid") else "any client id"
            changes.append(Change(f"created client {name} ({bound}, roles {_names(_roles(client))})", (cmd,)))
            continue
        have = have_clients[name]
        what: list[str] = []
        cmd = {"command": "modifyClient", "username": name}
        if (client.get("clientid") or "") != (have.get("clientid") or ""):
            cmd["clientid"] = client.get("clientid") or ""
            what.append(f"client id {have.get('clientid') or '(any)'} -> {client.get('clientid') or '(any)'}")
        if _roles(client) != _roles(have):
            cmd["roles"] = _role_list(client)
            what.append(f"roles {_names(_roles(have))} -> {_names(_roles(client))}")
        if what:
            changes.append(Change(f"changed client {name}: {'; '.join(what)}", (cmd,)))

    for name in have_clients:
        if name not in want_clients and name != admin:
            changes.append(Change(f"deleted client {name} (its connection, if any, is closed)",
                                  ({"command": "deleteClient", "username": name},)))
    for name in have_roles:
        if name not in want_roles and name not in kept_roles:
            changes.append(Change(f"deleted role {name}", ({"command": "deleteRole", "rolename": name},)))
    return changes


def kept_differences(doc: dict[str, Any], running: Running, *, admin: str) -> list[str]:
    """What plan() leaves alone although the file differs: the admin user and its roles."""
    want_clients, want_roles = check_file(doc)
    have = {c["username"]: c for c in running.clients}
    have_roles = {r["rolename"]: r for r in running.roles}
    notes = []
    if admin in want_clients and admin in have and (_roles(want_clients[admin]) != _roles(have[admin])):
        notes.append(f"the admin user {admin}: its roles differ from the file's, left as they are")
    for name in _roles(have.get(admin, {})):
        if name in want_roles and name in have_roles and _acls(want_roles[name]) != _acls(have_roles[name]):
            notes.append(f"role {name} (the admin user's): its ACLs differ from the file's, left as they are")
    return notes


def apply(control: Control, changes: list[Change], echo: Callable[[str], None]) -> int:
    """Make the changes one request each, echoing each line once the plugin took it; the
    first error stops (a ControlError naming the command; what was done stays done)."""
    for change in changes:
        control.run(list(change.commands))
        echo(change.line)
    return len(changes)
