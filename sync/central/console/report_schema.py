"""The tables and indexes of the console's reports and policy pages, made with central's
schema (sync/central/console/schema.py adds them; the same SQL on SQLite and PostgreSQL).

- ``events_gate_ts``: a gate's events by their own time (a day is a range of ``ts``, the
  gate's local time with its offset, so a day's first ten characters are its date): the
  events central holds from a gate that sent no report, the range export, the replay.
  On PostgreSQL in byte order (``COLLATE "C"``), like the search indexes, so a day is one
  range whatever the database's locale; the queries say the same collation.
- ``reports_date``: the site's reports of a day or a month.
- ``console_cards``: every card number central has seen in a decision, when and where it
  was first seen (kept up to date from the events as they arrive: report_data.py).
- ``console_policy_log``: who published each policy from the console, with their note
  and the document as they wrote it.
"""
from __future__ import annotations


def collate(pg: bool) -> str:
    return ' COLLATE "C"' if pg else ""


def schema(pg: bool) -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS events_gate_ts ON events (gate, ts{collate(pg)})",
        "CREATE INDEX IF NOT EXISTS reports_date ON reports (date)",
        "CREATE TABLE IF NOT EXISTS console_cards (card TEXT PRIMARY KEY, first_at DOUBLE PRECISION NOT NULL,"
        " gate TEXT NOT NULL, day TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS console_cards_day ON console_cards (day)",
        "CREATE TABLE IF NOT EXISTS console_policy_log (version BIGINT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,"
        " who TEXT NOT NULL, note TEXT NOT NULL, document TEXT NOT NULL)",
    ]
