"""End-to-end receipts: an event counts as delivered when central has stored it,
not when a broker accepted it.

A broker's PUBACK says nothing about central: mosquitto acks with 16 "no matching
subscribers" when central's shared subscription is gone (a broker restart while
central was offline), a rogue member of a shared subscription swallows its share,
a bridge or a broker without persistence loses what it queued. So central, after
the transaction that stored a batch has committed, publishes to each gate it heard
from a receipt signed with its key (``{prefix}/{gate}/receipt``, retained):

    {"type": "receipt", "gate": "east-1", "upto": 1200, "upto_id": "<id of seq 1200>",
     "ranges": [[1305, 1320]], "missing": [[1201, 1304]], "ts": ..., "kid": ..., "sig": ...}

* ``upto``: every seq 1..upto of this gate is stored (the gate checks ``upto_id``
  against its own event of that seq, so a gate whose store was replaced, whose seqs
  start again at 1, is not told that its new events are stored);
* ``ranges``: seqs stored by the batch just committed, above ``upto`` (so a gate
  drains even past a seq central will never see, e.g. one purged at the gate);
* ``missing``: holes between ``upto`` and the highest seq stored: central asks for
  them, and asks again every few seconds while they stay open.

The gate (sync/outbox.py) keeps a row pending until a receipt covers it and sends
again what no receipt covered within its timeout; central stores by id, so the
copies cost nothing. This module is the contract both ends share (the receipt, its
ranges, the gate's check and marking); central's book of marks and holes is
sync/central/receipts.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from sync import codec

MAX_RANGES = 256


@dataclass(frozen=True)
class Receipt:
    gate: str
    upto: int
    upto_id: str | None
    ranges: tuple[tuple[int, int], ...] = ()
    missing: tuple[tuple[int, int], ...] = ()


def compress(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct seqs as closed ranges: 1,2,3,7 -> (1,3),(7,7)."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def read(raw: bytes, keyring: Any, gate: str) -> Receipt:
    """A receipt payload, signature checked. Raises codec.PayloadError."""
    obj = codec.decode(raw, "receipt", keyring)
    if obj["gate"] != gate:
        raise codec.PayloadError("schema", f"receipt for gate {obj['gate']!r}")
    return Receipt(
        obj["gate"], obj["upto"], obj.get("upto_id"),
        tuple((a, b) for a, b in obj.get("ranges", []) if a <= b),
        tuple((a, b) for a, b in obj.get("missing", []) if a <= b),
    )


class _Conn(Protocol):
    def execute(self, sql: str, args: Any = ...) -> Any: ...


def apply(c: _Conn, r: Receipt, now: float) -> tuple[int, bool]:
    """Inside the gate's write transaction: mark the event rows the receipt covers
    as delivered. Returns (rows marked, whether ``upto`` was trusted)."""
    marked = 0
    trusted = False
    if r.upto > 0:
        row = c.execute("SELECT event_id FROM outbox WHERE seq = ? AND topic IS NULL", (r.upto,)).fetchone()
        # No row: purged here after an earlier receipt. Another id: not our event.
        trusted = row is None or row[0] == r.upto_id
        if trusted:
            marked += c.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ? WHERE state = 'pending' AND topic IS NULL AND seq <= ?",
                (now, r.upto),
            ).rowcount
    for a, b in r.ranges:
        marked += c.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ? WHERE state = 'pending' AND topic IS NULL AND seq BETWEEN ? AND ?",
            (now, a, b),
        ).rowcount
    return marked, trusted
