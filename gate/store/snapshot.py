"""The pass-table snapshot: a whole table from central staged beside the live one and
swapped in by renaming, under a staging lock so that one store stages at a time, and
the chunked cleanup of what a swap leaves behind. A part of `Store` (a mixin)."""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
import uuid
from typing import Any, Iterable
from pathlib import Path

from gate.store.rows import _NEW_TABLES, _OLD_TABLES, CLEANUP_CHUNK, StagingBusy, _pass_tuple, to_ts
from gate.store.tombstones import Tombstone

log = logging.getLogger("gate.store.database")


class StoreSnapshots:
    conn: sqlite3.Connection
    path: Path
    _staging_lock: int | None

    PASS_COLUMNS = (
        "id", "holder", "unit", "category", "phone_last4", "valid_from", "valid_until",
        "observation_until", "pcr_at", "health_code", "revoked", "updated_at", "attributes",
    )

    def replace_passes(
        self, rows: list[dict[str, Any]], cards: dict[str, str], version: int, tombstones: Iterable[Tombstone] = ()
    ) -> None:
        """Swap in a whole table (times as datetimes); see replace_pass_rows."""
        now = time.time()
        self.replace_pass_rows([_pass_tuple(r, now) for r in rows], cards, version, tombstones)

    def replace_pass_rows(
        self, rows: list[tuple[Any, ...]], cards: dict[str, str], version: int, tombstones: Iterable[Tombstone] = ()
    ) -> None:
        """Swap in a whole table at once (see snapshot_begin for the staged form)."""
        self.snapshot_begin()
        self.snapshot_add(rows, list(cards.items()), tombstones)
        self.snapshot_commit(version)

    # A snapshot is staged chunk by chunk in short transactions into passes_new and
    # card_bindings_new, so the lanes' decisions never wait behind a million-row insert.
    # The swap renames tables: its write lock is held for milliseconds whatever the
    # size, and the lanes see the old passes and bindings or the new ones, never a mix.
    # The tables swapped out are then emptied in chunks, each its own short transaction:
    # a DROP of a million-row table would hold the lock for as long as writing it did.

    STAGING_WAIT_S = 30.0  # how long snapshot_begin waits for another stager to finish

    def snapshot_begin(self) -> None:
        if not self._hold_staging(wait=self.STAGING_WAIT_S):
            # Never stage beside another stager: clearing its half-built tables (or it
            # ours) would swap a mixed table in.
            raise StagingBusy(f"store {self.path}: another process is staging a pass snapshot; try again later")
        self.clear_snapshot_leftovers(staging=True)
        schema = self.conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'passes'").fetchone()[0]
        # A roomier page cache while a million rows go in (back to the default at the swap).
        self.conn.execute("PRAGMA cache_size=-65536")
        with self.write() as c:
            c.execute(schema.replace("passes", "passes_new", 1).replace('"passes"', '"passes_new"', 1))
            c.execute("CREATE TABLE card_bindings_new (number TEXT PRIMARY KEY, pass_id TEXT NOT NULL) WITHOUT ROWID")
            # Index names are global and an index keeps its name through the swap's
            # rename: a fresh one each time cannot collide with the table in force.
            c.execute(f"CREATE INDEX idx_card_bindings_pass_id_{uuid.uuid4().hex[:12]} ON card_bindings_new (pass_id)")
            c.execute(
                "CREATE TABLE tombstones_new (pass_id TEXT PRIMARY KEY, category TEXT, removed_at REAL NOT NULL, until REAL)"
                " WITHOUT ROWID"
            )

    def snapshot_add(
        self, rows: list[tuple[Any, ...]], cards: list[tuple[str, str]], tombstones: Iterable[Tombstone] = ()
    ) -> None:
        # Rows in PASS_COLUMNS order; a row without the last column (attributes) has none.
        names = self.PASS_COLUMNS[: len(rows[0])] if rows else self.PASS_COLUMNS
        cols = ", ".join(names)
        now = time.time()
        marks = ", ".join("?" * len(names))
        with self.write() as c:
            # Plain INSERT: a snapshot with one id twice is broken, and says so (IntegrityError).
            c.executemany(f"INSERT INTO passes_new ({cols}) VALUES ({marks})", rows)
            # A card listed twice: the later binding wins; one without a pass binds nothing.
            c.executemany(
                "INSERT OR REPLACE INTO card_bindings_new(number, pass_id) VALUES (?, ?)", [(n, p) for n, p in cards if p]
            )
            c.executemany(
                "INSERT OR REPLACE INTO tombstones_new(pass_id, category, removed_at, until) VALUES (?,?,?,?)",
                [(s.pass_id, s.category, now, to_ts(s.until)) for s in tombstones],
            )

    def snapshot_commit(self, version: int) -> None:
        now = time.time()
        try:
            self.clear_snapshot_leftovers()  # a crash's *_old tables: the names the swap needs
            with self.write() as c:
                # Renames only: no row is read or written whatever the sizes, and the
                # card history (cards) is not touched at all.
                c.execute("ALTER TABLE passes RENAME TO passes_old")
                c.execute("ALTER TABLE passes_new RENAME TO passes")
                c.execute("ALTER TABLE card_bindings RENAME TO card_bindings_old")
                c.execute("ALTER TABLE card_bindings_new RENAME TO card_bindings")
                # Tombstones add up: central's join the ones this gate made itself (an
                # erasure here); a pass the new table lists again is no longer removed.
                # Few rows (removed passes), looked up by key: milliseconds.
                c.execute(
                    "INSERT INTO tombstones(pass_id, category, removed_at, until) SELECT pass_id, category,"
                    " removed_at, until FROM tombstones_new WHERE true ON CONFLICT(pass_id) DO UPDATE SET"
                    " category = excluded.category, until = excluded.until"
                )
                c.execute("DELETE FROM tombstones WHERE pass_id IN (SELECT t.pass_id FROM tombstones t JOIN passes p ON p.id = t.pass_id)")
                # A removed pass's cards stay refused `revoked` (central's snapshot binds only
                # the cards of listed passes), unless the new table binds the card to another.
                c.execute(
                    "INSERT OR IGNORE INTO card_bindings(number, pass_id) SELECT b.number, b.pass_id FROM tombstones t"
                    " JOIN card_bindings_old b ON b.pass_id = t.pass_id"
                )
                c.execute("DROP TABLE tombstones_new")
                self._set_meta(c, "passes_version", str(version))
                self._set_meta(c, "passes_synced_at", str(now))
        finally:
            self.conn.execute("PRAGMA cache_size=-2000")
            self._release_staging()
        try:
            self.clear_snapshot_leftovers()
        except sqlite3.OperationalError as exc:
            # The new table is in force; maintenance or the next snapshot clears the old ones.
            log.warning("store %s: old pass tables not cleared yet (%s)", self.path, exc)

    def snapshot_abort(self) -> None:
        try:
            if self._staging_lock is not None:  # only a staging of our own
                self.clear_snapshot_leftovers(staging=True)
        finally:
            self.conn.execute("PRAGMA cache_size=-2000")
            self._release_staging()

    def snapshot_leftovers(self) -> list[str]:
        """The snapshot tables present now (none between snapshots)."""
        names = [t for t, _ in _OLD_TABLES + _NEW_TABLES]
        marks = ",".join("?" * len(names))
        return [
            r[0]
            for r in self.conn.execute(
                f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks}) ORDER BY name", names
            )
        ]

    def clear_snapshot_leftovers(self, *, staging: bool | None = False) -> int:
        """Empty and drop the tables a swap left behind (*_old). staging=True: a staged
        snapshot too (*_new); None: that too if no one is staging one now. Returns
        the rows deleted."""
        present = set(self.snapshot_leftovers())
        if not present:
            return 0
        deleted = self._drop_chunked([t for t in _OLD_TABLES if t[0] in present])
        new = [t for t in _NEW_TABLES if t[0] in present]
        if new and staging:
            deleted += self._drop_chunked(new)
        elif new and staging is None and self._staging_lock is None and self._hold_staging(wait=0):
            # Holding the lock while we clear: a stager starting now waits for us.
            try:
                deleted += self._drop_chunked(new)
            finally:
                self._release_staging()
        return deleted

    def _drop_chunked(self, tables: list[tuple[str, str]]) -> int:
        """Empty each table CLEANUP_CHUNK rows per write transaction, then drop it."""
        deleted = 0
        for table, key in tables:
            while True:
                with self.write() as c:
                    # Looked up under the write lock: another store may have dropped it.
                    if not c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
                        break
                    n = c.execute(
                        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} LIMIT {CLEANUP_CHUNK})"
                    ).rowcount
                    deleted += n
                    if n == 0:
                        c.execute(f"DROP TABLE {table}")  # empty: dropping it frees a page or two
                        break
        return deleted

    # Whether a snapshot is being staged, across threads and processes: the stager
    # holds an flock on a file beside the store (the kernel releases it if the process
    # dies), so a store opening meanwhile leaves the staged tables alone.

    @property
    def staging_lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".staging")

    def _hold_staging(self, wait: float) -> bool:
        """Take the staging lock, trying for up to ``wait`` seconds; True if held."""
        if self._staging_lock is not None:
            return True
        try:
            fd = os.open(self.staging_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._staging_lock = fd
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)

    def _release_staging(self) -> None:
        if self._staging_lock is not None:
            os.close(self._staging_lock)  # closing the file releases the flock
            self._staging_lock = None
