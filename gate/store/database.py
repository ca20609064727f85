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

import fcntl
import json
import logging
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlite_utils import Database

from gate.store.migrations import migrations
from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, LaneRecord, PassRecord
from gate.store.tombstones import Tombstone, TombstonesMixin


def to_ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _pass_tuple(r: dict[str, Any], now: float) -> tuple[Any, ...]:
    """A pass row (times as datetimes) in Store.PASS_COLUMNS order."""
    return (
        r["id"], r.get("holder"), r.get("unit"), r["category"], r.get("phone_last4"),
        to_ts(r.get("valid_from")), to_ts(r.get("valid_until")), to_ts(r.get("observation_until")),
        to_ts(r.get("pcr_at")), r.get("health_code"), 1 if r.get("revoked") else 0, now,
    )


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

log = logging.getLogger(__name__)


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


class Store(TombstonesMixin):
    def __init__(self, path: str | Path, *, gate_id: str = "gate-01", tz: tzinfo = timezone.utc) -> None:
        self.path = Path(path)
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

    # ------------------------------------------------------------ events

    def _next_seq(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        seq = int(row[0]) + 1 if row else 1
        self._set_meta(self.conn, "seq", str(seq))
        return seq

    def record(
        self, rec: LaneRecord, *, direction: str | None = None, also: Any = None
    ) -> StoredEvent:
        """Write one event and its outbox row in one transaction (before the door acts).

        A decision also updates what the gate must remember: who is inside, when a
        card was first seen. ``also(conn)``, if given, runs first in the same
        transaction: the change an event records (a revocation, a roster, a policy)
        and its event commit together or not at all."""
        local = rec.at.astimezone(self.tz)
        ts = rec.at.timestamp()
        with self.write() as c:
            if also is not None:
                also(c)
            seq = self._next_seq()
            event_id = rec.id
            fields = rec.to_json()
            body = {"id": event_id, "seq": seq, "gate": self.gate_id, "ts": rec.at.isoformat(), "clock": rec.clock, **fields}
            if isinstance(rec, DecisionRecord):
                # Events name passes by id only: the holder's name stays in the pass table.
                extra = {"card": rec.card, "challenge_id": rec.challenge_id, "who": rec.who, "policy_version": rec.policy_version,
                         "direction": direction if rec.pass_id and direction in ("in", "out") else None}
                body.update({k: v for k, v in extra.items() if v is not None})
            elif isinstance(rec, AlarmRecord) and rec.kind == "fever" and rec.pass_id:
                body["pass"] = rec.pass_id  # central tells the site's other gates to hold it too
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            situation = getattr(rec, "situation", None)
            c.execute(
                "INSERT INTO events(seq, id, ts, day, hour, type, lane, pass_id, credential, category, decision,"
                " reason, temperature_c, card, kind, action, body, situation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    event_id,
                    ts,
                    local.date().isoformat(),
                    local.hour,
                    rec.type,
                    rec.lane,
                    fields.get("pass"),
                    fields.get("credential"),
                    fields.get("category"),
                    fields.get("decision"),
                    fields.get("reason"),
                    fields.get("temperature_c"),
                    getattr(rec, "card", None),
                    fields.get("kind"),
                    fields.get("action"),
                    payload,
                    json.dumps(situation, ensure_ascii=False) if situation else None,
                ),
            )
            c.execute(
                "INSERT INTO outbox(seq, event_id, payload, state, created) VALUES (?,?,?,'pending',?)",
                (seq, event_id, payload, time.time()),
            )
            if isinstance(rec, DecisionRecord):
                self._after_decision(c, rec, ts, direction)
            elif isinstance(rec, AlarmRecord) and rec.kind == "fever" and rec.pass_id:
                self.note_hold(c, rec.pass_id, rec.id, ts, self.gate_id)
            elif isinstance(rec, AckRecord):
                c.execute("DELETE FROM fever_holds WHERE alarm_id = ?", (rec.alarm_id,))
        return StoredEvent(seq, event_id, body)

    def step_used(self, pass_id: str, step: int) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM dynamic_steps WHERE pass_id = ? AND step = ?", (pass_id, step)
        ).fetchone() is not None

    def _after_decision(self, c: sqlite3.Connection, rec: DecisionRecord, ts: float, direction: str | None) -> None:
        if rec.step is not None and rec.pass_id and rec.decision in ("allow", "challenge"):
            c.execute("INSERT OR IGNORE INTO dynamic_steps(pass_id, step, at) VALUES (?,?,?)", (rec.pass_id, rec.step, ts))
            c.execute("DELETE FROM dynamic_steps WHERE at < ?", (ts - 86400,))
        if rec.card:
            c.execute(
                "INSERT INTO cards(number, first_seen, last_seen, swipes) VALUES (?, ?, ?, 1) "
                "ON CONFLICT(number) DO UPDATE SET first_seen = coalesce(first_seen, excluded.first_seen),"
                " last_seen = excluded.last_seen, swipes = swipes + 1",
                (rec.card, ts, ts),
            )
        if rec.decision == "allow" and rec.pass_id and direction in ("in", "out"):
            self.note_move(c, rec.pass_id, ts, direction, self.gate_id, rec.lane)

    @staticmethod
    def note_move(c: sqlite3.Connection, pass_id: str, ts: float, direction: str, gate: str, where: str,
                  *, news: bool = False) -> bool:
        """Inside a write transaction: a pass went in or out, here (a decision: always
        counts) or at another gate of the site (`news`: `where` is "gate:"; news no newer
        than what is known of the pass, our own echoed back included, changes nothing).
        Returns whether it counted."""
        if news:
            row = c.execute("SELECT at FROM last_move WHERE pass_id = ?", (pass_id,)).fetchone()
            if row is not None and row[0] >= ts:
                return False
        c.execute(
            "INSERT INTO last_move(pass_id, at, direction, gate) VALUES (?,?,?,?) ON CONFLICT(pass_id)"
            " DO UPDATE SET at = excluded.at, direction = excluded.direction, gate = excluded.gate",
            (pass_id, ts, direction, gate),
        )
        if direction == "in":
            c.execute(
                "INSERT INTO inside(pass_id, since, lane) VALUES (?,?,?) "
                "ON CONFLICT(pass_id) DO UPDATE SET since = excluded.since, lane = excluded.lane",
                (pass_id, ts, where),
            )
        else:
            c.execute("DELETE FROM inside WHERE pass_id = ?", (pass_id,))
        return True

    @staticmethod
    def note_hold(c: sqlite3.Connection, pass_id: str, alarm_id: str, ts: float, gate: str) -> None:
        """Inside a write transaction: a pass refused for fever (here or elsewhere) is
        held until that alarm is acknowledged; the newest refusal is the one to clear."""
        c.execute(
            "INSERT INTO fever_holds(pass_id, alarm_id, since, gate) VALUES (?,?,?,?) ON CONFLICT(pass_id)"
            " DO UPDATE SET alarm_id = excluded.alarm_id, since = excluded.since, gate = excluded.gate"
            " WHERE excluded.since >= fever_holds.since",
            (pass_id, alarm_id, ts, gate),
        )

    def events(self, *, day: str | None = None, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT body FROM events WHERE seq > ?"
        args: list[Any] = [since_seq]
        if day:
            sql += " AND day = ?"
            args.append(day)
        sql += " ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

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
            [_pass_tuple(r, now) for r in rows],
        )
        with_attributes = [
            (a if isinstance(a, str) else json.dumps(a, ensure_ascii=False, sort_keys=True), r["id"])
            for r in rows if (a := r.get("attributes"))
        ]
        if with_attributes:
            c.executemany("UPDATE passes SET attributes = ? WHERE id = ?", with_attributes)
        # Central issued the pass (again): it is no longer removed.
        c.executemany("DELETE FROM tombstones WHERE pass_id = ?", [(r["id"],) for r in rows])

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

    PASS_COLUMNS = (
        "id", "holder", "unit", "category", "phone_last4", "valid_from", "valid_until",
        "observation_until", "pcr_at", "health_code", "revoked", "updated_at",
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
        cols = ", ".join(self.PASS_COLUMNS)
        now = time.time()
        marks = ", ".join("?" * len(self.PASS_COLUMNS))
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
