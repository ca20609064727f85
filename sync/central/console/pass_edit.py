"""Changes to one pass made in the console: its fields (holder, unit, category,
validity, phone last 4) and its access card. Each is an upsert of the whole wire record
into central's roster (a new version, sent to every gate in the next signed batch, with
who made it), with its audit row in the same transaction, as a revoke is
(sync/central/console/actions.py). A card is bound to one pass at most: a card bound
elsewhere is refused, naming the pass that has it.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any, Callable
from zoneinfo import ZoneInfo

from gate.config import CATEGORIES
from sync.central.console import audit
from sync.central.console.actions import MAX_REASON, ActionError
from sync.central.store import RosterError
from sync.central.wire import wire_pass

EDITED = ("holder", "unit", "category", "phone_last4", "valid_from", "valid_until")


def _day(text: str, tz: ZoneInfo, end: bool) -> str | None:
    """A date from the form (YYYY-MM-DD) as the start of that day, or with ``end`` its last second."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        d = date.fromisoformat(text[:10])
    except ValueError:
        raise ActionError("bad_date", f"expected a date like 2026-12-31, got {text!r}") from None
    return datetime.combine(d, time(23, 59, 59) if end else time(0), tz).isoformat()


def local_day(iso: str | None, tz: ZoneInfo) -> str:
    """A wire time as the form's date (YYYY-MM-DD, local)."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone(tz).date().isoformat()
    except ValueError:
        return ""


def edited(current: dict[str, Any], form: Any, tz: ZoneInfo) -> dict[str, Any]:
    """The pass as the form would leave it; ActionError naming the field that is wrong."""
    new = dict(current)
    holder = str(form.get("holder", "")).strip()
    unit = str(form.get("unit", "")).strip()
    if not holder:
        raise ActionError("holder_needed", "the name is empty")
    if not unit:
        raise ActionError("unit_needed", "the unit is empty")
    category = str(form.get("category", ""))
    if category not in CATEGORIES:
        raise ActionError("bad_category", f"category {category!r} is not one of {', '.join(CATEGORIES)}")
    phone = str(form.get("phone_last4", "")).strip()
    if phone and not re.fullmatch(r"\d{4}", phone):
        raise ActionError("bad_phone", f"phone last 4 must be 4 digits, got {phone!r}")
    valid_from = _day(str(form.get("valid_from", "")), tz, False)
    valid_until = _day(str(form.get("valid_until", "")), tz, True)
    if valid_from and valid_until and valid_until < valid_from:
        raise ActionError("bad_validity", "valid until is before valid from")
    # a date left as it was keeps its exact time (a roster may give 2026-12-31 18:00)
    for f, v in (("valid_from", valid_from), ("valid_until", valid_until)):
        if v is not None and local_day(current.get(f), tz) == local_day(v, tz):
            v = current.get(f)
        new[f] = v
    new.update(holder=holder, unit=unit, category=category, phone_last4=phone or None)
    try:
        return wire_pass(new)
    except ValueError as exc:
        raise ActionError("bad_field", str(exc)) from None


def _save(store: Any, pass_id: str, wire: dict[str, Any], *, who: str, action: str, reason: str, detail: str,
          notify: Callable[[], None]) -> int:
    def also(db: Any, version: int) -> None:
        audit.record(db, who, action, pass_id, reason, f"{detail}; roster version {version}")

    try:
        version = store.apply([("upsert", pass_id, wire)], by=who, reason=reason or action, also=also)[1]
    except RosterError as exc:  # a card taken by another change in the meantime
        raise ActionError("card_taken", str(exc)) from None
    notify()
    return int(version)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise ActionError("reason_long", f"the reason is longer than {MAX_REASON} characters")
    return reason


def edit_pass(store: Any, pass_id: str, form: Any, *, who: str, tz: ZoneInfo,
              notify: Callable[[], None] = lambda: None) -> tuple[int, list[tuple[str, Any, Any]]]:
    """Save the form's fields. Returns (roster version, [(field, old, new)])."""
    reason = _reason(str(form.get("reason", "")))
    current = store.get_pass(pass_id)
    if current is None:
        raise ActionError("no_pass", f"no pass {pass_id!r}")
    wire = edited(current, form, tz)
    diffs = [(f, current.get(f), wire.get(f)) for f in EDITED if current.get(f) != wire.get(f)]
    if not diffs:
        raise ActionError("nothing_changed", "nothing changed")
    detail = "; ".join(f"{f}: {o or '—'} → {n or '—'}" for f, o, n in diffs)
    return _save(store, pass_id, wire, who=who, action="pass_edit", reason=reason, detail=detail, notify=notify), diffs


def bind_card(store: Any, pass_id: str, card: str, *, who: str, reason: str = "",
              notify: Callable[[], None] = lambda: None) -> int:
    """Bind ``card`` (digits) to the pass; an empty card unbinds its card. Returns the
    roster version; ActionError ``card_taken`` when another pass has that card."""
    reason = _reason(reason)
    card = (card or "").strip()
    if card and not re.fullmatch(r"\d{1,10}", card):
        raise ActionError("bad_card", f"a card number is 1 to 10 digits, got {card!r}")
    current = store.get_pass(pass_id)
    if current is None:
        raise ActionError("no_pass", f"no pass {pass_id!r}")
    if (current.get("card") or "") == card:
        raise ActionError("nothing_changed", "nothing changed")
    if card:
        row = store.db.one("SELECT id, holder, unit FROM passes WHERE card = ? AND id <> ?", (card, pass_id))
        if row is not None:
            err = ActionError("card_taken", f"card {card} is already bound to pass {row[0]} ({row[1] or ''}, {row[2] or ''})")
            err.fill = {"card": card, "other": row[0], "holder": row[1] or "", "unit": row[2] or ""}  # type: ignore[attr-defined]
            raise err
    wire = dict(current)
    wire["card"] = card or None
    wire = wire_pass(wire)
    detail = f"card {current.get('card') or '—'} → {card or '—'}"
    return _save(store, pass_id, wire, who=who, action="card_bind", reason=reason, detail=detail, notify=notify)
