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

The counting is gate/core/replay.py's, which the office console's replay at central
runs too (over the situations the gates send up with their decisions).

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
from gate.core.policy import Situation
from gate.core.replay import Tally, Transition
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


def _transition_json(t: Transition) -> dict[str, Any]:
    return {
        "old": {"decision": t.old[0], "reason": t.old[1]},
        "new": {"decision": t.new[0], "reason": t.new[1]},
        "count": t.count,
        "examples": [e.to_json() for e in t.examples],
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
            "transitions": [_transition_json(t) for t in self.transitions],
        }


def replay(conn: Any, policy: PolicyConfig, since: date, until: date, tz: tzinfo, *, examples: int = 3) -> ReplayResult:
    """Every decision recorded on local days since..until (inclusive), re-decided
    (gate.core.replay: the same core central's console runs)."""
    tally = Tally(policy, examples=examples)
    rows = conn.execute(
        "SELECT seq, ts, lane, pass_id, category, decision, reason, situation FROM events"
        " WHERE type = 'decision' AND day >= ? AND day <= ? ORDER BY seq",
        (since.isoformat(), until.isoformat()),
    )
    for seq, ts, lane, pass_id, category, decision, reason, situation in rows:
        if not situation:
            tally.skip(reason or "unknown")
            continue
        try:
            data = json.loads(situation)
        except ValueError:
            tally.skip("unreadable")
            continue

        def example(s: Situation, seq: int = seq, ts: float = ts, lane: str = lane, pass_id: str | None = pass_id,
                    category: str | None = category) -> Example:
            at = datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).isoformat(timespec="seconds")
            return Example(seq, at, lane, pass_id, category, s.temperatures)

        tally.redo(data, (decision, reason), example)
    result = ReplayResult(since.isoformat(), until.isoformat(), decisions=tally.decisions, replayed=tally.replayed,
                          not_replayable=tally.not_replayable, unchanged=tally.unchanged,
                          transitions=tally.transitions(same=False))
    result.unchanged_by = Counter({t.old: t.count for t in tally.found.values() if t.same})
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
