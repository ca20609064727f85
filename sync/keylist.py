"""Central's signed list of withdrawn keys, and how a gate takes it.

A pass-signing key that leaks (a desk PC stolen, a printer's key copied) must stop
working at every gate without anyone visiting them. Central publishes, retained on
``{prefix}/keys``, the *whole* list of withdrawn key ids with a version, signed by a
central key:

    {"type": "keylist", "version": 3, "ts": "…", "by": "central",
     "withdrawn": ["1a2b3c4d"], "notes": {"1a2b3c4d": "desk PC stolen"}, "kid": "…", "sig": "…"}

A gate keeps the newest list it has verified (gate/store/withdrawn.py) and refuses, from
then on and after a restart, a QR pass signed by a withdrawn key (``forged``) and any
payload from central signed by one. A list whose version is not above the one kept is
refused: an old list replayed cannot give a withdrawn key back. A list that would
withdraw every central key the gate holds is refused too: it would cut the gate off
from central for good (only the config file could bring it back).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.store import withdrawn
from gate.core.tokens import KeyRing, key_id
from gate.store.database import Store
from sync import codec

log = logging.getLogger(__name__)

CENTRAL_META = "keylist"  # central's meta table: the latest signed list (JSON)


# ---------------------------------------------------------------- central


def signed_list(key: Ed25519PrivateKey, version: int, kids: Iterable[str], notes: dict[str, str], by: str, ts: str) -> dict[str, Any]:
    ids = sorted(set(kids))
    body: dict[str, Any] = {"type": "keylist", "version": version, "ts": ts, "by": by, "withdrawn": ids}
    kept = {k: v for k, v in notes.items() if k in ids}
    if kept:
        body["notes"] = kept
    out = codec.sign(body, key)
    codec.decode(codec.encode(out), "keylist", KeyRing([key.public_key()]))  # our own output must pass our schema
    return out


def latest(store: Any) -> dict[str, Any] | None:
    raw = store.get_meta(CENTRAL_META)
    return json.loads(raw) if raw else None


def change(store: Any, key: Ed25519PrivateKey, *, withdraw: Iterable[str] = (), restore: Iterable[str] = (),
           note: str = "", by: str, ts: str) -> dict[str, Any]:
    """The next list: the current one with keys withdrawn or given back; stored, returned
    for publishing. The signing key itself cannot be withdrawn (gates would refuse the list)."""
    own = key_id(key.public_key())
    out, back = set(withdraw), set(restore)
    if own in out:
        raise ValueError(f"key {own} is the key this central signs with; switch signing_key to another central key first")
    for _ in range(50):  # each miss means another change went in: this ends
        raw = store.get_meta(CENTRAL_META)
        cur = json.loads(raw) if raw else {"version": 0, "withdrawn": [], "notes": {}}
        if back - set(cur["withdrawn"]):
            raise ValueError(f"not withdrawn, nothing to give back: {', '.join(sorted(back - set(cur['withdrawn'])))}")
        kids = (set(cur["withdrawn"]) | out) - back
        notes = {**cur.get("notes", {}), **{k: note for k in out if note}}
        payload = signed_list(key, int(cur["version"]) + 1, kids, notes, by, ts)
        if _swap(store, raw, json.dumps(payload, ensure_ascii=False)):
            return payload
        # Another operator changed the list meanwhile: build on theirs, never over it
        # (two lists with one version would leave gates holding whichever came first).
    raise RuntimeError("the key list kept changing while this change was made; run the command again")


def _swap(store: Any, old: str | None, new: str, meta_key: str = CENTRAL_META) -> bool:
    """Store ``new`` only if the list is still ``old`` (SQLite and PostgreSQL alike)."""
    with store.db.tx():
        if old is None:
            cur = store.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (meta_key, new))
        else:
            cur = store.db.execute("UPDATE meta SET value = ? WHERE key = ? AND value = ?", (new, meta_key, old))
        return bool(cur.rowcount == 1)


class Republisher:
    """Sends the stored list (retained) when it is newer than what this central sent,
    and again after every reconnect: a broker may lose its retained messages. The
    withdrawn keys by default; `sync/gatekeys.py` gives its own list and words."""

    def __init__(self, stored: Callable[[Any], dict[str, Any] | None] | None = None,
                 what: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.sent = 0
        self._stored = stored or latest
        self._what = what or (lambda p: f"key list version {p['version']} published ({len(p['withdrawn'])} withdrawn)")

    def poll(self, store: Any, publish: Callable[[dict[str, Any]], bool], *, again: bool = False) -> None:
        payload = self._stored(store)
        if payload is None or (payload["version"] <= self.sent and not again):
            return
        if publish(payload):
            self.sent = max(self.sent, int(payload["version"]))
            log.info("%s", self._what(payload))


# ---------------------------------------------------------------- gate


@dataclass(frozen=True)
class Outcome:
    result: str  # applied | duplicate | old | lockout
    kids: frozenset[str] = frozenset()


def accept(store: Store, msg: dict[str, Any], central: KeyRing) -> Outcome:
    """A verified list (codec checked the signature against ``central``): keep it if it
    is newer, and withdraw its keys from ``central`` too (a key in both roles goes in both)."""
    have = withdrawn.load(store)
    version = int(msg["version"])
    if version == have.version:
        return Outcome("duplicate", have.kids)  # central's retained copy, seen again
    if version < have.version:
        log.warning("key list version %d refused: version %d is already in force (a replay?)", version, have.version)
        return Outcome("old", have.kids)
    kids = frozenset(msg["withdrawn"])
    if not [k for k in central.ids() if k not in kids]:
        log.error("key list version %d refused: it withdraws every central key this gate holds (%s)",
                  version, ", ".join(sorted(central.ids())))
        return Outcome("lockout", have.kids)
    withdrawn.save(store, version, kids, codec.encode(msg).decode("utf-8"))
    central.withdraw(kids)
    gone = sorted(kids - have.kids)
    back = sorted(have.kids - kids)
    log.warning("key list version %d from %s in force: withdrawn %s%s", version, msg.get("by", ""),
                ", ".join(gone) or "nothing new", f"; given back {', '.join(back)}" if back else "")
    return Outcome("applied", kids)
