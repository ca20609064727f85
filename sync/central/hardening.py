"""What keeps the broker from being turned against the site (docs/mqtt.md "Security").

mosquitto 2.0 grants every SUBSCRIBE, `$share/...` included: its ACL only filters
what a subscriber is then sent. A gate that joins central's shared-subscription
group therefore takes its turn of every gate's events, which the ACL then drops
(issue 12, finding 2). A group name nobody can guess keeps a gate out of the group:
by default central derives it from its signing key, which only central holds.
"""
from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def share_group(key: Ed25519PrivateKey, site: str) -> str:
    """central's default shared-subscription group: the same for every instance that
    signs with this key, unknowable without it (80 bits)."""
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return "c" + hashlib.sha256(b"gate share group\0" + site.encode("utf-8") + b"\0" + raw).hexdigest()[:20]
