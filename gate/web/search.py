"""The guard page's search: who came and went, by unit, name, card or pass id."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

SEARCH_DAYS = 30  # how far back the guard page searches


def search(app: Any, q: str, limit: int = 50) -> list[dict[str, Any]]:
    """The last SEARCH_DAYS of decisions and registrations by unit, name, card or pass id."""
    q = q.strip()
    if not q:
        return []
    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    since = (app.clock.now() - timedelta(days=SEARCH_DAYS)).astimezone(app.tz).date().isoformat()
    store = app.open_store()
    try:
        rows = store.conn.execute(
            "SELECT e.body, p.holder, p.unit, p.category FROM events e LEFT JOIN passes p ON p.id = e.pass_id"
            " WHERE e.day >= ? AND e.type IN ('decision', 'registration') AND ("
            "  p.unit LIKE ? ESCAPE '\\' OR p.holder LIKE ? ESCAPE '\\' OR e.card LIKE ? ESCAPE '\\'"
            "  OR e.pass_id = ?)"
            " ORDER BY e.seq DESC LIMIT ?",
            (since, like, like, like, q, limit),
        ).fetchall()
    finally:
        store.close()
    out = []
    for body, holder, unit, category in rows:
        b = json.loads(body)
        at = datetime.fromisoformat(b["ts"]).astimezone(app.tz)
        out.append({
            "type": b["type"], "id": b["id"], "date": at.strftime("%m-%d"), "time": at.strftime("%H:%M:%S"),
            "lane": b.get("lane"), "decision": b.get("decision"), "reason": b.get("reason"),
            "category": b.get("category") or category, "holder": holder or b.get("holder"),
            "unit": unit or b.get("unit"), "card": b.get("card"), "temperature_c": b.get("temperature_c"),
            "pass_id": b.get("pass"),
        })
    return out
