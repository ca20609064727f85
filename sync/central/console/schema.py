"""The console's tables in central's database, made with central's schema
(sync/central/db.py runs these with its own, CREATE ... IF NOT EXISTS, the same SQL on
SQLite and PostgreSQL), and the indexes its pages read by.

- ``console_users``: staff accounts (name, role, werkzeug scrypt hash, disabled).
- ``console_audit``: every change made in the console, with the person's name.
- ``console_gate_state``: since when each gate is in the state the board shows, and the
  last full status it sent (an offline gate's will carries no versions).
- Indexes: the passes by holder, unit, card and id for search (prefix ranges in byte
  order: SQLite's default BINARY collation; on PostgreSQL ``COLLATE "C"``, so a range
  is a prefix whatever the database's locale), and the events by type and time
  received (today's counts and the site's alarms).
"""
from __future__ import annotations

from sync.central.console import report_schema

TABLES = [
    "CREATE TABLE IF NOT EXISTS console_users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,"
    " disabled INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL, changed DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS console_audit (id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, who TEXT NOT NULL,"
    " action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS console_audit_ts ON console_audit (ts)",
    "CREATE INDEX IF NOT EXISTS console_audit_target ON console_audit (target, ts)",
    "CREATE TABLE IF NOT EXISTS console_gate_state (gate TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " since DOUBLE PRECISION NOT NULL, last TEXT)",
    "CREATE INDEX IF NOT EXISTS events_type_received ON events (type, received)",
]

SEARCHED = ("id", "card", "unit", "holder")  # the pass columns search looks in, in this order


def collate(pg: bool) -> str:
    """The byte-order collation as each database spells it (used in the index and the query alike)."""
    return ' COLLATE "C"' if pg else ""


def schema(pg: bool) -> list[str]:
    out = list(TABLES)
    # SQLite: id is the primary key's index and card has passes_card; PostgreSQL's are in
    # the locale's order, where a prefix is not one range, so each gets a "C" twin.
    cols = SEARCHED if pg else ("unit", "holder")
    out += [f"CREATE INDEX IF NOT EXISTS passes_{c}_search ON passes ({c}{collate(pg)})" for c in cols]
    out += report_schema.schema(pg)  # the reports and policy pages' (report_schema.py)
    return out
