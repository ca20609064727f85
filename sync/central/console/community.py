"""The community map (四色图, 三色牌, 楼盘图): buildings, entrances, floors and units from
central's roster, each unit coloured by a status the office chooses, and a board per
building.

Units are the roster's: ``3-2-501`` is building 3, entrance 2, floor 5, flat 01 (how
gate/desk/roster.py joins 楼栋 + 单元 + 房号); ``3号楼2单元501室`` and ``3-501`` (one
entrance) read too. A unit that does not read so goes to the "other" group, never an
error. A unit's people are its households' passes (resident, renter, returnee).

Statuses (``Choice``): a unit is flagged when one of its people is under home
observation (``observation_until`` ahead), had a fever at any gate today (a fever alarm,
which every fever refusal raises), is revoked; when a visitor registered to it is inside
(central's visitor register and the site's presence log); when none of its people was
seen at any gate for N days (sync/central/console/seen.py); or, for a rule of the site's
policy (gate/core/rules.py, CEL), by the share of its people the rule concerns who meet
it. A building's board shows that share, green at or above ``[console] map_green_pct``,
yellow down to ``map_yellow_pct``, red below (the seeds' 95 % and 90 %).

Cost: one indexed read of the households' passes, then what the status needs (today's
alarms, recent visitors, the seen aggregate): no scan of the events.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from gate.core import rules
from gate.core.records import PassRecord
from sync.central.console import seen

HOUSEHOLDS = ("resident", "renter", "returnee")
FLAGS = ("observation", "fever", "visitor", "revoked", "unseen")
DAYS = 7  # "not seen for N days" unless the office chooses
VISIT_WINDOW_S = 2 * 86400  # visits ending longer ago than this are not looked at for "inside"


@dataclass(frozen=True)
class Place:
    building: str
    entrance: str  # "" when the unit names none
    floor: int
    flat: str


_MARKS = [(re.compile(r"(号楼|号院|栋|幢|座)"), "-"), (re.compile(r"单元"), "-"), (re.compile(r"(室|号|房)$"), "")]
_SPLIT = re.compile(r"[-－—–/#\s]+")
_PART = re.compile(r"[0-9A-Za-z]{1,6}")


@lru_cache(maxsize=65536)
def parse_unit(unit: str | None) -> Place | None:
    """Building, entrance, floor and flat of a unit as the roster writes it, or None."""
    text = (unit or "").strip()
    for pattern, to in _MARKS:
        text = pattern.sub(to, text)
    parts = [p for p in _SPLIT.split(text) if p]
    if len(parts) == 3:
        building, entrance, room = parts
    elif len(parts) == 2:
        (building, room), entrance = parts, ""
    else:
        return None
    if not (_PART.fullmatch(building) and (not entrance or _PART.fullmatch(entrance)) and re.fullmatch(r"\d{3,4}", room)):
        return None
    floor = int(room[:-2])
    if floor == 0:
        return None
    return Place(building.lstrip("0") or "0", entrance.lstrip("0") or entrance, floor, room[-2:])


def natural(text: str) -> tuple[Any, ...]:
    """"2" before "10", numbers before letters."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|\D+", text))


@dataclass(frozen=True)
class Choice:
    """What colours the map: one of FLAGS (``days`` for "unseen"), or ``rule`` NAME."""

    kind: str
    days: int = DAYS
    rule: str = ""

    @property
    def key(self) -> str:
        return f"rule:{self.rule}" if self.kind == "rule" else self.kind

    @classmethod
    def parse(cls, text: str | None, days: Any = None, rule_names: tuple[str, ...] = ()) -> "Choice":
        """From the page's select (unknown: home observation); days clamped to 1-365."""
        try:
            n = min(365, max(1, int(days)))
        except (TypeError, ValueError):
            n = DAYS
        t = (text or "").strip()
        if t.startswith("rule:") and t[5:] in rule_names:
            return cls("rule", n, t[5:])
        return cls(t if t in FLAGS else "observation", n)


@dataclass
class Unit:
    unit: str
    place: Place | None
    people: int = 0
    hits: int = 0  # people flagged (or, for a rule, meeting it)
    concerned: int = 0  # people a rule concerns
    visitors: int = 0
    state: str = "clear"  # the legend's key: clear, observation, fever, visitor, revoked, unseen, all, some, none, na


@dataclass
class Building:
    name: str
    units: list[Unit] = field(default_factory=list)
    people: int = 0
    met: int = 0
    concerned: int = 0
    flagged: int = 0
    board: str = "clear"  # green, yellow, red (a rule's share), flagged or clear (a count), na

    @property
    def share(self) -> float | None:
        return None if not self.concerned else 100.0 * self.met / self.concerned

    def plan(self) -> dict[str, Any]:
        """The floor plan (楼盘图): floors top down, a column per entrance and flat."""
        cols = sorted({(u.place.entrance, u.place.flat) for u in self.units if u.place},
                      key=lambda c: (natural(c[0]), natural(c[1])))
        cells = {(u.place.floor, u.place.entrance, u.place.flat): u for u in self.units if u.place}
        floors = sorted({u.place.floor for u in self.units if u.place}, reverse=True)
        entrances: list[tuple[str, int]] = []
        for e, _ in cols:
            if entrances and entrances[-1][0] == e:
                entrances[-1] = (e, entrances[-1][1] + 1)
            else:
                entrances.append((e, 1))
        return {"cols": cols, "floors": floors, "entrances": entrances,
                "rows": [[cells.get((f, e, flat)) for e, flat in cols] for f in floors]}


def policy_rules(store: Any) -> list[dict[str, Any]]:
    """The rules of the site's latest policy (name, when, require, direction)."""
    latest = store.latest_policy()
    got = ((latest or {}).get("policy") or {}).get("rules") or []
    return [r for r in got if isinstance(r, dict) and r.get("name") and r.get("require")]


def _time(v: Any) -> datetime | None:
    if not v:
        return None
    try:
        return datetime.fromisoformat(str(v))
    except ValueError:
        return None


def pass_record(wire: dict[str, Any], attributes: dict[str, Any] | None) -> PassRecord:
    return PassRecord(
        id=wire["id"], category=wire.get("category") or "", holder=wire.get("holder"), unit=wire.get("unit"),
        phone_last4=wire.get("phone_last4"), valid_from=_time(wire.get("valid_from")), valid_until=_time(wire.get("valid_until")),
        observation_until=_time(wire.get("observation_until")), pcr_at=_time(wire.get("pcr_at")),
        health_code=wire.get("health_code"), revoked=bool(wire.get("revoked")), attributes=attributes)


def meets(rule: dict[str, Any], rec: PassRecord, now: datetime) -> bool | None:
    """Does the pass meet the rule (None: the rule does not concern it)? As at a gate,
    an attribute the pass lacks is "no", and an expression that fails is "no" too."""
    direction = "out" if rule.get("direction") == "out" else "in"
    ctx = rules.context(rules.Facts(pass_=rec, lane="", direction=direction, gate="central", now=now))
    if rule.get("when") and rules.holds(rule["when"], ctx, rule["name"]) is False:
        return None
    return rules.holds(rule["require"], ctx, rule["name"]) is True


# What a rule may read of a pass besides its id and unit (gate/core/rules.py): people
# alike in these (and in their attributes) meet a rule alike, unless it reads id or unit.
_RULE_FIELDS = ("category", "valid_from", "valid_until", "observation_until", "pcr_at", "health_code")
_SAFE_READ = re.compile(r"\bpass\b(?!\s*\.\s*(category|valid_from|valid_until|observation_until|pcr_at|health_code|listed|attributes)\b)")
_UNSEEN: Any = object()


def reads_id_or_unit(rule: dict[str, Any]) -> bool:
    """Whether the rule may read more of the pass than _RULE_FIELDS and its attributes."""
    return bool(_SAFE_READ.search(f"{rule.get('when') or ''} {rule['require']}"))


def _people(db: Any, with_attributes: bool) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(HOUSEHOLDS))
    if with_attributes:
        # the roster's own column: versioned with the pass, gone with it (no copy to keep in step)
        return db.all(f"SELECT id, unit, revoked, wire, attributes FROM passes WHERE category IN ({marks})", HOUSEHOLDS)
    return db.all(f"SELECT id, unit, revoked, wire, NULL FROM passes WHERE category IN ({marks})", HOUSEHOLDS)


def fever_today(db: Any, start: float) -> set[str]:
    """Passes with a fever alarm at any gate since ``start`` (local midnight)."""
    out = set()
    for (body,) in db.all("SELECT body FROM events WHERE type = 'alarm' AND received >= ? AND body LIKE ?",
                          (start, '%"kind":"fever"%')):
        ev = json.loads(body)
        at = seen.epoch(ev.get("ts"))
        if ev.get("kind") == "fever" and ev.get("pass") and at is not None and at >= start:
            out.add(ev["pass"])
    return out


def visitors_inside(db: Any, now: float) -> dict[str, int]:
    """Per host unit, the registered visitors whose latest movement is an entry."""
    out: dict[str, int] = {}
    for unit, body in db.all("SELECT v.unit, m.body FROM visitors v JOIN presence_items m ON m.key = 'move:' || v.pass_id"
                             " WHERE v.until_ts >= ?", (now - VISIT_WINDOW_S,)):
        if json.loads(body).get("direction") == "in":
            out[unit] = out.get(unit, 0) + 1
    return out


def community_map(store: Any, choice: Choice, *, now: float, tz: tzinfo, midnight: float,
                  green: float = 95.0, yellow: float = 90.0) -> dict[str, Any]:
    """Every building's units coloured by ``choice``, its board, and the other units."""
    db = store.db
    rule = next((r for r in policy_rules(store) if r["name"] == choice.rule), None) if choice.kind == "rule" else None
    rows = _people(db, rule is not None)
    fevers = fever_today(db, midnight) if choice.kind == "fever" else set()
    inside = visitors_inside(db, now) if choice.kind == "visitor" else {}
    last = seen.last_seen(db, HOUSEHOLDS) if choice.kind == "unseen" else {}
    cutoff = now - choice.days * 86400
    local_now = datetime.fromtimestamp(now, tz)
    units: dict[str, Unit] = {}
    latest: dict[str, float] = {}
    verdicts: dict[tuple[Any, ...], bool | None] = {}
    by_pass = rule is not None and reads_id_or_unit(rule)
    for pid, unit_name, revoked, wire_text, attrs in rows:
        name = unit_name or ""
        u = units.get(name)
        if u is None:
            u = units[name] = Unit(name, parse_unit(name))
        u.people += 1
        if choice.kind == "revoked":
            u.hits += 1 if revoked else 0
        elif choice.kind == "fever":
            u.hits += 1 if pid in fevers else 0
        elif choice.kind == "unseen":
            latest[name] = max(latest.get(name, 0.0), last.get(pid, 0.0))
        elif choice.kind == "observation":
            if '"observation_until"' in wire_text:
                until = _time(json.loads(wire_text).get("observation_until"))
                u.hits += 1 if until is not None and until.timestamp() > now else 0
        elif rule is not None:
            wire = json.loads(wire_text)
            key = (wire["id"], name) if by_pass else ()
            key += (*(wire.get(f) for f in _RULE_FIELDS), attrs)
            got = verdicts.get(key, _UNSEEN)
            if got is _UNSEEN:  # people alike to the rule (most are) are judged once
                got = verdicts[key] = meets(rule, pass_record(wire, json.loads(attrs) if attrs else None), local_now)
            if got is not None:
                u.concerned += 1
                u.hits += 1 if got else 0
    for name, u in units.items():
        if choice.kind == "visitor":
            u.visitors = inside.get(name, 0)
            u.state = "visitor" if u.visitors else "clear"
        elif choice.kind == "unseen":
            u.state = "unseen" if latest.get(name, 0.0) < cutoff else "clear"
        elif choice.kind == "rule":
            u.state = "na" if not u.concerned else "all" if u.hits == u.concerned else "some" if u.hits else "none"
        else:
            u.state = choice.kind if u.hits else "clear"
    buildings: dict[str, Building] = {}
    other: list[Unit] = []
    for u in sorted(units.values(), key=lambda x: natural(x.unit)):
        if u.place is None:
            other.append(u)
            continue
        b = buildings.get(u.place.building)
        if b is None:
            b = buildings[u.place.building] = Building(u.place.building)
        b.units.append(u)
        b.people += u.people
        b.met += u.hits
        b.concerned += u.concerned
        b.flagged += 1 if u.state not in ("clear", "all", "na") else 0
    for b in buildings.values():
        if choice.kind == "rule":
            share = b.share
            b.board = "na" if share is None else "green" if share >= green else "yellow" if share >= yellow else "red"
        else:
            b.board = "flagged" if b.flagged else "clear"
    ordered = [buildings[k] for k in sorted(buildings, key=natural)]
    return {"choice": choice, "buildings": ordered, "other": other, "units": len(units), "people": len(rows),
            "flagged": sum(1 for u in units.values() if u.state not in ("clear", "all", "na")),
            "visitors_elsewhere": sum(n for unit, n in inside.items() if unit not in units)}


def unit_people(store: Any, unit: str, *, now: float) -> list[dict[str, Any]]:
    """Everyone whose pass names the unit (households first), with their latest decision
    at every gate and the visitors registered to it lately."""
    from sync.central.console.schema import collate

    db = store.db
    rows = db.all(f"SELECT id, wire FROM passes WHERE unit{collate(db.pg)} = ? ORDER BY id LIMIT 500", (unit,))
    people = [json.loads(r[1]) for r in rows]
    gates = seen.at_gates(db, [p["id"] for p in people])
    for p in people:
        p["at_gates"] = gates.get(p["id"], [])
        until = _time(p.get("observation_until"))
        p["observing"] = until is not None and until.timestamp() > now
    people.sort(key=lambda p: (p.get("category") not in HOUSEHOLDS, p.get("holder") or "", p["id"]))
    return people


def unit_visitors(db: Any, unit: str, now: float) -> list[dict[str, Any]]:
    """The visitors registered to the unit whose visit ended at most two days ago, and where they are."""
    out = []
    for pass_id, holder, until, body in db.all(
            "SELECT v.pass_id, v.holder, v.valid_until, m.body FROM visitors v LEFT JOIN presence_items m"
            " ON m.key = 'move:' || v.pass_id WHERE v.until_ts >= ? AND v.unit = ? ORDER BY v.until_ts", (now - VISIT_WINDOW_S, unit)):
        move = json.loads(body) if body else None
        out.append({"pass": pass_id, "holder": holder or "", "valid_until": until,
                    "inside": bool(move and move.get("direction") == "in"), "gate": (move or {}).get("gate", "")})
    return out
