"""The site's broker users and rights for mosquitto's dynamic-security plugin: one role
per gate naming its own topics, one for central, one for a site broker's bridge, with
every SUBSCRIBE checked when it is made.

Why dynsec and not the ACL file: mosquitto 2.0's ACL file grants every SUBSCRIBE and only
filters what it then delivers, so a compromised gate could still join central's shared
subscription (`$share/...`) and take its turn of the events (they are then dropped). The
dynamic-security plugin (shipped with Debian's mosquitto) refuses such a SUBSCRIBE with
reason 135 "Not authorized", and binds each user to its client id. mosquitto 2.0.11's
dynsec has no %u/%c substitution, hence a role per gate with literal topics.

The file is written as the plugin stores it (PBKDF2-HMAC-SHA512 password hashes with a
random salt), so no admin user or network call is needed to provision a site; mosquitto
reads it at start. With an admin user (a role for the plugin's control topic and its
answers, nothing else) a changed file is brought to the running broker without a restart
(sync/dynsec_apply.py, through sync/dynsec_control.py).
"""
from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Iterable

from sync.topics import DEFAULT_PREFIX, CentralTopics, Topics

ITERATIONS = 10_000  # PBKDF2 rounds per password (the plugin's own default is 101)
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"  # the plugin's commands, as JSON {"commands": [...]}
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"  # its answers, to the client that asked


@dataclass(frozen=True)
class User:
    name: str
    password: str


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The plugin's password fields: base64 PBKDF2-HMAC-SHA512 (64 bytes) and salt."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def password_matches(client: dict[str, Any], password: str) -> bool:
    """Whether ``password`` is the one a client entry of the file was hashed from (True
    when the entry keeps no hash to check against)."""
    if not all(isinstance(client.get(k), str) for k in ("password", "salt")):
        return True
    try:
        salt, want = base64.b64decode(client["salt"]), base64.b64decode(client["password"])
        iterations = int(client.get("iterations", 101))
    except (ValueError, TypeError):
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(want) or 64)
    return secrets.compare_digest(want, got)


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def _reads(topics: Iterable[str]) -> list[dict[str, Any]]:
    """Subscribe to exactly these topics and be sent what is published on them."""
    return [a for t in topics for a in (_acl("subscribeLiteral", t), _acl("publishClientReceive", t))]


def gate_acls(t: Topics) -> list[dict[str, Any]]:
    """A gate publishes only as itself and reads its own replies plus the site-wide topics."""
    sends = [t.events, t.status, t.report, t.snapshot_request, t.presence_request]
    reads = [t.cmd, t.snapshot, t.presence_reply, t.receipt, t.passes, t.policy, t.keys, t.presence, t.presence_head]
    return [_acl("publishClientSend", s) for s in sends] + _reads(reads)


def central_acls(t: CentralTopics, share_group: str) -> list[dict[str, Any]]:
    """Central reads and writes the site's topics; its shared subscription only in its own group."""
    return [
        _acl("publishClientSend", f"{t.prefix}/#"),
        _acl("publishClientReceive", f"{t.prefix}/#"),
        _acl("subscribePattern", f"{t.prefix}/#"),
        _acl("subscribePattern", f"$share/{share_group}/{t.prefix}/#"),
        _acl("unsubscribePattern", "#"),
    ]


def bridge_acls(t: CentralTopics) -> list[dict[str, Any]]:
    """A site broker's bridge logging in to the central broker: the gates' traffic both ways."""
    sends = [f"{t.prefix}/+/{leaf}" for leaf in ("events", "status", "report", "snapshot/request", "presence/request")]
    reads = [t.passes, t.policy, t.keys, t.presence, t.presence_head,
             *(f"{t.prefix}/+/{leaf}" for leaf in ("cmd", "snapshot", "presence", "receipt"))]
    return ([_acl("publishClientSend", s) for s in sends]
            + [a for r in reads for a in (_acl("subscribePattern", r), _acl("publishClientReceive", r))])


def admin_acls() -> list[dict[str, Any]]:
    """The admin user that applies a changed file to the running broker: it sends the
    plugin's commands and reads their answers; no other topic, the site's included."""
    return [_acl("publishClientSend", CONTROL_TOPIC), *_reads([RESPONSE_TOPIC])]


# What a gate's Home Assistant connection publishes under {prefix}/{gate}/{lane}/ (sync/homeassistant.py).
HA_STATES = ("door/lock", "door/contact", "decision", "decision/attributes", "temperature", "event", "alarm",
             "alarm/attributes")
HA_ROOT = "homeassistant"


def ha_gate_acls(t: Topics) -> list[dict[str, Any]]:
    """A gate's Home Assistant connection ({gate}-ha): its availability, its discovery
    configs and lane states; it reads Home Assistant's birth and its lanes' door commands."""
    sends = [t.available, f"{HA_ROOT}/+/{t.gate}/+/config", *(f"{t.prefix}/{t.gate}/+/{leaf}" for leaf in HA_STATES)]
    reads = [f"{HA_ROOT}/status", f"{t.prefix}/{t.gate}/+/door/set"]
    return ([_acl("publishClientSend", s) for s in sends]
            + [a for r in reads for a in (_acl("subscribePattern", r), _acl("publishClientReceive", r))])


def homeassistant_acls(t: CentralTopics) -> list[dict[str, Any]]:
    """Home Assistant's own user: it reads the configs and states and announces itself; it
    alone may write the door command topics (unsigned: this role is all that guards them)."""
    reads = [f"{HA_ROOT}/#", f"{t.prefix}/+/available", *(f"{t.prefix}/+/+/{leaf}" for leaf in HA_STATES)]
    sends = [f"{HA_ROOT}/status", f"{t.prefix}/+/+/door/set"]
    return ([_acl("publishClientSend", s) for s in sends]
            + [a for r in reads for a in (_acl("subscribePattern", r), _acl("publishClientReceive", r))])


def build(site: str, *, gates: Iterable[User], centrals: Iterable[User], share_group: str,
          bridges: Iterable[User] = (), ha_gates: Iterable[User] = (), homeassistant: User | None = None,
          admin: User | None = None, prefix: str = DEFAULT_PREFIX, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The plugin's whole configuration for one site: nothing is allowed that a role does not name."""
    site_topics = CentralTopics.for_site(site, prefix)
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []

    def add(user: User, role: str, acls: list[dict[str, Any]], text: str) -> None:
        # The client id must be the user name: nobody logs in as someone else's session.
        clients.append({"username": user.name, "clientid": user.name, "textname": text,
                        "roles": [{"rolename": role}], **hash_password(user.password, iterations=iterations)})
        roles.append({"rolename": role, "acls": acls})

    names: set[str] = set()
    ha: list[tuple[User, str]] = [(g, "ha") for g in ha_gates] + ([(homeassistant, "homeassistant")] if homeassistant else [])
    for user, kind in ([(g, "gate") for g in gates] + [(c, "central") for c in centrals]
                       + [(b, "bridge") for b in bridges] + ha + ([(admin, "admin")] if admin else [])):
        if user.name in names:
            raise ValueError(f"{user.name!r} is named twice: every gate, central instance and bridge needs its own user")
        names.add(user.name)
        if kind == "gate":
            add(user, f"gate-{user.name}", gate_acls(site_topics.gate(user.name)), f"gate {user.name} of {site}")
        elif kind == "ha":
            gate = user.name.removesuffix("-ha")
            add(user, f"ha-{gate}", ha_gate_acls(site_topics.gate(gate)), f"Home Assistant connection of gate {gate}")
        elif kind == "homeassistant":
            add(user, "homeassistant", homeassistant_acls(site_topics), "Home Assistant")
        elif kind == "admin":
            add(user, f"admin-{user.name}", admin_acls(), f"dynamic-security admin of {site}")
        elif kind == "central":
            add(user, f"central-{user.name}", central_acls(site_topics, share_group), f"central of {site}")
        else:
            add(user, f"bridge-{user.name}", bridge_acls(site_topics), f"bridge of {site}")
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": clients,
        "groups": [],
        "roles": roles,
    }
