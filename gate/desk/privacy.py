"""Keeping the least personal data: retention, and a resident's export and erasure.

The pass table holds a display name, unit, category, the phone's last four digits
and a card number; never a full ID or phone number. Events name passes by id.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from gate.store.database import Store
from gate.store.erasure import erase_pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    events: int
    visitor_passes: int


def purge(store: Store, *, retention_days: int, now: float | None = None) -> Purged:
    """Delete events older than the retention that central already has, and expired
    visitor passes. Undelivered events are kept whatever their age: nothing is lost."""
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400
    with store.write() as c:
        old = [
            r[0]
            for r in c.execute(
                "SELECT e.seq FROM events e JOIN outbox o ON o.seq = e.seq WHERE e.ts < ? AND o.state = 'sent'",
                (cutoff,),
            )
        ]
        c.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in old])
        c.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in old])
        c.execute("DELETE FROM outbox WHERE state = 'sent' AND topic IS NOT NULL AND created < ?", (cutoff,))
        visitors = [
            r[0]
            for r in c.execute(
                "SELECT id FROM passes WHERE category = 'visitor' AND valid_until IS NOT NULL AND valid_until < ?", (now,)
            )
        ]
        c.executemany("DELETE FROM card_bindings WHERE pass_id = ?", [(v,) for v in visitors])  # history stays
        c.executemany("DELETE FROM inside WHERE pass_id = ?", [(v,) for v in visitors])
        c.executemany("DELETE FROM passes WHERE id = ?", [(v,) for v in visitors])
    if old or visitors:
        log.info("retention: purged %d events and %d expired visitor passes", len(old), len(visitors))
    return Purged(len(old), len(visitors))


def export(store: Store, pass_id: str) -> dict[str, Any]:
    """Everything this gate holds about one pass, for the holder's request."""
    row = store.conn.execute("SELECT * FROM passes WHERE id = ?", (pass_id,)).fetchone()
    cols = [d[0] for d in store.conn.execute("SELECT * FROM passes LIMIT 0").description]
    cards = [
        dict(zip(("number", "first_seen", "last_seen", "swipes"), r))
        for r in store.conn.execute(
            "SELECT b.number, c.first_seen, c.last_seen, coalesce(c.swipes, 0) FROM card_bindings b"
            " LEFT JOIN cards c ON c.number = b.number WHERE b.pass_id = ? ORDER BY b.number",
            (pass_id,),
        )
    ]
    events = [json.loads(r[0]) for r in store.conn.execute("SELECT body FROM events WHERE pass_id = ? ORDER BY seq", (pass_id,))]
    inside = store.conn.execute("SELECT since, lane FROM inside WHERE pass_id = ?", (pass_id,)).fetchone()
    return {
        "pass": dict(zip(cols, row)) if row else None,
        "cards": cards,
        "inside": {"since": inside[0], "lane": inside[1]} if inside else None,
        "events": events,
    }


def erase(store: Store, pass_id: str) -> dict[str, int]:
    """Remove the pass and its cards, and unlink its events (kept as counts for the
    daily reports, with no pass id, card or name left in them). The id stays as a
    tombstone (no personal data) until the pass would have expired: its signed QR
    is refused `revoked`, never admitted as unlisted. The same erasure as central's
    signed `erase` command makes a gate run (gate/store/erasure.py)."""
    return erase_pass(store, pass_id)
