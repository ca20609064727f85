"""The pass-signing keys central has withdrawn, as this gate last heard (kept in the
store's meta table, so a restart refuses them before the broker is even reached).

Written only by sync/keylist.py after the list's signature and version check; read
at start by the app and by the downstream worker. Nothing here verifies anything.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gate.store.database import Store

VERSION = "keylist_version"
WITHDRAWN = "keylist_withdrawn"  # JSON list of key ids
PAYLOAD = "keylist_json"  # the signed list as received, for `gate doctor` and audits


@dataclass(frozen=True)
class Withdrawn:
    version: int
    kids: frozenset[str]


def load(store: Store) -> Withdrawn:
    version = int(store.get_meta(VERSION) or 0)
    raw = store.get_meta(WITHDRAWN)
    kids = frozenset(json.loads(raw)) if raw else frozenset()
    return Withdrawn(version, kids)


def save(store: Store, version: int, kids: frozenset[str], payload: str) -> None:
    # One transaction: a crash never leaves one version's number over another's keys.
    store.set_metas({VERSION: str(version), WITHDRAWN: json.dumps(sorted(kids)), PAYLOAD: payload})


def peek(path: Path) -> frozenset[str]:
    """The withdrawn key ids in the store at ``path``, read-only and without migrating
    (for `gate doctor`, run beside a stopped gate); none when there is no store yet."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (WITHDRAWN,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return frozenset()
    return frozenset(json.loads(row[0])) if row else frozenset()
