"""The gate's SQLite store: passes, cards, who is inside, events and the outbox.

Card bindings (card number -> pass id: central's data, replaced by snapshots) are
kept in card_bindings, apart from this gate's card history in cards (first_seen,
last_seen, swipes), so a snapshot swaps both passes and bindings in by renaming.

One Store object per thread (SQLite connections stay in the thread that opened
them). WAL lets the lanes write while the guard page and sync read. Python's
sqlite3 defaults to synchronous=FULL, which we set explicitly: an event that the
door acted on must survive a power cut.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Iterator

from sqlite_utils import Database

from gate.store.migrations import migrations
from gate.core.records import PassRecord
from gate.store.events import StoreEvents
from gate.store.rows import (  # noqa: F401  (re-exported: gate.store.database is the store's public name)
    _OTHER_BASE, StagingBusy, StoredEvent, _pass_tuple, _retry_locked, attributes_text, from_ts, to_ts,
)
from gate.store.snapshot import StoreSnapshots
from gate.store.tombstones import Tombstone, TombstonesMixin

log = logging.getLogger(__name__)


class Store(StoreEvents, StoreSnapshots, TombstonesMixin):
    def __init__(self, path: str | Path, *, gate_id: str = "gate-01", tz: tzinfo = timezone.utc,
                 send_situations: bool = True) -> None:
        self.path = Path(path)
        # [sync] send_situations: a decision's outbox payload carries its situation
        # (gate/store/events.py upstream_situation); events.body never does.
        self.send_situations = send_situations
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.gate_id = gate_id
        self.tz = tz
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE), so
        # the seq counter is read and bumped under the write lock.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # A short WAL, truncated after each checkpoint: on an SD card (or a full disk)
        # the log must not grow to megabytes that only a checkpoint can give back.
        conn.execute("PRAGMA wal_autocheckpoint=256")
        conn.execute("PRAGMA journal_size_limit=1048576")
        self.conn = conn
        self.db = Database(conn)
        self._staging_lock: int | None = None  # fd of the staging lock file while we stage
        if migrations.pending(self.db):
            # Under the write lock, so two processes starting at once do not both
            # migrate: apply() works out what is pending again, and its
            # per-migration transactions nest inside ours as savepoints.
            with self.write():
                migrations.apply(self.db)
        # What a crash between a swap and its cleanup left behind is cleared by the
        # next snapshot or by maintenance, not here: a million rows take seconds on
        # a Pi, and every lane, page and CLI command opens a store.

    def close(self) -> None:
        self._release_staging()
        self.conn.close()

    # ------------------------------------------------------------ a full disk

    RESERVE_BYTES = 2 << 20  # ~700 decisions once released (measured: tests/test_disk_full.py)
    FULL_DISK_WAL_PAGES = 16

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    def ensure_reserve(self, size: int | None = None) -> bool:
        """Keep a ballast file beside the store: when the disk fills, deleting it
        gives SQLite the room to purge old events and go on."""
        size = self.RESERVE_BYTES if size is None else size
        try:
            if self.reserve_path.exists() and self.reserve_path.stat().st_size >= size:
                return True
            with open(self.reserve_path, "wb") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
            return True
        except OSError:
            self.reserve_path.unlink(missing_ok=True)
            return False

    def make_room(self, batch: int = 500) -> int:
        """The disk is full: free the reserve, then delete the oldest events that
        central already has. Returns how many events were purged."""
        self.reserve_path.unlink(missing_ok=True)
        # A short WAL from here on: at the usual 256 pages the log alone would take
        # a megabyte of the reserve before a checkpoint could give any of it back.
        self.conn.execute(f"PRAGMA wal_autocheckpoint={self.FULL_DISK_WAL_PAGES}")
        purged = 0
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass
        try:
            with self.write() as c:
                rows = [
                    r[0]
                    for r in c.execute(
                        "SELECT e.seq FROM events e JOIN outbox o ON o.seq = e.seq WHERE o.state = 'sent'"
                        " ORDER BY e.seq LIMIT ?",
                        (batch,),
                    )
                ]
                c.executemany("DELETE FROM outbox WHERE seq = ?", [(r,) for r in rows])
                c.executemany("DELETE FROM events WHERE seq = ?", [(r,) for r in rows])
                purged = len(rows)
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:
            pass
        return purged

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Several reads that must see one state of the store: a snapshot swapped in
        between them would mix the old card bindings with the new passes."""
        if self.conn.in_transaction:  # already inside one (a write): it is consistent
            yield self.conn
            return
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL): keep the real error.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------ passes

    def upsert_passes(self, rows: list[dict[str, Any]], cards: dict[str, str] | None = None) -> int:
        """Insert or replace pass rows (times as datetimes) and their card bindings, atomically."""
        with self.write() as c:
            self._upsert_rows(c, rows, time.time())
            self._bind(c, list((cards or {}).items()))
        return len(rows)

    @staticmethod
    def _bind(c: sqlite3.Connection, pairs: list[tuple[str, str | None]]) -> None:
        """Bind each card number to its pass (a card has one pass; a pass may have
        several cards). A pass id of None unbinds the card."""
        c.executemany("DELETE FROM card_bindings WHERE number = ?", [(n,) for n, p in pairs if not p])
        c.executemany(
            "INSERT INTO card_bindings(number, pass_id) VALUES (?, ?) "
            "ON CONFLICT(number) DO UPDATE SET pass_id = excluded.pass_id",
            [(n, p) for n, p in pairs if p],
        )

    def get_pass(self, pass_id: str) -> PassRecord | None:
        row = self.conn.execute(
            "SELECT id, category, holder, unit, phone_last4, valid_from, valid_until, observation_until,"
            " pcr_at, health_code, revoked, attributes FROM passes WHERE id = ?",
            (pass_id,),
        ).fetchone()
        if row is None:
            return self._tombstoned(pass_id)
        return PassRecord(
            id=row[0],
            category=row[1],
            holder=row[2],
            unit=row[3],
            phone_last4=row[4],
            valid_from=from_ts(row[5]),
            valid_until=from_ts(row[6]),
            observation_until=from_ts(row[7]),
            pcr_at=from_ts(row[8]),
            health_code=row[9],
            revoked=bool(row[10]),
            listed=True,
            attributes=json.loads(row[11]) if row[11] else None,
        )

    def card_pass(self, number: str) -> str | None:
        row = self.conn.execute("SELECT pass_id FROM card_bindings WHERE number = ?", (number,)).fetchone()
        return row[0] if row else None

    def has_card(self, pass_id: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM card_bindings WHERE pass_id = ? LIMIT 1", (pass_id,)
        ).fetchone() is not None

    def pass_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM passes").fetchone()[0]

    # ------------------------------------------------------------ inside

    def last_event_time(self) -> datetime | None:
        row = self.conn.execute("SELECT max(ts) FROM events").fetchone()
        return from_ts(row[0]) if row and row[0] is not None else None

    def inside_since(self, pass_id: str) -> datetime | None:
        row = self.conn.execute("SELECT since FROM inside WHERE pass_id = ?", (pass_id,)).fetchone()
        return from_ts(row[0]) if row else None

    def fever_held_since(self, pass_id: str) -> datetime | None:
        """When the pass was refused for a fever the guard has not acknowledged yet."""
        row = self.conn.execute("SELECT since FROM fever_holds WHERE pass_id = ?", (pass_id,)).fetchone()
        return from_ts(row[0]) if row else None

    # ------------------------------------------------------------ sync

    def passes_version(self) -> int:
        v = self.get_meta("passes_version")
        return int(v) if v else 0

    def _upsert_rows(self, c: sqlite3.Connection, rows: list[dict[str, Any]], now: float) -> None:
        c.executemany(
            "INSERT INTO passes(id, holder, unit, category, phone_last4, valid_from, valid_until, observation_until,"
            " pcr_at, health_code, revoked, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET holder=excluded.holder, unit=excluded.unit, category=excluded.category,"
            " phone_last4=excluded.phone_last4, valid_from=excluded.valid_from, valid_until=excluded.valid_until,"
            " observation_until=excluded.observation_until, pcr_at=excluded.pcr_at, health_code=excluded.health_code,"
            " revoked=excluded.revoked, updated_at=excluded.updated_at",
            [_pass_tuple(r, now)[:12] for r in rows],  # attributes: below
        )
        # A row that says its attributes (central's whole record says them, or none) sets
        # them; one without the key (a visitor pass made here) leaves them as they are.
        with_attributes = [(attributes_text(r["attributes"]), r["id"]) for r in rows if "attributes" in r]
        if with_attributes:
            c.executemany("UPDATE passes SET attributes = ? WHERE id = ?", with_attributes)
        # Central issued the pass (again): it is no longer removed, nor are the old cards its.
        self.lift_tombstones(c, [r["id"] for r in rows])

    def _set_meta(self, c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def apply_pass_changes(
        self, upserts: list[dict[str, Any]], cards: dict[str, str | None], deletes: list[str | Tombstone], to_version: int
    ) -> None:
        """One batch from central, in one transaction with its new version.

        cards maps a pass id to its card number (None: no card any more). Each delete
        leaves a tombstone (a bare id: its category from the table, kept for good)."""
        now = time.time()
        with self.write() as c:
            self._upsert_rows(c, upserts, now)
            for pass_id, number in cards.items():
                c.execute("DELETE FROM card_bindings WHERE pass_id = ?", (pass_id,))
                if number:
                    self._bind(c, [(number, pass_id)])
            if deletes:
                self.write_tombstones(c, [d if isinstance(d, Tombstone) else Tombstone(d) for d in deletes])
            self._set_meta(c, "passes_version", str(to_version))
            self._set_meta(c, "passes_synced_at", str(now))

    def use_nonce(self, nonce: str, expires: float) -> bool:
        """Remember a command nonce; False if it was seen before (a replay)."""
        now = time.time()
        with self.write() as c:
            c.execute("DELETE FROM nonces WHERE expires < ?", (now - 86400,))
            cur = c.execute("INSERT OR IGNORE INTO nonces(nonce, expires) VALUES (?, ?)", (nonce, expires))
            return cur.rowcount == 1

    def outbox_depth(self) -> int:
        # 'pending' (the only other state) is answered from the (state, seq) index;
        # != 'sent' would scan every delivered row kept until the retention purge.
        return self.conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

    def enqueue(self, topic: str, payload: dict[str, Any]) -> None:
        """Something other than an event that must reach central (a daily report)."""
        with self.write() as c:
            seq = self._next_seq_outbox(c)
            c.execute(
                "INSERT INTO outbox(seq, event_id, payload, state, created, topic) VALUES (?,?,?,'pending',?,?)",
                (seq, str(payload.get("id") or f"{topic}:{seq}"), json.dumps(payload, ensure_ascii=False, separators=(",", ":")), time.time(), topic),
            )

    def _next_seq_outbox(self, c: sqlite3.Connection) -> int:
        # Outbox rows that are not events take numbers far above event seqs' range
        # so events keep their gapless seq. (Reports are few: one a day.)
        row = c.execute("SELECT max(seq) FROM outbox WHERE seq >= ?", (_OTHER_BASE,)).fetchone()
        return (row[0] or _OTHER_BASE) + 1

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, str]) -> None:
        """Several keys in one transaction: they change together or not at all."""
        with self.write() as c:
            for key, value in values.items():
                self._set_meta(c, key, value)
