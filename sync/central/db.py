"""Central's database: one connection, SQLite or PostgreSQL running the same SQL
(``?`` placeholders are rewritten for psycopg), and the schema."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from gate.config import ConfigError
from sync.central import presence_relay, privacy, quarantine, tombstones, visitors
from sync.central.config import is_dsn
from sync.central.console import schema as console_schema
from sync.central.console import seen as console_seen


_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, gate TEXT NOT NULL, seq BIGINT NOT NULL,"
    " ts TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_gate_seq ON events (gate, seq)",
    "CREATE INDEX IF NOT EXISTS events_received ON events (received)",  # retention (sync/central/privacy.py)
    "CREATE TABLE IF NOT EXISTS status (gate TEXT PRIMARY KEY, online INTEGER NOT NULL, ts TEXT NOT NULL,"
    " body TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS reports (gate TEXT NOT NULL, date TEXT NOT NULL, body TEXT NOT NULL,"
    " received DOUBLE PRECISION NOT NULL, PRIMARY KEY (gate, date))",
    "CREATE TABLE IF NOT EXISTS passes (id TEXT PRIMARY KEY, category TEXT NOT NULL, holder TEXT, unit TEXT,"
    " card TEXT, revoked INTEGER NOT NULL, version BIGINT NOT NULL, wire TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS passes_card ON passes (card)",
    "CREATE TABLE IF NOT EXISTS changes (version BIGINT PRIMARY KEY, pass_id TEXT NOT NULL, op TEXT NOT NULL,"
    " change TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS policies (version BIGINT PRIMARY KEY, payload TEXT NOT NULL,"
    " ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS commands (nonce TEXT PRIMARY KEY, gate TEXT NOT NULL, cmd TEXT NOT NULL,"
    " payload TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('passes_version', '0') ON CONFLICT (key) DO NOTHING",
    "INSERT INTO meta (key, value) VALUES ('published_version', '0') ON CONFLICT (key) DO NOTHING",
]
# Columns added to a table after it was first made: (table, column, type), added by
# create_schema where missing (ALTER TABLE ... ADD COLUMN, the same SQL on both databases;
# neither has to rewrite the table for a nullable column).
_COLUMNS = [
    # a pass's roster attributes (canonical JSON, or NULL), as in its wire record: what the
    # community map's rules read (sync/central/console/community.py)
    ("passes", "attributes", "TEXT"),
]


class DB:
    """One connection (use it from one thread). SQLite or PostgreSQL, same SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = is_dsn(url)
        if self.pg:
            try:
                import psycopg
            except ImportError:
                raise ConfigError("a postgresql:// database needs psycopg: pip install 'psycopg[binary]'") from None
            self.conn: Any = psycopg.connect(url, autocommit=True)
        else:
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=60.0, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # an acked event must survive a power cut
        self._in_tx = False
        self.tx_serial = 0

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.pg else sql

    def execute(self, sql: str, args: Iterable[Any] = ()) -> Any:
        return self.conn.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        if self.pg:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        else:
            self.conn.executemany(sql, rows)

    def one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        row = self.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        return list(self.execute(sql, args).fetchall())

    @contextmanager
    def tx(self, write: bool = True) -> Iterator["DB"]:
        """A transaction: SQLite takes the write lock at once (BEGIN IMMEDIATE) for writes;
        PostgreSQL reads use REPEATABLE READ so a snapshot sees one version. Inside
        another transaction it joins that one (an erasure deletes a pass with the roster's
        own apply() inside its transaction). tx_serial counts transactions begun."""
        if self._in_tx:
            yield self
            return
        self.tx_serial += 1
        if self.pg:
            self.conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ")
        else:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._in_tx = False
            try:
                self.conn.execute("ROLLBACK")
            except Exception:  # the connection may be gone; the caller sees the first error
                pass
            raise
        self._in_tx = False
        self.conn.execute("COMMIT")

    def create_schema(self) -> None:
        with self.tx():
            if self.pg:
                self.execute("SELECT pg_advisory_xact_lock(7245001)")  # two instances starting at once
            for stmt in (_SCHEMA + quarantine.schema(self.pg) + tombstones.SCHEMA + presence_relay.SCHEMA + privacy.SCHEMA
                         + visitors.SCHEMA + console_schema.schema(self.pg)  # the office console's (sync/central/console/)
                         + console_seen.SCHEMA):  # the community map's aggregate (sync/central/console/seen.py)
                self.execute(stmt)
            for table, column, kind in _COLUMNS:
                if column not in self.columns(table):
                    self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def columns(self, table: str) -> set[str]:
        """The names of a table's columns."""
        if self.pg:
            return {r[0] for r in self.all("SELECT column_name FROM information_schema.columns"
                                            " WHERE table_schema = current_schema() AND table_name = ?", (table,))}
        return {r[1] for r in self.all(f"PRAGMA table_info({table})")}

    def lock_roster(self) -> int:
        """Inside a write tx: the current pass-table version, locked until commit."""
        sql = "SELECT value FROM meta WHERE key = 'passes_version'"
        row = self.one(sql + (" FOR UPDATE" if self.pg else ""))
        return int(row[0])

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass
