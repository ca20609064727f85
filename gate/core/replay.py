"""Re-deciding recorded decisions under another policy: the one core that `gate policy
replay` (gate/desk/replay.py, a gate's own store) and the office console's replay
(sync/central/console/policy_data.py, every gate's decisions at central) both run, so
the two count the same decisions the same way.

Each recorded situation (gate.core.policy.situation_to_json's) is read back and put
through the same pure ``decide`` with the new policy; the recorded (decision, reason)
and the new one are tallied as a transition, with the first few examples of each. A
decision is re-decided on its own facts only: what would have followed differently (a
retest not asked for, a person who would have measured after all) is not invented, so a
new outcome of ``wait`` means the new policy would still have been waiting for a
temperature the recording does not have. What cannot be re-decided is counted as not
replayable with why (the caller says why; an unreadable situation is "unreadable").
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from gate.config import PolicyConfig
from gate.core.policy import Situation, decide, situation_from_json

Decision = tuple[str, str]  # (decision, reason)


@dataclass
class Transition:
    old: Decision  # recorded
    new: Decision  # under the new policy
    count: int = 0
    examples: list[Any] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.old == self.new


class Tally:
    """Decisions counted one by one: ``redo`` those with a situation, ``skip`` the rest."""

    def __init__(self, policy: PolicyConfig, *, examples: int = 3) -> None:
        self.policy = policy
        self.limit = examples
        self.decisions = 0
        self.replayed = 0
        self.not_replayable: Counter[str] = Counter()  # why -> count
        self.found: dict[tuple[Decision, Decision], Transition] = {}

    def skip(self, why: str) -> None:
        self.decisions += 1
        self.not_replayable[why] += 1

    def redo(self, data: Any, old: Decision, example: Callable[[Situation], Any] | None = None) -> Transition | None:
        """Re-decide one recorded situation (a dict, or a Situation already made);
        ``example(situation)`` makes its example while its transition has room for one.
        Returns its transition, or None when the situation cannot be read."""
        self.decisions += 1
        if isinstance(data, Situation):
            s = data
        else:
            try:
                s = situation_from_json(data)
            except (ValueError, KeyError, TypeError, AttributeError):
                self.not_replayable["unreadable"] += 1
                return None
        self.replayed += 1
        v = decide(s, self.policy)
        new = (v.decision, v.reason)
        t = self.found.get((old, new))
        if t is None:
            t = self.found[(old, new)] = Transition(old, new)
        t.count += 1
        if example is not None and len(t.examples) < self.limit:
            t.examples.append(example(s))
        return t

    @property
    def unchanged(self) -> int:
        return sum(t.count for t in self.found.values() if t.same)

    @property
    def changed(self) -> int:
        return sum(t.count for t in self.found.values() if not t.same)

    def transitions(self, *, same: bool = True) -> list[Transition]:
        """The changed ones first (most first), then, with ``same``, the unchanged."""
        ts = [t for t in self.found.values() if same or not t.same]
        return sorted(ts, key=lambda t: (t.same, -t.count, t.old, t.new))
