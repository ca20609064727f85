"""The site's gate keys central vouches for, as this gate last heard (kept in the
store's meta table, so after a restart a visitor registered at another gate is admitted
before the broker is even reached).

Written only by sync/gatekeys.py after the list's signature and version check; read at
start by the app and by the downstream worker. Nothing here verifies anything: the
keys go on the lanes' key ring as *gate keys*, trusted for what
gate.core.tokens.gate_key_may_sign allows and nothing more.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gate.core.tokens import key_id
from gate.store.database import Store

VERSION = "gatekeys_version"
GATES = "gatekeys_gates"  # JSON {gate: {"kid": ..., "key": base64url raw public key}}
PAYLOAD = "gatekeys_json"  # the signed list as received, for audits


@dataclass(frozen=True)
class GateKeys:
    version: int
    gates: dict[str, dict[str, str]] = field(default_factory=dict)

    def keys(self) -> dict[str, Ed25519PublicKey]:
        """Key id -> public key, for KeyRing.vouch (an entry whose key does not match
        its id is left out: sync/gatekeys.py refuses such a list before it is kept)."""
        out = {}
        for entry in self.gates.values():
            key = public_from_text(entry["key"])
            if key is not None and key_id(key) == entry["kid"]:
                out[entry["kid"]] = key
        return out


def public_from_text(text: str) -> Ed25519PublicKey | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


def load(store: Store) -> GateKeys:
    version = int(store.get_meta(VERSION) or 0)
    raw = store.get_meta(GATES)
    return GateKeys(version, json.loads(raw) if raw else {})


def save(store: Store, version: int, gates: dict[str, dict[str, str]], payload: str) -> None:
    # One transaction: a crash never leaves one version's number over another's keys.
    store.set_metas({VERSION: str(version), GATES: json.dumps(gates, sort_keys=True), PAYLOAD: payload})
