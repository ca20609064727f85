"""Erasing a pass from the gate's store (a resident's request): one function both
`gate privacy erase` (gate/desk/privacy.py) and central's signed `erase` command
(sync/downstream.py) run, so the two erase exactly the same. It lives in the store
because sync may use the store, not the desk (.importlinter).

What goes: the pass row and its card bindings, the cards' history, whether it is
inside, its last movement and fever hold, its dynamic-pass steps; its events stay
(the daily report counts them) with no pass id, card, name, unit or ID/phone digits
left in them, and so do their outbox rows (delivered or not). The id stays as a
tombstone (no personal data) until the pass would have expired: its signed QR is
refused `revoked`, never admitted as unlisted. Running it again changes nothing.
"""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from gate.core.records import AdminRecord
from gate.store.tombstones import Tombstone

if TYPE_CHECKING:
    from gate.store.database import Store

# The fields of an event (as it goes upstream) that name or describe a person. Central
# scrubs the same ones (sync/central/privacy.py).
PERSONAL_FIELDS = ("pass", "card", "holder", "unit", "id_last4", "phone_last4")


def scrub(body: dict) -> dict:
    """An event body with its personal fields emptied (the rest kept for the counts),
    and without its situation (the policy's inputs a decision goes upstream with: the
    pass's validity, health code, attributes), which the gate drops too (events.situation):
    an erased pass's decisions are no longer replayable, here or at central."""
    return {k: (None if k in PERSONAL_FIELDS else v) for k, v in body.items() if k != "situation"}


def erasure_record(at: datetime, erasure: str, who: str) -> AdminRecord:
    """The `privacy_erase` admin event of an erasure central asked for: it names the
    erasure (central's id), never the pass, and is central's acknowledgement."""
    return AdminRecord(at=at, lane="", action="privacy_erase", who=who, reason="erasure asked by central",
                       detail=f"erasure={erasure}")


def erase_pass(store: "Store", pass_id: str) -> dict[str, int]:
    """Erase one pass from this store in one transaction; returns what it touched:
    {"passes", "cards", "events"}."""
    with store.write() as c:
        done = erase_in(store, c, pass_id)
    refresh_snapshot(store)
    return done


def refresh_snapshot(store: "Store") -> None:
    """After an erasure: the hourly pass snapshot beside the store (the copy a corrupt
    store is rebuilt from) still holds the pass; it is written again now."""
    from gate.store.integrity import pass_table_signature, save_snapshot, snapshot_path

    if snapshot_path(store.path).exists():
        save_snapshot(store.conn, store.path)
        store.set_meta("pass_snapshot_signature", pass_table_signature(store.conn))


def erase_in(store: "Store", c: sqlite3.Connection, pass_id: str) -> dict[str, int]:
    """The erasure inside a write transaction ``c`` (e.g. ``Store.record(..., also=)``,
    so that the event recording it commits with it)."""
    row = c.execute("SELECT category, valid_until FROM passes WHERE id = ?", (pass_id,)).fetchone()
    cards = {r[0] for r in c.execute("SELECT number FROM card_bindings WHERE pass_id = ?", (pass_id,))}
    # Cards it was seen with, also once central's batch already took the binding away.
    cards |= {r[0] for r in c.execute("SELECT DISTINCT card FROM events WHERE pass_id = ? AND card IS NOT NULL",
                                      (pass_id,))}
    cards_list = sorted(cards)
    n_pass = 1 if row else 0
    if row:
        until = datetime.fromtimestamp(row[1], timezone.utc) if row[1] is not None else None
        store.write_tombstones(c, [Tombstone(pass_id, row[0], until)], keep_cards=False)
    c.execute("DELETE FROM card_bindings WHERE pass_id = ?", (pass_id,))  # also those kept by an earlier removal
    c.executemany("DELETE FROM cards WHERE number = ?", [(n,) for n in cards_list])  # their history too
    for table in ("inside", "last_move", "fever_holds", "dynamic_steps"):
        c.execute(f"DELETE FROM {table} WHERE pass_id = ?", (pass_id,))
    where = "pass_id = ?" + (f" OR card IN ({','.join('?' * len(cards_list))})" if cards_list else "")
    rows = c.execute(f"SELECT seq, body FROM events WHERE {where}", (pass_id, *cards_list)).fetchall()
    for seq, body in rows:
        text = json.dumps(scrub(json.loads(body)), ensure_ascii=False, separators=(",", ":"))
        c.execute("UPDATE events SET pass_id = NULL, card = NULL, situation = NULL, body = ? WHERE seq = ?", (text, seq))
        # delivered rows too: a payload kept after central's receipt is a copy nobody needs
        c.execute("UPDATE outbox SET payload = ? WHERE seq = ? AND topic IS NULL", (text, seq))
    return {"passes": n_pass, "cards": len(cards_list), "events": len(rows)}
