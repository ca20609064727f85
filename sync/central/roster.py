"""A CSV roster (gate.desk.roster format) imported into central's roster as changes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sync.central.store import CentralStore, RosterError
from sync.central.wire import wire_text, wire_pass


def import_roster(store: CentralStore, path: Path, *, tz: str = "Asia/Shanghai", replace: bool = False) -> tuple[int, int]:
    """A CSV roster (gate.desk.roster format) into the roster: changed rows become changes;
    with replace, passes missing from the file are deleted. All or nothing."""
    from gate.desk.roster import RosterError as CsvError, read_roster

    try:
        roster = read_roster(path, tz=tz)
    except CsvError as exc:
        raise RosterError(str(exc)) from None
    bind = {pid: card for card, pid in roster.cards.items()}
    wires = []
    for r in roster.rows:
        r = dict(r)
        r["card"] = bind.get(r["id"])
        wires.append(wire_pass(r))
    current = {row[0]: row[1] for row in store.db.all("SELECT id, wire FROM passes")}
    changes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("upsert", w["id"], w) for w in wires if current.get(w["id"]) != wire_text(w)
    ]
    if replace:
        keep = {w["id"] for w in wires}
        changes += [("delete", pid, None) for pid in sorted(current) if pid not in keep]
    return store.apply(changes)
