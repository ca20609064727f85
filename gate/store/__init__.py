"""The gate's SQLite store: its schema, opening it safely, the pass table, events, the
outbox, tombstones, the time floor, withdrawn keys and the daily report's figures."""
