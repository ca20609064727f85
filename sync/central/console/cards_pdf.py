"""A building's, an entrance's or a unit's pass cards as a PDF from the console: the
desk's cards (gate/desk/printing.py: ten ID-1 cards an A4 page, crop marks, vector QR,
the Chinese font embedded), read from central's roster, each with a token freshly
signed for its pass.

Which key signs them: central's ``signing_key`` signs what central sends (batches,
policy, commands) and gates trust it under ``sync.central_keys``; a QR pass is trusted
under ``keys.trusted``, a role of its own that never defaults to the other. So the
console signs with a key of its own, ``pass_key`` in CENTRAL.toml, which each gate lists
in ``keys.trusted`` (and ``gate central keys withdraw`` can withdraw like any pass key).
Without it the console prints nothing; if it is the same key as ``signing_key`` it
refuses, rather than make the gates trust central's key for QR passes too.
"""
from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gate.config import ConfigError, PolicyConfig, load_policy
from gate.core.tokens import PassToken, key_id, load_private, sign
from gate.desk.printing import CardPass, natural_key, render, unit_matches
from sync.central.console.schema import collate
from sync.central.console.search import upper_bound

MAX_CARDS = 5000  # a building's worth (2,400 people) and then some; more is a job for `gate passes print`


class PrintError(ValueError):
    """Nothing printed; ``code`` names why for the page's words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def pass_key(conf: Any) -> Any:
    """The console's pass-signing key (PrintError ``no_key`` or ``same_key``)."""
    if conf.pass_key is None:
        raise PrintError("no_key", "CENTRAL.toml has no pass_key: the console signs no passes")
    try:
        key = load_private(Path(conf.pass_key))
    except (OSError, ValueError) as exc:
        raise PrintError("no_key", f"pass_key {conf.pass_key}: {exc}") from None
    try:
        central = load_private(Path(conf.signing_key))
    except (OSError, ValueError):
        central = None
    if central is not None and key_id(central.public_key()) == key_id(key.public_key()):
        raise PrintError("same_key", "pass_key is central's signing_key: give the console a key of its own")
    return key


def _policy(conf: Any) -> PolicyConfig:
    """The site's policy (its categories' names and colours), or the default's."""
    if conf.policy_file:
        try:
            return load_policy(conf.policy_file)
        except (ConfigError, OSError):
            pass
    return PolicyConfig()


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def select(db: Any, prefix: str) -> list[dict[str, Any]]:
    """The passes of a unit or its building / entrance (``3``, ``3-2``, ``3-2-501``),
    in the order the units run. One index range on unit."""
    import json

    prefix = prefix.strip().rstrip("-")
    if not prefix:
        raise PrintError("unit_needed", "name a building, an entrance or a unit")
    c = collate(db.pg)  # a prefix is one range in byte order (PostgreSQL's locale order would split it)
    rows = db.all(f"SELECT wire FROM passes WHERE unit = ? OR (unit{c} >= ? AND unit{c} < ?)",
                  (prefix, prefix + "-", upper_bound(prefix + "-")))
    out = [json.loads(r[0]) for r in rows]
    out = [w for w in out if unit_matches(w.get("unit"), (prefix,))]
    out.sort(key=lambda w: (natural_key(w.get("unit") or ""), w.get("holder") or "", w["id"]))
    return out


def cards_pdf(db: Any, conf: Any, prefix: str, *, now: datetime | None = None) -> tuple[bytes, int, list[tuple[str, str]]]:
    """(the PDF, cards on it, [(pass id, why skipped)]): revoked and expired passes are not printed."""
    key = pass_key(conf)
    tz = ZoneInfo(conf.timezone)
    now = now or datetime.now(tz)
    wires = select(db, prefix)
    cards, skipped = [], []
    for w in wires:
        if w.get("revoked"):
            skipped.append((w["id"], "revoked"))
            continue
        vf, vu = _when(w.get("valid_from")), _when(w.get("valid_until"))
        if vu is not None and vu < now:
            skipped.append((w["id"], "expired"))
            continue
        if vu is None and conf.pass_valid_days:
            vu = now + timedelta(days=conf.pass_valid_days)  # a token ends even where the pass does not
        try:
            token = sign(PassToken(w["id"], w["category"], w.get("unit") or "", vf, vu), key)
        except ValueError as exc:
            skipped.append((w["id"], str(exc)))
            continue
        cards.append(CardPass(w["id"], w.get("holder") or "", w.get("unit") or "", w["category"], vf, vu,
                              _when(w.get("observation_until")), token))
    if not cards:
        raise PrintError("nothing_to_print", f"no pass to print in {prefix}")
    if len(cards) > MAX_CARDS:
        raise PrintError("too_many", f"{len(cards)} cards: at most {MAX_CARDS} at once; choose an entrance or a unit")
    with tempfile.TemporaryDirectory(prefix="gate-console-print-") as tmp:
        out = Path(tmp) / "cards.pdf"
        render(cards, out, _policy(conf), tz, title=f"{conf.site} {prefix}")
        return out.read_bytes(), len(cards), skipped
