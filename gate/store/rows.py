"""Shapes and helpers the store's parts share: times as timestamps, a pass row as a
tuple, the retry a fresh WAL file needs, the snapshot's leftover tables, a stored event."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def to_ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _pass_tuple(r: dict[str, Any], now: float) -> tuple[Any, ...]:
    """A pass row (times as datetimes, attributes a dict or their JSON text) in
    Store.PASS_COLUMNS order."""
    return (
        r["id"], r.get("holder"), r.get("unit"), r["category"], r.get("phone_last4"),
        to_ts(r.get("valid_from")), to_ts(r.get("valid_until")), to_ts(r.get("observation_until")),
        to_ts(r.get("pcr_at")), r.get("health_code"), 1 if r.get("revoked") else 0, now,
        attributes_text(r.get("attributes")),
    )


def attributes_text(a: Any) -> str | None:
    """A pass's attributes as the pass table keeps them: canonical JSON text, or NULL."""
    if not a:
        return None
    return a if isinstance(a, str) else json.dumps(a, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _retry_locked(fn: Any, seconds: float = 10.0) -> Any:
    # Switching a fresh file to WAL takes a lock the busy timeout does not wait on.
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_OTHER_BASE = 1 << 53  # outbox seqs for non-event rows (reports)



class StagingBusy(RuntimeError):
    """Another store (thread or process) is staging a pass snapshot right now."""

# Tables a snapshot leaves behind, with the key its chunked cleanup deletes by.
# *_old: the tables swapped out (nobody reads them); *_new: a staging that never
# got swapped in (snapshot_cards: the staging table of schema m005 and before).
_OLD_TABLES = (("passes_old", "rowid"), ("card_bindings_old", "number"))
_NEW_TABLES = (
    ("passes_new", "rowid"), ("card_bindings_new", "number"), ("snapshot_cards", "number"), ("tombstones_new", "pass_id"),
)
CLEANUP_CHUNK = 20_000  # rows a cleanup transaction deletes: ~tens of ms of write lock


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    id: str
    body: dict[str, Any]
