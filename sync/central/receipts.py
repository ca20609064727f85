"""Central's side of the end-to-end receipts (sync/receipts.py is the contract):
the high-water mark, ranges and holes per gate, signed after each batch commits."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Protocol

from sync import codec
from sync.receipts import MAX_RANGES, compress

MAX_MISSING = 64
SCAN = 5000  # seqs above the high-water mark read per look at one gate

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS receipts (gate TEXT PRIMARY KEY, upto BIGINT NOT NULL, upto_id TEXT,"
    " ts DOUBLE PRECISION NOT NULL)",
]


class _DB(Protocol):
    def one(self, sql: str, args: Iterable[Any] = ...) -> Any: ...
    def all(self, sql: str, args: Iterable[Any] = ...) -> list[Any]: ...
    def execute(self, sql: str, args: Iterable[Any] = ...) -> Any: ...
    def tx(self, write: bool = True) -> Any: ...


@dataclass
class _Gap:
    missing: list[tuple[int, int]]
    asked_at: float
    since: float  # when central first saw this hole


@dataclass
class ReceiptBook:
    """Central's writer notes each stored (or duplicate) event with ``saw``; after the
    batch has committed ``flush`` gives the receipts to publish. One per writer thread."""

    key: Any  # Ed25519 private key
    topic_of: Any  # gate -> receipt topic
    repeat_s: float = 5.0  # how often an open hole is asked for again
    ask_for_s: float = 60.0  # then the gate's own timeout is left to resend (a seq it no longer has stays a hole)
    _seen: dict[str, set[int]] = field(default_factory=dict)
    _gaps: dict[str, _Gap] = field(default_factory=dict)
    _hw: dict[str, tuple[int, str | None]] = field(default_factory=dict)

    @staticmethod
    def create_schema(db: _DB) -> None:
        with db.tx():
            for stmt in SCHEMA:
                db.execute(stmt)

    def begin(self) -> None:
        """A batch's transaction starts (again): forget what an aborted try saw, and
        read the marks again (another instance may have moved them)."""
        self._seen.clear()
        self._hw.clear()

    def saw(self, gate: str, seq: int) -> None:
        self._seen.setdefault(gate, set()).add(seq)

    def flush(self, db: _DB) -> list[tuple[str, dict[str, Any]]]:
        """Inside the batch's transaction (the marks commit with the events); publish
        what it returns only after the commit."""
        out = [(self.topic_of(g), self._receipt(db, g, seqs)) for g, seqs in self._seen.items()]
        self._seen.clear()
        return out

    def tick(self, db: _DB) -> list[tuple[str, dict[str, Any]]]:
        """Ask again for holes that stay open."""
        now = time.monotonic()
        due = [g for g, gap in self._gaps.items() if now - gap.asked_at >= self.repeat_s and now - gap.since < self.ask_for_s]
        if not due:
            return []
        with db.tx():
            return [(self.topic_of(g), self._receipt(db, g, set(), rescan=True)) for g in due]

    def _mark(self, db: _DB, gate: str) -> tuple[int, str | None]:
        got = self._hw.get(gate)
        if got is None:
            row = db.one("SELECT upto, upto_id FROM receipts WHERE gate = ?", (gate,))
            got = (int(row[0]), row[1]) if row else (0, None)
        return got

    def _receipt(self, db: _DB, gate: str, seqs: set[int], rescan: bool = False) -> dict[str, Any]:
        hw, hw_id = self._mark(db, gate)
        gap = self._gaps.get(gate)
        # The mark moves only when its next seq arrives (or another instance moved it).
        if hw + 1 in seqs or rescan or gap is None and seqs and min(seqs) > hw + 1:
            new_hw, above = self._advance(db, gate, hw)
            if new_hw != hw:
                hw_id = self._event_id(db, gate, new_hw)
                db.execute(  # inside the caller's transaction
                    "INSERT INTO receipts (gate, upto, upto_id, ts) VALUES (?,?,?,?) ON CONFLICT (gate) DO UPDATE"
                    " SET upto = excluded.upto, upto_id = excluded.upto_id, ts = excluded.ts"
                    " WHERE excluded.upto > receipts.upto",
                    (gate, new_hw, hw_id, time.time()),
                )
                hw = new_hw
            missing = _holes(hw, above)
            if missing:
                now = time.monotonic()
                since = gap.since if gap is not None and gap.missing[:1] == missing[:1] else now
                self._gaps[gate] = _Gap(missing, now, since)
            else:
                self._gaps.pop(gate, None)
        elif gap is not None:
            gap.asked_at = time.monotonic()
        self._hw[gate] = (hw, hw_id)
        gap = self._gaps.get(gate)
        body: dict[str, Any] = {
            "type": "receipt", "gate": gate, "upto": hw, "upto_id": hw_id,
            "ranges": [list(r) for r in compress(seqs)[:MAX_RANGES]],
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        if gap is not None and time.monotonic() - gap.since < self.ask_for_s:
            body["missing"] = [list(r) for r in gap.missing]
        return codec.sign(body, self.key)

    @staticmethod
    def _advance(db: _DB, gate: str, hw: int) -> tuple[int, list[int]]:
        rows = [int(r[0]) for r in db.all(
            "SELECT DISTINCT seq FROM events WHERE gate = ? AND seq > ? ORDER BY seq LIMIT ?", (gate, hw, SCAN)
        )]
        for s in rows:
            if s != hw + 1:
                break
            hw = s
        return hw, [s for s in rows if s > hw]

    @staticmethod
    def _event_id(db: _DB, gate: str, seq: int) -> str | None:
        row = db.one("SELECT id FROM events WHERE gate = ? AND seq = ? ORDER BY received LIMIT 1", (gate, seq))
        return row[0] if row else None


def _holes(hw: int, above: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    prev = hw
    for s in above:
        if s > prev + 1:
            out.append((prev + 1, s - 1))
            if len(out) >= MAX_MISSING:
                break
        prev = s
    return out
