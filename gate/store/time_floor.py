"""The time floor in the store: saving it, and the operator's reset
(`gate clock floor`, `gate clock floor --reset --by NAME`)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

from gate.core.clock import boot_id
from gate.core.floor import LEGACY_KEY, STATE_KEY, TimeFloor, anchor_from_state, reset_state
from gate.core.records import AdminRecord
from gate.store.database import Store


def stored_state(store: Store) -> dict[str, Any] | None:
    raw = store.get_meta(STATE_KEY)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def load(floor: TimeFloor, store: Store) -> None:
    floor.load(stored_state(store), store.get_meta(LEGACY_KEY))


def saver(open_store: Callable[[], Store]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """save(state) for TimeFloor.checkpoint: writes it unless the stored state is a
    newer generation (a reset from the desk), which it returns instead."""

    def save(state: dict[str, Any]) -> dict[str, Any] | None:
        store = open_store()
        try:
            with store.write() as c:
                row = c.execute("SELECT value FROM meta WHERE key = ?", (STATE_KEY,)).fetchone()
                try:
                    stored = json.loads(row[0]) if row else None
                except ValueError:
                    stored = None
                if isinstance(stored, dict) and int(stored.get("gen") or 0) > int(state.get("gen") or 0):
                    return stored
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (STATE_KEY, json.dumps(state)))
            return None
        finally:
            store.close()

    return save


def describe(store: Store, now: datetime) -> dict[str, Any]:
    """What `gate clock floor` prints: the floor as saved, and the clock against it."""
    st = stored_state(store)
    if st is None:
        legacy = store.get_meta(LEGACY_KEY)
        return {"floor": legacy, "source": "central (legacy)" if legacy else None, "clock": now.isoformat()}
    anchor = anchor_from_state(st)
    floor = anchor.at(time.monotonic(), boot_id())
    return {
        "floor": floor.isoformat(),
        "source": anchor.source,
        "set_by": st.get("by") or None,
        "clock": now.isoformat(),
        "clock_behind_s": round(max(0.0, (floor - now).total_seconds()), 1),
    }


def reset(store: Store, by: str, to: datetime, reason: str = "") -> tuple[str | None, str]:
    """Put the floor at ``to`` (the clock, or what the operator says), recorded as an
    event. Returns (the floor before, the floor now) as text."""
    before = describe(store, to)["floor"]
    written: dict[str, Any] = {}

    def put(c: Any) -> None:  # in the event's transaction: the reset and its record commit together
        row = c.execute("SELECT value FROM meta WHERE key = ?", (STATE_KEY,)).fetchone()
        try:
            stored = json.loads(row[0]) if row else None
        except ValueError:
            stored = None
        new = reset_state(stored if isinstance(stored, dict) else None, to, by, time.monotonic(), boot_id())
        c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (STATE_KEY, json.dumps(new)))
        written.update(new)

    after = to.astimezone(timezone.utc).isoformat()
    store.record(AdminRecord(
        at=datetime.now(timezone.utc).astimezone(store.tz), lane="", action="clock_floor_reset", who=by, reason=reason,
        detail=f"time floor {before or '-'} → {after}",
    ), also=put)
    return before, str(written["floor"])
