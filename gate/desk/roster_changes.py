"""A roster against the pass table: what importing it would change (new, updated,
unchanged, revoked here and kept so), and the import itself in one transaction with
an ``admin`` event saying who imported what (`gate passes import`)."""
from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gate.desk.roster import _TIME_FIELDS, FIELDS, Roster, RosterError
from gate.store.tombstones import TombstonesMixin



def _ts(v: datetime | None) -> float | None:
    return None if v is None else v.timestamp()


@dataclass(frozen=True)
class PassChange:
    pass_id: str
    row: int  # row number in the file
    changes: tuple[tuple[str, Any, Any], ...] = ()  # (field, old, new); times as Unix seconds


@dataclass
class RosterDiff:
    """What importing a roster would change in a pass table."""

    new: list[PassChange] = field(default_factory=list)
    updated: list[PassChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    revoked_kept: list[str] = field(default_factory=list)  # passes in the file that stay revoked
    not_in_file: int = 0  # passes in the table the file does not list (left as they are)
    cards_bound: list[tuple[str, str]] = field(default_factory=list)  # (card, pass)
    cards_unbound: list[tuple[str, str]] = field(default_factory=list)  # (card, pass it was bound to)
    writes: list[tuple[Any, ...]] = field(default_factory=list, repr=False)  # pass rows to write

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated or self.cards_bound or self.cards_unbound)

    def key(self) -> tuple[Any, ...]:
        return (
            tuple(c.pass_id for c in self.new), tuple(self.updated), tuple(self.cards_bound), tuple(self.cards_unbound),
        )

    def summary(self) -> str:
        return (
            f"{len(self.new)} new, {len(self.updated)} updated, {len(self.unchanged)} unchanged; "
            f"cards {len(self.cards_bound)} bound, {len(self.cards_unbound)} unbound"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "new": [c.pass_id for c in self.new],
            "updated": [{"id": c.pass_id, "row": c.row, "changes": [{"field": f, "old": o, "new": n} for f, o, n in c.changes]} for c in self.updated],
            "unchanged": len(self.unchanged),
            "revoked_kept": self.revoked_kept,
            "not_in_file": self.not_in_file,
            "cards_bound": [{"card": c, "pass": p} for c, p in self.cards_bound],
            "cards_unbound": [{"card": c, "pass": p} for c, p in self.cards_unbound],
        }


_SELECT = "SELECT id, " + ", ".join(FIELDS) + ", revoked FROM passes"


def diff_roster(conn: Any, roster: Roster) -> RosterDiff:
    """Compare a roster with the pass table behind ``conn`` (None: an empty table)."""
    current: dict[str, tuple[Any, ...]] = {}
    by_pass: dict[str, set[str]] = {}
    card_owner: dict[str, str] = {}
    if conn is not None:
        current = {r[0]: r[1:] for r in conn.execute(_SELECT)}
        # A removed pass's cards (kept under its tombstone, to be refused) belong to nobody here.
        for number, pass_id in conn.execute(
                "SELECT b.number, b.pass_id FROM card_bindings b JOIN passes p ON p.id = b.pass_id"):
            by_pass.setdefault(pass_id, set()).add(number)
            card_owner[number] = pass_id
    d = RosterDiff()
    listed = set()
    now = _time.time()
    for r in roster.rows:
        pid = r["id"]
        listed.add(pid)
        new_vals = tuple(_ts(r[f]) if f in _TIME_FIELDS else r[f] for f in FIELDS)
        old = current.get(pid)
        rowno = roster.rownos.get(pid, 0)
        if old is None:
            d.new.append(PassChange(pid, rowno))
            d.writes.append((pid, *new_vals, 0, now))
            continue
        # A column the file does not have leaves that field as it is.
        merged = tuple(n if f in roster.columns else o for f, n, o in zip(FIELDS, new_vals, old))
        changes = tuple((f, o, n) for f, o, n in zip(FIELDS, old, merged) if o != n)
        if old[-1]:
            d.revoked_kept.append(pid)
        if changes:
            d.updated.append(PassChange(pid, rowno, changes))
            d.writes.append((pid, *merged, old[-1], now))
        else:
            d.unchanged.append(pid)
    if "card" in roster.columns:
        want = {pid: card for card, pid in roster.cards.items()}
        for r in roster.rows:
            pid = r["id"]
            have = by_pass.get(pid, set())
            card = want.get(pid)
            for number in sorted(have - {card}):
                d.cards_unbound.append((number, pid))
            if card is not None and card_owner.get(card) != pid:
                if card in card_owner and card_owner[card] not in listed:
                    d.cards_unbound.append((card, card_owner[card]))  # moves to the pass the file gives it
                d.cards_bound.append((card, pid))
    # A pass whose only change is its card counts as updated too.
    touched = {p for _, p in d.cards_bound} | {p for _, p in d.cards_unbound if p in listed}
    already = {c.pass_id for c in d.new} | {c.pass_id for c in d.updated}
    card_only = touched - already
    if card_only:
        d.unchanged = [pid for pid in d.unchanged if pid not in card_only]
        d.updated.extend(PassChange(pid, roster.rownos.get(pid, 0), ()) for pid in sorted(card_only))
    d.not_in_file = sum(1 for pid in current if pid not in listed)
    return d


def _write(c: Any, d: RosterDiff) -> None:
    cols = ("id", *FIELDS, "revoked", "updated_at")
    sets = ", ".join(f"{f} = excluded.{f}" for f in cols[1:])
    c.executemany(
        f"INSERT INTO passes({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT(id) DO UPDATE SET {sets}",
        d.writes,
    )
    TombstonesMixin.lift_tombstones(c, [w[0] for w in d.writes])  # issued again: the old cards are not theirs
    c.executemany("DELETE FROM card_bindings WHERE number = ? AND pass_id = ?", d.cards_unbound)
    c.executemany(
        "INSERT INTO card_bindings(number, pass_id) VALUES (?, ?)"
        " ON CONFLICT(number) DO UPDATE SET pass_id = excluded.pass_id",
        d.cards_bound,
    )


class _Raced(Exception):
    pass


def apply_roster(store: Any, roster: Roster, *, who: str, source: str) -> RosterDiff:
    """Import a roster into the store: all its changes and an ``admin`` event
    (roster_import: who, which file, the counts) in one transaction. A roster that
    changes nothing writes nothing."""

    from gate.core.records import AdminRecord

    for _ in range(5):
        planned = diff_roster(store.conn, roster)
        if not planned.changed:
            return planned

        def also(c: Any, planned: RosterDiff = planned) -> None:
            now = diff_roster(c, roster)  # under the write lock: what is really there now
            if now.key() != planned.key():
                raise _Raced()
            _write(c, now)

        rec = AdminRecord(
            at=datetime.now(timezone.utc).astimezone(store.tz), lane="", action="roster_import", who=who,
            reason=Path(source).name, detail=planned.summary(),
        )
        try:
            store.record(rec, also=also)
        except _Raced:
            continue
        return planned
    raise RosterError(f"{source}: the pass table kept changing while importing; try again")
