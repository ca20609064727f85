"""Privacy at central (issue 14): a resident's export and erasure across the site, and
retention.

**Export** (`gate central privacy export --pass ID`): the roster row and its change
history, its tombstone, every event from every gate that names the pass or one of its
cards, the visitor registrations naming it, its presence items, the gates' daily
reports listing its cards, and earlier erasures.

**Erase** (`gate central privacy erase --pass ID --by NAME`), as the gate's erase
(gate/store/erasure.py) does it: the roster row (its attributes too) goes with a delete change (a tombstone:
the id, its category and until when its QR could be valid, which every gate gets in
batches and snapshots, so the pass is refused `revoked` everywhere); the earlier changes
of the pass become that same delete change (no name left in the history a lagging gate
is sent); events stay, counted by the reports, with the personal fields emptied
(gate.store.erasure.PERSONAL_FIELDS); its presence items go, its cards leave the daily
reports' card lists, quarantined messages naming it go. An audit row (`erasures`: who,
when, what) and one row per gate (`erasure_gates`) record that each gate must erase too.

**Every gate erases**: a signed `erase` command (nonce, expiry) per gate. The broker's
queue alone is not enough (a command expires after `command_ttl_s`, the gate's session
after a day, a broker without persistence forgets it, a new gate never had one), so
central keeps sending a freshly signed one (new nonce) to each gate that is online and has
not confirmed, every `erase_resend_s`, until that gate's `privacy_erase` admin event
naming the erasure comes up its outbox (receipted like every event). A gate applies it
idempotently; a replayed command is refused by its nonce.

**Late events**: an event arriving after the erasure that names the pass (or one of its
cards) and is dated before it (a gate that was offline) is stored scrubbed
(`scrub_incoming`, in the writer's transaction; the erasure counter in `meta` is read
there FOR SHARE on PostgreSQL, so an erasure and a writer's batch never cross unseen).
An event dated after it (the old QR shown and refused `revoked`) is a new fact and kept.

**Retention** (`[retention] days`, default 30 as at the gate): events received longer
ago than that, visitor registrations that long after the visit ended (`valid_until`),
visitor passes of the roster that long after they ended, and quarantined messages last
seen that long ago, are purged by the running central every `retention.purge_every_s`
(`gate central privacy purge` now), `retention.chunk` rows a transaction, the same SQL on
SQLite and PostgreSQL.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from datetime import datetime
from typing import Any

from gate.store.erasure import PERSONAL_FIELDS, scrub
from sync import codec

log = logging.getLogger("sync.central")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS erasures (id TEXT PRIMARY KEY, pass_id TEXT NOT NULL, by_name TEXT NOT NULL,"
    " ts DOUBLE PRECISION NOT NULL, version BIGINT, counts TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS erasures_pass ON erasures (pass_id)",
    # the cards of erased passes, hashed (late events naming only a card are scrubbed too)
    "CREATE TABLE IF NOT EXISTS erased_cards (hash TEXT NOT NULL, erasure TEXT NOT NULL, PRIMARY KEY (hash, erasure))",
    "CREATE TABLE IF NOT EXISTS erasure_gates (erasure TEXT NOT NULL, gate TEXT NOT NULL, sent_at DOUBLE PRECISION,"
    " sends BIGINT NOT NULL, done_at DOUBLE PRECISION, PRIMARY KEY (erasure, gate))",
    "INSERT INTO meta (key, value) VALUES ('erasures', '0') ON CONFLICT (key) DO NOTHING",
]
_ACK = re.compile(r"^erasure=([0-9a-f]{16,64})\b")


class UnknownPass(LookupError):
    pass


def _card_hash(card: str) -> str:
    return hashlib.sha256(b"gate-erased-card:" + card.encode("utf-8")).hexdigest()


def _like(key: str, value: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for `"key":value` in a compact JSON body."""
    text = f'"{key}":' + json.dumps(value, ensure_ascii=False)
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _names(ev: dict[str, Any], pass_id: str, cards: set[str]) -> bool:
    return ev.get("pass") == pass_id or (ev.get("card") is not None and ev.get("card") in cards)


def _find_events(db: Any, pass_id: str, cards: set[str]) -> list[tuple[str, dict[str, Any], float]]:
    """(id, body, received) of the events naming the pass or a card: LIKE finds the
    candidates (the same SQL on both databases), the JSON decides."""
    pats = [_like("pass", pass_id)] + [_like("card", c) for c in sorted(cards)]
    where = " OR ".join(["body LIKE ? ESCAPE '\\'"] * len(pats))
    out = []
    for eid, body, received in db.all(f"SELECT id, body, received FROM events WHERE {where} ORDER BY gate, seq", pats):
        ev = json.loads(body)
        if _names(ev, pass_id, cards):
            out.append((eid, ev, float(received)))
    return out


def _history(db: Any, pass_id: str) -> list[tuple[int, str, str, float]]:
    return [(int(v), op, ch, float(ts)) for v, op, ch, ts in db.all(
        "SELECT version, op, change, ts FROM changes WHERE pass_id = ? ORDER BY version", (pass_id,))]


def _cards(store: Any, pass_id: str) -> set[str]:
    """Its card now and every card the roster's history gave it, and cards its events show."""
    cards: set[str] = set()
    wire = store.get_pass(pass_id)
    if wire and wire.get("card"):
        cards.add(str(wire["card"]))
    for _v, op, ch, _ts in _history(store.db, pass_id):
        if op == "upsert":
            card = json.loads(ch).get("pass", {}).get("card")
            if card:
                cards.add(str(card))
    for _id, ev, _r in _find_events(store.db, pass_id, set()):
        if ev.get("card"):
            cards.add(str(ev["card"]))
    return cards


def _reports_with(db: Any, cards: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    if not cards:
        return []
    pats = ["%" + json.dumps(c).replace("%", "\\%").replace("_", "\\_") + "%" for c in sorted(cards)]
    where = " OR ".join(["body LIKE ? ESCAPE '\\'"] * len(pats))
    out = []
    for gate, day, body in db.all(f"SELECT gate, date, body FROM reports WHERE {where} ORDER BY gate, date", pats):
        rep = json.loads(body)
        if cards & set(rep.get("new_cards") or []) or cards & set(rep.get("unknown_cards") or []):
            out.append((gate, day, rep))
    return out


def _quarantined_with(db: Any, pass_id: str, cards: set[str]) -> list[str]:
    needles = [pass_id.encode("utf-8")] + [c.encode() for c in cards]
    out = []
    for key, raw in db.all("SELECT key, raw FROM quarantine"):
        raw = bytes(raw)
        if any(n in raw for n in needles):
            out.append(key)
    return out


# ---------------------------------------------------------------- export


def export(store: Any, pass_id: str) -> dict[str, Any]:
    """Everything central holds about one pass, for the holder's request."""
    db = store.db
    cards = _cards(store, pass_id)
    stone = db.one("SELECT category, until, removed_at FROM tombstones WHERE id = ?", (pass_id,))
    events, registrations = [], []
    for _id, ev, received in _find_events(db, pass_id, cards):
        (registrations if ev.get("type") == "registration" else events).append({**ev, "received": received})
    presence = [json.loads(r[0]) for r in db.all("SELECT body FROM presence_items WHERE key = ? OR key = ? ORDER BY seq",
                                                  (f"move:{pass_id}", f"hold:{pass_id}"))]
    erasures = []
    for eid, by, ts, version, counts in db.all(
            "SELECT id, by_name, ts, version, counts FROM erasures WHERE pass_id = ? ORDER BY ts", (pass_id,)):
        gates = {g: {"sends": int(n), "sent_at": s, "done_at": d} for g, s, n, d in db.all(
            "SELECT gate, sent_at, sends, done_at FROM erasure_gates WHERE erasure = ? ORDER BY gate", (eid,))}
        erasures.append({"id": eid, "by": by, "ts": ts, "version": version, "counts": json.loads(counts), "gates": gates})
    return {
        "pass": pass_id,
        "roster": store.get_pass(pass_id),
        "tombstone": {"category": stone[0], "until": stone[1], "removed_at": stone[2]} if stone else None,
        "changes": [{"version": v, "op": op, "ts": ts, "change": json.loads(ch)} for v, op, ch, ts in _history(db, pass_id)],
        "cards": sorted(cards),
        "events": events,
        "registrations": registrations,
        "presence": presence,
        "reports": [{"gate": g, "date": d, "new_cards": sorted(cards & set(r.get("new_cards") or [])),
                     "unknown_cards": sorted(cards & set(r.get("unknown_cards") or []))}
                    for g, d, r in _reports_with(db, cards)],
        "erasures": erasures,
        # the console's copy (sync/central/console/seen.py): its latest decision a gate
        "seen": [{"gate": r[0], "ts": r[1], "decision": r[2], "reason": r[3]} for r in db.all(
            "SELECT gate, ts, decision, reason FROM console_seen WHERE pass_id = ? ORDER BY gate", (pass_id,))],
        # its roster attributes (also in "roster"): they go with the roster row
        "attributes": [json.loads(r[0]) for r in db.all(
            "SELECT attributes FROM passes WHERE id = ? AND attributes IS NOT NULL", (pass_id,))],
    }


def holds_anything(data: dict[str, Any]) -> bool:
    return bool(data["roster"] or data["tombstone"] or data["changes"] or data["events"] or data["registrations"]
                or data["presence"] or data["reports"] or data.get("seen") or data.get("attributes"))


# ---------------------------------------------------------------- erase


def known_gates(db: Any) -> list[str]:
    """Every gate central has heard of: a status (retained, so any gate that ever ran
    sync) or an event."""
    return sorted({r[0] for r in db.all("SELECT gate FROM status UNION SELECT DISTINCT gate FROM events")})


def erase(store: Any, pass_id: str, by: str, *, force: bool = False, now: float | None = None,
          chunk: int = 500) -> dict[str, Any]:
    """Erase a pass at central and record that every known gate must erase it too.
    Raises UnknownPass when central holds nothing about it (unless force)."""
    db = store.db
    now = time.time() if now is None else now
    before = export(store, pass_id)
    cards = set(before["cards"])
    if not holds_anything(before) and not force:
        raise UnknownPass(f"central holds nothing about pass {pass_id!r}")
    ref = secrets.token_hex(8)
    gates = known_gates(db)
    counts: dict[str, int] = {}
    with db.tx():
        # Taken first: a writer's transaction reads this row (FOR SHARE on PostgreSQL), so
        # every event stored from now on is checked against this erasure (scrub_incoming).
        db.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'erasures'")
        version = None
        has_stone = db.one("SELECT 1 FROM tombstones WHERE id = ?", (pass_id,)) is not None
        if store.get_pass(pass_id) is not None or not has_stone:
            version = store.apply([("delete", pass_id, None)])[1]  # joins this transaction (DB.tx)
        cat, until = db.one("SELECT category, until FROM tombstones WHERE id = ?", (pass_id,))
        change = json.dumps({"op": "delete", "id": pass_id, "category": cat, "until": until}, ensure_ascii=False)
        cur = db.execute("UPDATE changes SET op = 'delete', change = ? WHERE pass_id = ? AND op = 'upsert'", (change, pass_id))
        counts["changes"] = max(cur.rowcount, 0)
        counts["passes"] = 1 if before["roster"] else 0
        cur = db.execute("DELETE FROM presence_items WHERE key = ? OR key = ?", (f"move:{pass_id}", f"hold:{pass_id}"))
        counts["presence"] = max(cur.rowcount, 0)
        counts["seen"] = max(db.execute("DELETE FROM console_seen WHERE pass_id = ?", (pass_id,)).rowcount, 0)
        db.execute("DELETE FROM console_last_seen WHERE pass_id = ?", (pass_id,))
        db.execute("INSERT INTO erasures (id, pass_id, by_name, ts, version, counts) VALUES (?,?,?,?,?,?)",
                   (ref, pass_id, by, now, version, "{}"))
        db.executemany("INSERT INTO erased_cards (hash, erasure) VALUES (?,?) ON CONFLICT (hash, erasure) DO NOTHING",
                       [(_card_hash(c), ref) for c in sorted(cards)])
        db.executemany("INSERT INTO erasure_gates (erasure, gate, sent_at, sends, done_at) VALUES (?,?,NULL,0,NULL)",
                       [(ref, g) for g in gates])
    # Found after the commit above: what a writer stored before it is here, what it
    # stores after it is scrubbed as it comes in.
    found = _find_events(db, pass_id, cards)
    counts["events"] = counts["registrations"] = 0
    for i in range(0, len(found), chunk):
        part = found[i:i + chunk]
        with db.tx():
            db.executemany("UPDATE events SET body = ? WHERE id = ?",
                           [(codec.encode(scrub(ev)).decode("utf-8"), eid) for eid, ev, _r in part])
        for _eid, ev, _r in part:
            counts["registrations" if ev.get("type") == "registration" else "events"] += 1
    reports = _reports_with(db, cards)
    with db.tx():
        for gate, day, rep in reports:
            for key in ("new_cards", "unknown_cards"):
                if key in rep:
                    rep[key] = [c for c in rep[key] if c not in cards]
            db.execute("UPDATE reports SET body = ? WHERE gate = ? AND date = ?", (codec.encode(rep).decode("utf-8"), gate, day))
        gone = _quarantined_with(db, pass_id, cards)
        db.executemany("DELETE FROM quarantine WHERE key = ?", [(k,) for k in gone])
        # The console's first sightings of its cards (sync/central/console/report_data.py).
        db.executemany("DELETE FROM console_cards WHERE card = ?", [(c,) for c in sorted(cards)])
        counts["reports"], counts["quarantined"], counts["cards"] = len(reports), len(gone), len(cards)
        db.execute("UPDATE erasures SET counts = ? WHERE id = ?", (json.dumps(counts, sort_keys=True), ref))
    log.info("erasure %s of pass %s by %s: %s; %d gate(s) to tell", ref, pass_id, by, counts, len(gates))
    return {"erasure": ref, "pass": pass_id, "by": by, "version": version, "counts": counts, "gates": gates}


# ---------------------------------------------------------------- the writer: late events, acknowledgements


class _Erased:
    def __init__(self) -> None:
        self.serial = -1
        self.marker: str | None = None
        self.passes: dict[str, float] = {}
        self.cards: dict[str, float] = {}


def _erased(store: Any) -> _Erased:
    db = store.db
    cache = getattr(store, "_erased_cache", None)
    if cache is None:
        cache = store._erased_cache = _Erased()
    if cache.serial != db.tx_serial or not db._in_tx:
        cache.serial = db.tx_serial
        row = db.one("SELECT value FROM meta WHERE key = 'erasures'" + (" FOR SHARE" if db.pg else ""))
        marker = row[0] if row else "0"
        if marker != cache.marker:
            cache.marker = marker
            cache.passes = {p: float(ts) for p, ts in db.all("SELECT pass_id, max(ts) FROM erasures GROUP BY pass_id")}
            cache.cards = {h: float(ts) for h, ts in db.all(
                "SELECT c.hash, max(e.ts) FROM erased_cards c JOIN erasures e ON e.id = c.erasure GROUP BY c.hash")}
    return cache


def _when(ev: dict[str, Any]) -> float | None:
    try:
        t = datetime.fromisoformat(str(ev.get("ts")))
        return t.timestamp() if t.tzinfo is not None else None
    except ValueError:
        return None


def scrub_incoming(store: Any, ev: dict[str, Any]) -> dict[str, Any]:
    """Inside the writer's transaction, before an event is stored: one that names an
    erased pass (or card) and is dated before its erasure is stored scrubbed."""
    if not any(ev.get(k) for k in PERSONAL_FIELDS):
        return ev
    er = _erased(store)
    if not er.passes:
        return ev
    erased_at = er.passes.get(ev.get("pass")) if ev.get("pass") else None
    if erased_at is None and ev.get("card"):
        erased_at = er.cards.get(_card_hash(str(ev["card"])))
    if erased_at is None:
        return ev
    when = _when(ev)
    if when is not None and when > erased_at:
        return ev  # after the erasure: a new fact (its QR shown and refused), kept
    return scrub(ev)


def acknowledge(db: Any, gate: str, ev: dict[str, Any], now: float) -> bool:
    """Inside the writer's transaction: a gate's `privacy_erase` admin event says it
    has erased. True if it named an erasure."""
    if ev.get("type") != "admin" or ev.get("action") != "privacy_erase":
        return False
    m = _ACK.match(str(ev.get("detail") or ""))
    if not m:
        return False
    db.execute("INSERT INTO erasure_gates (erasure, gate, sent_at, sends, done_at) VALUES (?,?,NULL,0,?)"
               " ON CONFLICT (erasure, gate) DO UPDATE SET done_at = coalesce(erasure_gates.done_at, excluded.done_at)",
               (m.group(1), gate, now))
    return True


def pending(db: Any) -> list[dict[str, Any]]:
    """Erasures some gate has not confirmed: (erasure, pass, gate, sends, sent_at, online)."""
    return [{"erasure": e, "pass": p, "gate": g, "sends": int(n), "sent_at": s, "online": bool(o)}
            for e, p, g, n, s, o in db.all(
                "SELECT g.erasure, e.pass_id, g.gate, g.sends, g.sent_at, coalesce(s.online, 0) FROM erasure_gates g"
                " JOIN erasures e ON e.id = g.erasure LEFT JOIN status s ON s.gate = g.gate"
                " WHERE g.done_at IS NULL ORDER BY e.ts, g.gate")]


def due(db: Any, now: float, resend_s: float) -> list[tuple[str, str, str]]:
    """(erasure, pass, gate) to send now: not confirmed, the gate online, not sent
    within resend_s. An offline gate is sent nothing (no pile in its broker session):
    it gets one as soon as its status says it is back."""
    return [(e, p, g) for e, p, g in db.all(
        "SELECT g.erasure, e.pass_id, g.gate FROM erasure_gates g JOIN erasures e ON e.id = g.erasure"
        " JOIN status s ON s.gate = g.gate WHERE g.done_at IS NULL AND s.online = 1"
        " AND (g.sent_at IS NULL OR g.sent_at < ?) ORDER BY e.ts, g.gate", (now - resend_s,))]


def mark_sent(db: Any, sent: list[tuple[str, str]], now: float) -> None:
    with db.tx():
        db.executemany("UPDATE erasure_gates SET sent_at = ?, sends = sends + 1 WHERE erasure = ? AND gate = ?",
                       [(now, e, g) for e, g in sent])


def commands(signer: Any, items: list[tuple[str, str, str]], ttl_s: float, by: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(erasure, gate, signed erase command) for each (erasure, pass, gate)."""
    return [(e, g, signer.command(g, "erase", pass_id=p, erasure=e, ttl_s=ttl_s, by=by)) for e, p, g in items]
