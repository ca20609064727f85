"""Presence across the site, central's side: every stored event that tells where a
pass went (an allowed entry or exit) or that it is held for a fever (a fever alarm,
its acknowledgement) becomes an item of central's presence log, which central
publishes signed to every gate and replays to a gate that missed some.

The log keeps the latest item per pass and kind (a newer movement replaces the
older one), so a replay from any point is at most one item per pass: a gate that
was cut off for a week catches up with who is inside now, not with the week.
Presence comes only from central: gates may not publish it (docs/mosquitto.acl),
and it is signed with central's key like a pass batch.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from sync import codec

log = logging.getLogger("sync.presence")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS presence_items (key TEXT PRIMARY KEY, seq BIGINT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS presence_items_seq ON presence_items (seq)",
    "INSERT INTO meta (key, value) VALUES ('presence_seq', '0') ON CONFLICT (key) DO NOTHING",
    "INSERT INTO meta (key, value) VALUES ('presence_published', '0') ON CONFLICT (key) DO NOTHING",
]
CHUNK = 1000  # items a message: well inside the schema's 5,000 and a broker's message size


def items_of(ev: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(log key, item) for what an event tells the site, if anything."""
    kind = ev.get("type")
    if kind == "decision" and ev.get("decision") == "allow" and ev.get("pass") and ev.get("direction") in ("in", "out"):
        return [(f"move:{ev['pass']}", {"kind": "move", "pass": ev["pass"], "direction": ev["direction"],
                                        "at": ev["ts"], "gate": ev["gate"]})]
    if kind == "alarm" and ev.get("kind") == "fever" and ev.get("pass"):
        return [(f"hold:{ev['pass']}", {"kind": "hold", "pass": ev["pass"], "alarm_id": ev["id"], "at": ev["ts"],
                                        "gate": ev["gate"]})]
    if kind == "ack" and ev.get("alarm_id"):
        return [(f"release:{ev['alarm_id']}", {"kind": "release", "alarm_id": ev["alarm_id"], "gate": ev["gate"]})]
    return []


def record(db: Any, ev: dict[str, Any]) -> int:
    """Inside the transaction that stored the event: log what it tells the site.
    Returns how many items were logged."""
    return record_many(db, [ev])


def record_many(db: Any, events: list[dict[str, Any]]) -> int:
    """Inside the transaction that stored the events: log what they tell the site, in
    their order, in two statements whatever their number. Returns how many items were
    logged (each takes a seq, as one record() after another would)."""
    found = [kv for ev in events for kv in items_of(ev)]
    if not found:
        return 0
    # The row lock on the counter orders two central instances' writers: held from here
    # to the commit, so the seqs of committed items have no uncommitted ones below them.
    last = int(db.one("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + ? AS TEXT)"
                      " WHERE key = 'presence_seq' RETURNING value", (len(found),))[0])
    rows: dict[str, tuple[str, int, str]] = {}
    for seq, (key, item) in enumerate(found, start=last - len(found) + 1):
        # A later item of the same pass and kind replaces an earlier one, as its upsert would.
        rows[key] = (key, seq, json.dumps({**item, "seq": seq}, ensure_ascii=False, separators=(",", ":")))
    upsert = " ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, body = excluded.body"
    if getattr(db, "pg", False):  # one statement, the columns as binary arrays (sync/central/store.py insert_events)
        db.execute("INSERT INTO presence_items (key, seq, body) SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[])"
                   + upsert, [list(col) for col in zip(*rows.values())])
    else:
        db.executemany("INSERT INTO presence_items (key, seq, body) VALUES (?,?,?)" + upsert, list(rows.values()))
    return len(found)


def _message(key: Any, by: str, items: list[dict[str, Any]], seq_from: int, seq_to: int, **extra: Any) -> dict[str, Any]:
    body = {"type": "presence", "seq_from": seq_from, "seq_to": seq_to, "items": items,
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": by, **extra}
    return codec.sign(body, key)


def items_after(store: Any, after: int, limit: int = CHUNK) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in store.db.all(
        "SELECT body FROM presence_items WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))]


class Relay:
    """Publishes the log as it grows, a retained head as a heartbeat, and replays."""

    def __init__(self, key: Any, by: str, topics: Any, heartbeat_s: float) -> None:
        self.key = key
        self.by = by
        self.topics = topics
        self.heartbeat_s = heartbeat_s
        self._last_head = 0.0

    def head_seq(self, store: Any) -> int:
        return int(store.get_meta("presence_seq") or 0)

    def publish(self, store: Any, publish_wait: Callable[..., bool]) -> None:
        """New items to every gate (in order), then the head when it moved or is due."""
        published = int(store.get_meta("presence_published") or 0)
        moved = False
        while True:
            items = items_after(store, published)
            if not items:
                break
            seq_to = items[-1]["seq"]
            if not publish_wait(self.topics.presence, _message(self.key, self.by, items, published + 1, seq_to), timeout=10):
                return  # the next pass tries again from the same place
            published = seq_to
            store.set_meta("presence_published", str(published))
            moved = True
        if moved or time.monotonic() - self._last_head >= self.heartbeat_s:
            head = self.head_seq(store)
            msg = _message(self.key, self.by, [], head + 1, head, head=True)
            if publish_wait(self.topics.presence_head, msg, retain=True, timeout=10):
                self._last_head = time.monotonic()

    def replay(self, store: Any, gate: str, start: int, publish_wait: Callable[..., bool]) -> int:
        """What a gate missed from `start` on, to that gate only; returns items sent."""
        after, sent = start - 1, 0
        topic = self.topics.gate(gate).presence_reply
        while True:
            items = items_after(store, after)
            if not items:
                break
            seq_to = items[-1]["seq"]
            if not publish_wait(topic, _message(self.key, self.by, items, after + 1, seq_to, to=gate), timeout=10):
                break
            sent += len(items)
            after = seq_to
        # Then where the log stands, so a gate whose request found nothing new knows it is up to date.
        head = self.head_seq(store)
        publish_wait(topic, _message(self.key, self.by, [], head + 1, head, head=True, to=gate), timeout=10)
        log.info("presence: replayed %d items from %d to gate %s", sent, start, gate)
        return sent
