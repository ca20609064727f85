"""A roster file (gate.desk.roster format: CSV or XLSX, Chinese or English headers)
against central's roster: the plan of what importing it changes (``plan_import``: new,
changed field by field, removed with ``replace``, unchanged, cards that would collide),
and the import itself as changes (``import_roster``, ``gate central passes import``; the
console applies the same plan). The rules are the desk's (`gate passes import`): a pass
revoked at central stays revoked, a column the file lacks leaves that field as it is,
and with a card column each listed pass's card is exactly the file's. The columns
CENTRAL.toml's ``[roster] attributes`` names become each pass's attributes (the rules
read them, at every gate and on the console's map); a file without any of those columns
leaves the attributes as they are, one with them makes them exactly the file's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gate.core import attributes as pass_attributes
from sync.central.store import CentralStore, RosterError
from sync.central.wire import wire_pass, wire_text

# The wire fields a roster sets, in the order the diff shows them.
FIELDS = ("holder", "unit", "category", "phone_last4", "card", "valid_from", "valid_until", "observation_until",
          "pcr_at", "health_code", "attributes")
_CHUNK = 900  # ids a query (SQLite's default limit is 999 parameters)


@dataclass
class Plan:
    """What importing a roster would change; ``changes`` is what ``store.apply`` takes."""

    new: list[tuple[str, int]] = field(default_factory=list)  # (pass id, row number)
    changed: list[tuple[str, int, list[tuple[str, Any, Any]]]] = field(default_factory=list)  # (id, row, [(field, old, new)])
    removed: list[str] = field(default_factory=list)  # with replace: passes the file does not list
    unchanged: int = 0
    not_in_file: int = 0  # passes the file does not list (removed with replace, else left alone)
    revoked_kept: int = 0  # listed passes revoked at central: they stay revoked
    conflicts: list[tuple[int, str]] = field(default_factory=list)  # (row number, why): bad rows found against the roster
    version: int = 0  # central's roster version the plan was made against
    rows: int = 0
    changes: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "removed": len(self.removed),
                "unchanged": self.unchanged, "rows": self.rows}

    def summary(self) -> str:
        return f"{len(self.new)} new, {len(self.changed)} changed, {len(self.removed)} removed, {self.unchanged} unchanged"


def read(path: Path, *, tz: str = "Asia/Shanghai", attributes: dict[str, str] | None = None,
         progress: Callable[[int, int], None] | None = None) -> Any:
    """The roster file, read and checked row by row (gate.desk.roster.read_roster), the
    columns ``attributes`` names (CENTRAL.toml [roster] attributes: header -> attribute
    name) kept as the pass's attributes; RosterError names every bad row by its
    spreadsheet row number (an attribute out of bounds too: too long, say)."""
    from gate.desk.roster import RosterError as FileError, read_roster

    try:
        return read_roster(Path(path), tz=tz, attributes=attributes, progress=progress)
    except FileError as exc:
        raise RosterError(str(exc)) from None


def _current(db: Any, ids: list[str], progress: Callable[[int, int], None] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), _CHUNK):
        part = ids[i : i + _CHUNK]
        q = "SELECT id, wire FROM passes WHERE id IN (" + ",".join("?" * len(part)) + ")"
        out.update({r[0]: json.loads(r[1]) for r in db.all(q, part)})
        if progress is not None and (i // _CHUNK) % 10 == 0:
            progress(min(i + _CHUNK, len(ids)), len(ids))
    return out


def _shown(f: str, v: Any) -> Any:
    """A field's value as the diff shows it (attributes as their JSON text)."""
    return pass_attributes.text(v) if f == "attributes" else v


def plan_import(store: CentralStore, roster: Any, *, replace: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Plan:
    """What importing ``roster`` (a gate.desk.roster.Roster) would change in central's roster."""
    db = store.db
    with db.tx(write=False):
        plan = Plan(version=store.passes_version, rows=len(roster.rows))
        ids = [r["id"] for r in roster.rows]
        current = _current(db, ids, progress)
        total = store.pass_count()
        listed = set(ids)
        plan.not_in_file = total - len(current)
        if replace and plan.not_in_file:
            plan.removed = sorted(r[0] for r in db.all("SELECT id FROM passes") if r[0] not in listed)
        owners: dict[str, str] = {}
        cards = list(roster.cards)
        if "card" in roster.columns and cards:
            for i in range(0, len(cards), _CHUNK):
                part = cards[i : i + _CHUNK]
                q = "SELECT card, id FROM passes WHERE card IN (" + ",".join("?" * len(part)) + ")"
                owners.update({r[0]: r[1] for r in db.all(q, part)})
    bind = {pid: card for card, pid in roster.cards.items()}
    for r in roster.rows:
        pid = r["id"]
        rowno = roster.rownos.get(pid, 0)
        r = dict(r)
        r["card"] = bind.get(pid)
        try:
            wire = wire_pass(r)
        except ValueError as exc:
            plan.conflicts.append((rowno, str(exc)))
            continue
        old = current.get(pid)
        if old is not None:
            # a column the file lacks leaves that field as it is; a revocation made at central stays
            for f in FIELDS:
                if f in roster.columns:
                    continue
                if old.get(f) is not None:
                    wire[f] = old[f]
                else:
                    wire.pop(f, None)
            wire["revoked"] = bool(old.get("revoked"))
            plan.revoked_kept += wire["revoked"]
        card = wire.get("card")
        owner = owners.get(card) if card else None
        if owner is not None and owner != pid:  # central keeps cards unique, and moves none in one import
            plan.conflicts.append((rowno, f"card {card} is already bound to pass {owner}: unbind it there first"))
            continue
        if old is None:
            plan.new.append((pid, rowno))
        elif wire_text(old) == wire_text(wire):
            plan.unchanged += 1
            continue
        else:
            diffs = [(f, _shown(f, old.get(f)), _shown(f, wire.get(f))) for f in FIELDS if old.get(f) != wire.get(f)]
            plan.changed.append((pid, rowno, diffs))
        plan.changes.append(("upsert", pid, wire))
    plan.conflicts.sort()
    plan.changes += [("delete", pid, None) for pid in plan.removed]
    if progress is not None:
        progress(len(ids), len(ids))
    return plan


def import_roster(store: CentralStore, path: Path, *, tz: str = "Asia/Shanghai", replace: bool = False,
                  attributes: dict[str, str] | None = None) -> tuple[int, int]:
    """A roster file into the roster: changed rows become changes (an attribute changed
    alone too); with replace, passes missing from the file are deleted. All or nothing."""
    plan = plan_import(store, read(path, tz=tz, attributes=attributes), replace=replace)
    if plan.conflicts:
        raise RosterError("nothing imported; fix these rows:\n  " + "\n  ".join(
            f"{Path(path)}: row {n}: {why}" for n, why in plan.conflicts[:20]))
    return store.apply(plan.changes)
