"""Removed means refused: tombstones in the gate's store (issue 12, finding 5).

A pass removed from the table (central deleted it or left it out of a new roster,
a privacy erasure here) keeps a tombstone: its id, its category and until when
its signed QR could still be valid, no personal data. `Store.get_pass` answers a
tombstoned id with a revoked, listed record, so the lane's policy refuses it
`revoked` and never admits it as unlisted. Its door cards stay bound to the id
(through central's snapshots too, gate/store/snapshot.py), so a swipe of a removed
pass's card is refused `revoked` as well, until the card is bound to another pass;
an erasure takes them away (a card number is the holder's). Issuing the id again (an
upsert) lifts the tombstone; maintenance forgets the ones past their `until`, and
their cards with them. Batches and snapshots carry them (gate/store/database.py,
sync/downstream.py).
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from gate.core.records import PassRecord


def to_ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


@dataclass(frozen=True)
class Tombstone:
    """A pass removed from the table: refused `revoked` until `until` (None: for good).
    No personal data: the id, and the category for the refusal's record."""

    pass_id: str
    category: str | None = None
    until: datetime | None = None


class TombstonesMixin:
    """Store's tombstone methods (Store has the connection and write transactions)."""

    conn: sqlite3.Connection
    write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def _tombstoned(self, pass_id: str) -> PassRecord | None:
        # Removed, yet its signed QR may still be valid: refused as revoked, never unlisted.
        row = self.conn.execute("SELECT category FROM tombstones WHERE pass_id = ?", (pass_id,)).fetchone()
        if row is None:
            return None
        return PassRecord(id=pass_id, category=row[0] or "resident", revoked=True, listed=True)

    def remove_passes(self, ids: Iterable[str], *, until: datetime | None = None) -> int:
        """Remove passes (their cards stay bound, refused too), leaving a tombstone for
        each id, in one transaction. until: when the tombstone may be forgotten (None: never).
        Returns how many ids were tombstoned."""
        stones = [Tombstone(i, None, until) for i in dict.fromkeys(ids)]
        with self.write() as c:
            return self.write_tombstones(c, stones)

    @staticmethod
    def write_tombstones(c: sqlite3.Connection, stones: list[Tombstone], *, keep_cards: bool = True) -> int:
        """Inside a write transaction: tombstone each id (its category taken from the
        pass row or an earlier tombstone when not given) and delete its pass row; its
        card bindings stay (a swipe is refused `revoked`) unless not keep_cards."""
        now = time.time()
        for s in stones:
            cat = s.category
            if cat is None:
                row = c.execute(
                    "SELECT category FROM passes WHERE id = ? UNION ALL SELECT category FROM tombstones WHERE pass_id = ?",
                    (s.pass_id, s.pass_id),
                ).fetchone()
                cat = row[0] if row else None
            c.execute(
                "INSERT INTO tombstones(pass_id, category, removed_at, until) VALUES (?,?,?,?) ON CONFLICT(pass_id)"
                " DO UPDATE SET category = excluded.category, removed_at = excluded.removed_at, until = excluded.until",
                (s.pass_id, cat, now, to_ts(s.until)),
            )
        c.executemany("DELETE FROM passes WHERE id = ?", [(s.pass_id,) for s in stones])
        if not keep_cards:
            c.executemany("DELETE FROM card_bindings WHERE pass_id = ?", [(s.pass_id,) for s in stones])
        return len(stones)

    def tombstone(self, pass_id: str) -> Tombstone | None:
        row = self.conn.execute("SELECT category, until FROM tombstones WHERE pass_id = ?", (pass_id,)).fetchone()
        return Tombstone(pass_id, row[0], from_ts(row[1])) if row else None

    def tombstones(self) -> list[Tombstone]:
        return [
            Tombstone(r[0], r[1], from_ts(r[2]))
            for r in self.conn.execute("SELECT pass_id, category, until FROM tombstones ORDER BY pass_id")
        ]

    @staticmethod
    def lift_tombstones(c: sqlite3.Connection, ids: Iterable[str]) -> None:
        """Inside a write transaction: the ids are issued again. A removed pass's cards
        were kept only to be refused: they go with its tombstone, so a card of the old
        holder never opens for whoever is given the id next (the new row says its own)."""
        keys = [(i,) for i in ids]
        c.executemany("DELETE FROM card_bindings WHERE pass_id = ?1 AND EXISTS"
                      " (SELECT 1 FROM tombstones WHERE pass_id = ?1)", keys)
        c.executemany("DELETE FROM tombstones WHERE pass_id = ?", keys)

    def forget_tombstones(self, now: float | None = None) -> int:
        """Maintenance: drop tombstones whose pass could no longer be valid anyway."""
        now = time.time() if now is None else now
        with self.write() as c:
            # Their cards go with them, by key: no scan of the bindings under the write lock.
            ended = [(r[0],) for r in c.execute("SELECT pass_id FROM tombstones WHERE until IS NOT NULL AND until < ?",
                                                (now,))]
            c.executemany("DELETE FROM card_bindings WHERE pass_id = ?", ended)
            c.executemany("DELETE FROM tombstones WHERE pass_id = ?", ended)
            return len(ended)
