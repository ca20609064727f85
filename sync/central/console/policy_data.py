"""The site policy in the console: the published one as a document, a document checked,
replayed against the decisions central holds from every gate, and published; the
history of what was published, with its diffs and who published it.

- The document is gate/desk/policy_admin.py's (``to_toml``, read back to the same policy;
  its ``diff``), and a document is checked as gate/config checks one: every error names
  the key and what was expected.
- Publishing is ``gate central policy publish``'s: the policy signed by central's key
  (sync/central/signer.py), its version above the last, kept in ``policies`` and sent
  retained by the running central's publisher (woken at once). The console adds, in the
  same transaction, who published it with their note and document
  (``console_policy_log``) and the audit row.
- Replay: each decision event carries the decision's inputs (gate.core.policy
  ``Situation``: the pass as the gate held it, every reading, whether a thermometer was
  asked, whether the wait ran out, whether the pass was inside and since when, the
  holder-check draw, the second factor, a fever hold, the lane's schedule and door
  mode) unless the gate has ``[sync] send_situations = false``. The gate leaves out of it
  the pass's id (the event's ``pass`` names it) and unit (central's roster has it); both
  are put back here (the unit only when the policy has rules, the one thing that reads
  it), and the decision is re-decided by gate/core/replay.py's tally, the one `gate policy
  replay` runs at a gate: counts by old -> new, examples, ``wait`` for a temperature the
  recording does not have. A decision without a situation (an older gate, a gate that
  keeps them, a guard's answer, an erased pass's) is counted as not replayable, with why,
  except a problem found before any pass (a malformed or forged code, an unknown card),
  which every policy refuses first; nothing is guessed.
"""
from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from gate.config import PolicyConfig, format_errors
from gate.core.policy import Situation
from gate.core.replay import Tally, Transition
from gate.desk.policy_admin import diff, to_toml
from sync.central.console import audit
from sync.central.site_report import day_range, known_gates

SOURCE = "policy"
# Found before any pass is looked at: decide() refuses them first, whatever the policy.
REPLAYABLE = ("malformed", "forged", "unknown_card")
MAX_REPLAY_DAYS = 366


class PolicyError(Exception):
    """A document that is not a policy, or cannot be published; ``lines`` name each key."""

    def __init__(self, lines: list[str], code: str = "invalid", **fill: Any) -> None:
        super().__init__("\n".join(lines))
        self.lines, self.code, self.fill = lines, code, fill


def version_low(v: int, published: int) -> PolicyError:
    return PolicyError([f"{SOURCE}.version: {v} is not above the published version {published}; make it {published + 1}"],
                       "version_low", v=v, p=published, n=published + 1)


@dataclass(frozen=True)
class Published:
    version: int
    ts: float
    policy: PolicyConfig
    who: str | None  # None: published by `gate central policy publish` or the policy file
    note: str


def _published(row: Any) -> Published:
    payload = json.loads(row[1])
    return Published(int(row[0]), float(row[2]), PolicyConfig.model_validate(payload["policy"]),
                     row[3], row[4] or "")


def current(db: Any) -> Published | None:
    row = db.one("SELECT p.version, p.payload, p.ts, l.who, l.note FROM policies p LEFT JOIN console_policy_log l"
                 " ON l.version = p.version ORDER BY p.version DESC LIMIT 1")
    return _published(row) if row else None


def document(pub: Published | None) -> str:
    """The published policy as a document to edit, its version already the next one."""
    base = pub.policy if pub else PolicyConfig()
    nxt = (pub.version if pub else 0) + 1
    body = to_toml(base.model_copy(update={"version": nxt})).split("\n")
    head = [f"# the site's policy: check it, replay it, then publish it with a note (version above {nxt - 1})"]
    return "\n".join(head + [ln for ln in body if not ln.startswith("# gate policy document") and not ln.startswith("# and `gate")])


def parse(text: str) -> PolicyConfig:
    """A document's policy, or PolicyError naming each key and what was expected."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{SOURCE}: not TOML: {exc}"]) from None
    body = data.get("policy", data)
    if not isinstance(body, dict):
        raise PolicyError([f"{SOURCE}: [policy] must be a table"])
    try:
        return PolicyConfig.model_validate(body)
    except ValidationError as exc:
        lines = format_errors(SOURCE, exc, body).splitlines()[1:]
        raise PolicyError([ln.strip().replace(f"{SOURCE}: ", f"{SOURCE}.", 1) for ln in lines]) from None


def changes(pub: Published | None, new: PolicyConfig) -> list[dict[str, Any]]:
    return diff(pub.policy if pub else PolicyConfig(), new)


def publish(store: Any, conf: Any, policy: PolicyConfig, text: str, *, who: str, note: str) -> int:
    """Sign, keep and audit ``policy`` as ``gate central policy publish`` would; the
    caller wakes central's publisher. Returns the version."""
    from sync.central.signer import Signer

    db = store.db
    latest = current(db)
    if latest and policy.version <= latest.version:
        raise version_low(policy.version, latest.version)
    payload = Signer(conf.signing_key, conf.topics, conf.name).policy(policy)
    summary = "; ".join(f"{c['key']}: {_show(c['old'])} -> {_show(c['new'])}" for c in changes(latest, policy))
    with db.tx():
        if not store.store_policy(payload):
            raise version_low(policy.version, policy.version)  # published meanwhile, by someone else
        db.execute("INSERT INTO console_policy_log (version, ts, who, note, document) VALUES (?,?,?,?,?)",
                   (payload["version"], time.time(), who, note, text))
        audit.record(db, who, "policy_publish", f"v{payload['version']}", note,
                     f"v{latest.version if latest else 0} -> v{payload['version']}: {summary}"[:2000])
    return int(payload["version"])


def _show(v: Any) -> str:
    return "(off)" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def history(db: Any, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first: each published version, when, by whom (and their note), what it changed."""
    rows = db.all("SELECT p.version, p.payload, p.ts, l.who, l.note FROM policies p LEFT JOIN console_policy_log l"
                  " ON l.version = p.version ORDER BY p.version DESC LIMIT ?", (limit + 1,))
    pubs = [_published(r) for r in rows]
    out = []
    for i, p in enumerate(pubs[:limit]):
        before = pubs[i + 1] if i + 1 < len(pubs) else None
        out.append({"version": p.version, "ts": p.ts, "who": p.who, "note": p.note,
                    "previous": before.version if before else None,
                    "changes": diff(before.policy, p.policy) if before else []})
    return out


# ---------------------------------------------------------------- replay


@dataclass
class Replay:
    since: str
    until: str
    decisions: int = 0
    replayed: int = 0
    unchanged: int = 0
    transitions: list[Transition] = field(default_factory=list)  # changed first, then the same
    not_replayable: dict[str, int] = field(default_factory=dict)  # why -> count
    not_replayable_by: dict[tuple[str, str], int] = field(default_factory=dict)  # recorded (decision, reason) -> count

    @property
    def changed(self) -> int:
        return sum(t.count for t in self.transitions if not t.same)

    @property
    def skipped(self) -> int:
        return sum(self.not_replayable.values())


class _Units:
    """A pass's unit for the community's rules (pass.unit), which the gates leave out of
    the situations they send: central's roster row, else its visitor register; one
    lookup a pass."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.known: dict[str, str | None] = {}

    def __call__(self, pass_id: str) -> str | None:
        if pass_id not in self.known:
            row = self.db.one("SELECT unit FROM passes WHERE id = ?", (pass_id,)) or \
                self.db.one("SELECT unit FROM visitors WHERE pass_id = ?", (pass_id,))
            self.known[pass_id] = row[0] if row else None
        return self.known[pass_id]


def _filled(sit: dict[str, Any], ev: dict[str, Any], units: _Units | None) -> dict[str, Any] | None:
    """The situation a gate sent, its pass given back the id the event names and (when
    the policy has rules, which may read it) the unit central's roster gives it. None
    when the event no longer names its pass (erased: its situation went with it too)."""
    p = sit.get("pass")
    if p is None:
        return sit
    if not isinstance(p, dict) or not ev.get("pass"):
        return None
    pid = str(ev["pass"])
    return {**sit, "pass": {**p, "id": pid, "unit": units(pid) if units is not None else None}}


def replay(db: Any, policy: PolicyConfig, since: date, until: date, tz: Any, *, examples: int = 3) -> Replay:
    """Every decision central holds from the gates' local days since..until, re-decided
    by gate/core/replay.py's tally (the one `gate policy replay` runs at a gate) from the
    situation the gate sent with it (see the module's docstring)."""
    tally = Tally(policy, examples=examples)
    by: dict[tuple[str, str], int] = {}
    units = _Units(db) if policy.rules else None
    cond, bounds = day_range(db, since.isoformat(), until.isoformat())

    def skip(why: str, old: tuple[str, str]) -> None:
        tally.skip(why)
        by[old] = by.get(old, 0) + 1

    for gate in sorted(known_gates(db)):
        cur = db.execute(f"SELECT body FROM events WHERE gate = ? AND type = 'decision' AND {cond} ORDER BY gate, ts",
                         (gate, *bounds))
        while rows := cur.fetchmany(1000):
            for (body,) in rows:
                ev = json.loads(body)
                old = (str(ev.get("decision")), str(ev.get("reason")))
                try:
                    now = datetime.fromisoformat(ev["ts"]).astimezone(tz)
                except (KeyError, ValueError, TypeError):
                    skip("unreadable", old)
                    continue

                def example(s: Situation, gate: str = gate, ev: dict[str, Any] = ev, now: datetime = now) -> dict[str, Any]:
                    return {"gate": gate, "at": now.strftime("%m-%d %H:%M:%S"), "lane": ev.get("lane") or "",
                            "pass": ev.get("pass"), "card": ev.get("card"), "temperatures": list(s.temperatures)}

                sit = ev.get("situation")
                if isinstance(sit, dict):
                    data = _filled(sit, ev, units)
                    if data is None:
                        skip("erased", old)
                    elif tally.redo(data, old, example) is None:
                        by[old] = by.get(old, 0) + 1  # counted "unreadable" by the tally
                elif old[0] == "deny" and old[1] in REPLAYABLE:
                    # a gate that sent no situation: a problem found before any pass is
                    # refused first whatever the policy, so this one is re-decided anyway
                    tally.redo(Situation(direction=ev.get("direction") or "in", now=now, pass_=None, problem=old[1],
                                         lane=ev.get("lane") or "", gate=gate), old, example)
                else:
                    skip("guard" if ev.get("who") else "situation", old)
    return Replay(since.isoformat(), until.isoformat(), decisions=tally.decisions, replayed=tally.replayed,
                  unchanged=tally.unchanged, transitions=tally.transitions(),
                  not_replayable=dict(tally.not_replayable), not_replayable_by=by)
