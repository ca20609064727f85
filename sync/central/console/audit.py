"""Who changed what in the console (``console_audit``): every change is a row with the
person's name, the action, what it was done to, the reason they gave and a detail
(e.g. the roster version a revoke became). Written in the same transaction as the
change itself where the change is central's (sync/central/store.py ``apply(also=)``)."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

# The actions the audit knows (their words: [console] audit_* in gate/core/words.toml).
ACTIONS = ("revoke", "restore", "sign_in", "user_add", "user_disable", "user_enable",
           "policy_publish")  # the policy pages (policy_data.py)
ACTIONS += ("roster_import", "pass_edit", "card_bind", "cards_print")  # the roster pages (roster_pages.py)


@dataclass(frozen=True)
class Entry:
    id: str
    ts: float
    who: str
    action: str
    target: str
    reason: str
    detail: str


def record(db: Any, who: str, action: str, target: str = "", reason: str = "", detail: str = "", *, ts: float | None = None) -> str:
    """One row (inside the caller's transaction, or on its own). Returns its id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    rid = uuid.uuid4().hex
    db.execute("INSERT INTO console_audit (id, ts, who, action, target, reason, detail) VALUES (?,?,?,?,?,?,?)",
               (rid, time.time() if ts is None else ts, who, action, target, reason, detail))
    return rid


def recent(db: Any, *, limit: int = 200, target: str | None = None, who: str | None = None) -> list[Entry]:
    """Newest first; only one target's (a pass id) or one person's when asked."""
    sql, args = "SELECT id, ts, who, action, target, reason, detail FROM console_audit", []
    if target is not None:
        sql += " WHERE target = ?"
        args.append(target)
    elif who is not None:
        sql += " WHERE who = ?"
        args.append(who)
    sql += f" ORDER BY ts DESC, id LIMIT {int(limit)}"
    return [Entry(r[0], float(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in db.all(sql, args)]
