"""Policy replay (a dry run): the recorded decisions of a period run through a new
policy, to see what a rule change would have done before it goes live.

Each decision the lanes made is stored with the policy's inputs (events.situation:
gate.core.policy.Situation as JSON: the pass as it was, the readings, whether the pass
was inside, the holder-check draw, the time). Replaying calls the same pure
``decide`` on those inputs with the new policy and compares. It re-decides each
recorded decision on its own facts; what would have followed differently (a retest
that would not have been asked for, a person who would have measured after all) is
not invented: a new outcome of ``wait`` means the new policy would still have been
waiting for a temperature the recording does not have.

Decisions recorded without their inputs (the guard's answers, the exit button, and
anything recorded before situations were kept) are counted as not replayable.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from typing import Any

from gate.config import PolicyConfig
from gate.core.policy import decide, situation_from_json
from gate.core.words import CLI, both


@dataclass(frozen=True)
class Example:
    seq: int
    at: str  # local time, ISO 8601
    lane: str
    pass_id: str | None
    category: str | None
    temperatures: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "lane": self.lane, "pass": self.pass_id, "category": self.category,
                "temperatures": list(self.temperatures)}


@dataclass
class Transition:
    old: tuple[str, str]  # (decision, reason) recorded
    new: tuple[str, str]  # (decision, reason) under the new policy
    count: int = 0
    examples: list[Example] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "old": {"decision": self.old[0], "reason": self.old[1]},
            "new": {"decision": self.new[0], "reason": self.new[1]},
            "count": self.count,
            "examples": [e.to_json() for e in self.examples],
        }


@dataclass
class ReplayResult:
    since: str
    until: str
    decisions: int = 0  # recorded decisions in the period
    replayed: int = 0
    not_replayable: Counter[str] = field(default_factory=Counter)  # by recorded reason
    unchanged: int = 0
    transitions: list[Transition] = field(default_factory=list)  # only the changed ones, most first
    unchanged_by: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return sum(t.count for t in self.transitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "decisions": self.decisions,
            "replayed": self.replayed,
            "not_replayable": dict(sorted(self.not_replayable.items())),
            "unchanged": self.unchanged,
            "changed": self.changed,
            "transitions": [t.to_json() for t in self.transitions],
        }


def replay(conn: Any, policy: PolicyConfig, since: date, until: date, tz: tzinfo, *, examples: int = 3) -> ReplayResult:
    """Every decision recorded on local days since..until (inclusive), re-decided."""
    result = ReplayResult(since.isoformat(), until.isoformat())
    found: dict[tuple[tuple[str, str], tuple[str, str]], Transition] = {}
    rows = conn.execute(
        "SELECT seq, ts, lane, pass_id, category, decision, reason, situation FROM events"
        " WHERE type = 'decision' AND day >= ? AND day <= ? ORDER BY seq",
        (since.isoformat(), until.isoformat()),
    )
    for seq, ts, lane, pass_id, category, decision, reason, situation in rows:
        result.decisions += 1
        if not situation:
            result.not_replayable[reason or "unknown"] += 1
            continue
        try:
            s = situation_from_json(json.loads(situation))
        except (ValueError, KeyError, TypeError):
            result.not_replayable["unreadable"] += 1
            continue
        result.replayed += 1
        v = decide(s, policy)
        old, new = (decision, reason), (v.decision, v.reason)
        if old == new:
            result.unchanged += 1
            result.unchanged_by[old] += 1
            continue
        t = found.get((old, new))
        if t is None:
            t = found[(old, new)] = Transition(old, new)
        t.count += 1
        if len(t.examples) < examples:
            at = datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).isoformat(timespec="seconds")
            t.examples.append(Example(seq, at, lane, pass_id, category, s.temperatures))
    result.transitions = sorted(found.values(), key=lambda t: (-t.count, t.old, t.new))
    return result


def _label(d: tuple[str, str]) -> str:
    if d == ("wait", "temperature"):
        return both(CLI, "wait_unrecorded")
    return f"{d[0]} {d[1]}"


def format_text(r: ReplayResult, *, title: str = "") -> str:
    w = lambda key: both(CLI, key)  # noqa: E731  (the words: gate/core/words.toml [cli])
    lines = []
    if title:
        lines.append(title)
    lines.append(f"{w('recorded_decisions')} {r.since} .. {r.until}: {r.decisions}")
    if r.not_replayable:
        why = ", ".join(f"{k} {v}" for k, v in sorted(r.not_replayable.items()))
        lines.append(f"  {w('not_replayable')}: {sum(r.not_replayable.values())} ({why})")
    lines.append(f"  {w('replayed')}: {r.replayed}; {w('the_same')}: {r.unchanged}; {w('different')}: {r.changed}")
    if not r.transitions:
        lines.append(f"  {w('all_same')}")
        return "\n".join(lines)
    width = max(len(_label(t.old)) for t in r.transitions)
    lines.append("")
    lines.append(f"  {w('recorded'):<{width}}    {w('new_policy'):<30} {w('count')}")
    for t in r.transitions:
        lines.append(f"  {_label(t.old):<{width}} -> {_label(t.new):<30} {t.count}")
        for e in t.examples:
            temps = "/".join(f"{x:.1f}" for x in e.temperatures) + " °C" if e.temperatures else w("no_temperature")
            lines.append(f"  {'':<{width}}      {e.at}  {e.lane:<4} {e.pass_id or '-'} ({e.category or '-'}) {temps}")
    return "\n".join(lines)
