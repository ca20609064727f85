"""Central vouches for the site's gate keys: a signed list of the gates and the key
each one's desk signs visitor passes with, and how a gate takes it.

A visitor registered at gate A gets a pass signed with A's own key (``[keys] signing``,
gate/desk/visitors.py). Gate B admits it only if it trusts that key, and it trusts it
only because central says so. Central publishes, retained on ``{prefix}/gatekeys``, the
*whole* list with a version, signed by a central key:

    {"type": "gatekeys", "version": 4, "ts": "…", "by": "central",
     "gates": {"east": {"kid": "1a2b3c4d", "key": "<raw public key, base64url>"}}, "kid": "…", "sig": "…"}

A gate keeps the newest list it has verified (gate/store/gatekeys.py) and puts its keys
on the lanes' key ring as *gate keys* (gate.core.tokens.KeyRing.vouch): trusted for a
static visitor pass with a start and an end at most a day apart, and for nothing else.
A gate key cannot mint a resident's pass, a phone pass or a pass without an end, and it
never signs anything central sends (those are checked against [sync] central_keys).
A key central withdraws (sync/keylist.py) is refused here too.

Keys reach the list only by an operator's hand (``gate central keys gate-add GATE
FILE.pub``), never because a gate announced one: a gate's broker login is all it takes
to announce, and a stolen gate (or its copied SD card) would then have its own key, or
any key, trusted at every gate of the site. A gate's status says which key it signs
with (``signing_kid``), so the operator sees a gate whose key is not (yet) on the list
(``gate central keys gates``) and compares the id with the one the gate shows.

A list whose version is not above the one kept is refused (an old list replayed
cannot bring back a key that was taken off), as is a list whose key ids do not match
its keys.
"""
from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gate.core.tokens import KeyRing, key_id
from gate.store import gatekeys as kept
from gate.store.database import Store
from sync import codec, keylist

log = logging.getLogger(__name__)

CENTRAL_META = "gatekeys"  # central's meta table: the latest signed list (JSON)


def key_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# ---------------------------------------------------------------- central


def signed_list(key: Ed25519PrivateKey, version: int, gates: dict[str, dict[str, str]], by: str, ts: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "gatekeys", "version": version, "ts": ts, "by": by,
                            "gates": {g: dict(gates[g]) for g in sorted(gates)}}
    out = codec.sign(body, key)
    codec.decode(codec.encode(out), "gatekeys", KeyRing([key.public_key()]))  # our own output must pass our schema
    return out


def latest(store: Any) -> dict[str, Any] | None:
    raw = store.get_meta(CENTRAL_META)
    return json.loads(raw) if raw else None


def change(store: Any, key: Ed25519PrivateKey, *, add: dict[str, Ed25519PublicKey] | None = None,
           remove: list[str] | None = None, note: str = "", by: str, ts: str) -> dict[str, Any]:
    """The next list: the current one with gates' keys approved (``add``: gate -> key; a
    gate's earlier key is replaced) or taken off (``remove``: gate ids); stored, returned
    for publishing."""
    add, remove = dict(add or {}), list(remove or [])
    central_kid = key_id(key.public_key())
    for gate, public in add.items():
        if key_id(public) == central_kid:
            raise ValueError(f"{gate}: that is central's own signing key; a gate signs with a key of its own (gate keys new)")
    for _ in range(50):  # each miss means another change went in: this ends
        raw = store.get_meta(CENTRAL_META)
        cur = json.loads(raw) if raw else {"version": 0, "gates": {}}
        gates = dict(cur["gates"])
        unknown = [g for g in remove if g not in gates]
        if unknown:
            raise ValueError(f"no key approved for {', '.join(unknown)}, nothing to take off")
        withdrawn = set((keylist.latest(store) or {}).get("withdrawn", []))
        for gate, public in add.items():
            kid = key_id(public)
            if kid in withdrawn:
                raise ValueError(f"{gate}: key {kid} is withdrawn (gate central keys restore it first, or make a new one)")
            gates[gate] = {"kid": kid, "key": key_text(public), **({"note": note[:500]} if note else {})}
        for gate in remove:
            del gates[gate]
        payload = signed_list(key, int(cur["version"]) + 1, gates, by, ts)
        if keylist._swap(store, raw, json.dumps(payload, ensure_ascii=False), CENTRAL_META):
            return payload
        # Another operator changed the list meanwhile: build on theirs, never over it.
    raise RuntimeError("the gate key list kept changing while this change was made; run the command again")


def Republisher() -> keylist.Republisher:  # noqa: N802 - made like the withdrawn-key list's
    """The gate key list, sent as the withdrawn-key list is (sync/keylist.py)."""
    return keylist.Republisher(latest, lambda p: f"gate key list version {p['version']} published ({len(p['gates'])} gates)")


# ---------------------------------------------------------------- gate


@dataclass(frozen=True)
class Outcome:
    result: str  # applied | duplicate | old | mismatch
    keys: dict[str, Ed25519PublicKey]


def accept(store: Store, msg: dict[str, Any]) -> Outcome:
    """A verified list (codec checked central's signature): keep it if it is newer;
    the keys to vouch for come back in the outcome."""
    have = kept.load(store)
    version = int(msg["version"])
    if version == have.version:
        return Outcome("duplicate", have.keys())  # central's retained copy, seen again
    if version < have.version:
        log.warning("gate key list version %d refused: version %d is already in force (a replay?)", version, have.version)
        return Outcome("old", have.keys())
    for gate, entry in msg["gates"].items():
        public = kept.public_from_text(entry["key"])
        if public is None or key_id(public) != entry["kid"]:
            log.error("gate key list version %d refused: the key of gate %s does not match its id %s", version, gate, entry["kid"])
            return Outcome("mismatch", have.keys())
    gates = {g: {"kid": e["kid"], "key": e["key"]} for g, e in msg["gates"].items()}
    kept.save(store, version, gates, codec.encode(msg).decode("utf-8"))
    now = kept.load(store)
    log.warning("gate key list version %d from %s in force: %s", version, msg.get("by", ""),
                ", ".join(f"{g} {e['kid']}" for g, e in sorted(gates.items())) or "no gate keys")
    return Outcome("applied", now.keys())
