"""Central's quarantine: messages set aside because they can never be stored.

A message that fails to decode, breaks its schema or cannot be written is kept
here with its raw bytes (what `gate central quarantine` shows), counted per gate
and reason, and acknowledged: it must never hold back the messages behind it.
The same bytes on the same topic (a redelivery, a retained status seen again
after every reconnect) make one row whose `times` grows, so a poison message is
logged once however often the broker hands it over.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

RAW_KEEP = 256 * 1024  # bytes of the raw message kept; a bigger one keeps its head, size and hash


def schema(pg: bool) -> list[str]:
    blob = "BYTEA" if pg else "BLOB"
    return [
        "CREATE TABLE IF NOT EXISTS quarantine (key TEXT PRIMARY KEY, gate TEXT, topic TEXT NOT NULL,"
        " kind TEXT, reason TEXT NOT NULL, detail TEXT NOT NULL, seq BIGINT, size BIGINT NOT NULL,"
        f" raw {blob} NOT NULL, first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,"
        " times BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS quarantine_gate_reason ON quarantine (gate, reason)",
    ]


def clean(text: str, limit: int = 500) -> str:
    """A detail that can be stored whatever the message held (lone surrogates, NULs)."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@dataclass(frozen=True)
class Entry:
    key: str
    gate: str | None
    topic: str
    kind: str | None
    reason: str
    detail: str
    seq: int | None
    size: int
    raw: bytes
    first_seen: float
    last_seen: float
    times: int

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "gate": self.gate, "topic": self.topic, "kind": self.kind, "reason": self.reason,
            "detail": self.detail, "seq": self.seq, "size": self.size, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "times": self.times, "raw": self.raw.decode("utf-8", "backslashreplace"),
            "raw_truncated": len(self.raw) < self.size,
        }


def put(db: Any, *, topic: str, raw: bytes, gate: str | None, kind: str | None, reason: str, detail: str,
        seq: int | None = None, now: float | None = None) -> bool:
    """Inside a write transaction of central's DB. True if this message is new here.
    seq: a refused event's seq when it has a usable one (that seq of the gate's is
    accounted for: held here, not missing)."""
    now = time.time() if now is None else now
    key = hashlib.sha256(topic.encode("utf-8", "backslashreplace") + b"\0" + raw).hexdigest()
    db.execute(
        "INSERT INTO quarantine (key, gate, topic, kind, reason, detail, seq, size, raw, first_seen, last_seen, times)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,1) ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen,"
        " times = quarantine.times + 1",
        (key, clean(gate or "", 64) or None, clean(topic, 300), kind, reason, clean(detail), seq, len(raw),
         bytes(raw[:RAW_KEEP]), now, now),
    )
    # An update reports a changed row as an insert does: tell new from repeated by asking.
    row = db.one("SELECT times FROM quarantine WHERE key = ?", (key,))
    return bool(row) and int(row[0]) == 1


def entries(db: Any, *, gate: str | None = None, reason: str | None = None, limit: int | None = None) -> list[Entry]:
    sql = "SELECT key, gate, topic, kind, reason, detail, seq, size, raw, first_seen, last_seen, times FROM quarantine"
    where, args = [], []
    if gate:
        where.append("gate = ?")
        args.append(gate)
    if reason:
        where.append("reason = ?")
        args.append(reason)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY first_seen, key"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [
        Entry(r[0], r[1], r[2], r[3], r[4], r[5], None if r[6] is None else int(r[6]), int(r[7]), bytes(r[8]),
              float(r[9]), float(r[10]), int(r[11]))
        for r in db.all(sql, args)
    ]


def counts(db: Any) -> list[tuple[str | None, str, int, int]]:
    """(gate, reason, messages, deliveries) for every gate and reason held."""
    return [
        (r[0], r[1], int(r[2]), int(r[3]))
        for r in db.all(
            "SELECT gate, reason, count(*), sum(times) FROM quarantine GROUP BY gate, reason ORDER BY gate, reason"
        )
    ]


def clear(db: Any, *, gate: str | None = None, reason: str | None = None, keys: list[str] | None = None) -> int:
    """Forget what was set aside (all of it, one gate's, one reason's, or some keys)."""
    sql, where, args = "DELETE FROM quarantine", [], []
    if gate:
        where.append("gate = ?")
        args.append(gate)
    if reason:
        where.append("reason = ?")
        args.append(reason)
    if keys:
        where.append("key IN (" + ",".join("?" * len(keys)) + ")")
        args.extend(keys)
    if where:
        sql += " WHERE " + " AND ".join(where)
    with db.tx():
        return int(db.execute(sql, args).rowcount)
