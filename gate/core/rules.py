"""Rules a community writes itself (`policy.rules`): CEL expressions over the pass,
the lane and the time, compiled once when the policy loads.

CEL (Common Expression Language) is what it is for: side-effect free, not Turing
complete, cheap to evaluate (a few microseconds through the `cel` bindings), with
errors that give a position. A pass without an attribute an expression reads does
not meet it: any evaluation error counts as "no", so a typo in a roster refuses
rather than admits.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import cel

from gate.core.records import PassRecord

log = logging.getLogger(__name__)

# The names an expression may use; anything else is a mistake in the rule.
VARIABLES = ("pass", "lane", "direction", "now", "time", "gate")


class RuleError(ValueError):
    """An expression that does not compile or names an unknown variable."""


@functools.lru_cache(maxsize=512)
def compile_expression(text: str) -> Any:
    """A compiled CEL program (pure: the same text gives the same program)."""
    try:
        program = cel.compile(text)
    except ValueError as exc:
        # The binding's message already carries the line, the column and a caret.
        raise RuleError(str(exc).replace("Failed to parse expression", "cannot parse").strip()) from None
    unknown = sorted({v.split(".")[0] for v in program.variables()} - set(VARIABLES))
    if unknown:
        raise RuleError(f"unknown name {', '.join(unknown)} (an expression may use {', '.join(VARIABLES)})")
    return program


@dataclass(frozen=True)
class Facts:
    """What a rule sees of one credential at one lane at one moment."""

    pass_: PassRecord
    lane: str
    direction: str
    gate: str
    now: datetime  # local, aware


def context(f: Facts) -> Any:
    """The facts as a CEL context, converted once for every rule of a decision."""
    return cel.Context(variables=_variables(f))


def _variables(f: Facts) -> dict[str, Any]:
    p = f.pass_
    iso = lambda v: None if v is None else v.isoformat()  # noqa: E731
    return {
        "pass": {
            "id": p.id,
            "category": p.category,
            "unit": p.unit or "",
            "valid_from": iso(p.valid_from),
            "valid_until": iso(p.valid_until),
            "observation_until": iso(p.observation_until),
            "pcr_at": iso(p.pcr_at),
            "health_code": p.health_code,
            "listed": p.listed,
            "attributes": dict(p.attributes or {}),
        },
        "lane": {"name": f.lane, "direction": f.direction},
        "direction": f.direction,
        "gate": f.gate,
        # CEL takes fixed offsets only (not an IANA zone): the same instant, same offset.
        "now": f.now.astimezone(timezone(f.now.utcoffset() or timedelta(0))),
        "time": {
            "hour": f.now.hour,
            "minute": f.now.minute,
            "hm": f.now.strftime("%H:%M"),
            "weekday": f.now.isoweekday(),  # 1 Monday .. 7 Sunday
            "date": f.now.date().isoformat(),
        },
    }


def holds(expression: str, ctx: Any, rule: str) -> bool | None:
    """Does the expression hold? A field or attribute the pass does not have is no;
    any other error (a type mismatch, a division by zero) is None: the caller fails
    closed, so a broken rule refuses rather than admits."""
    try:
        result = compile_expression(expression).execute(ctx)
    except KeyError as exc:
        log.debug("rule %s: %r is not met (no %s)", rule, expression, exc)
        return False
    except Exception as exc:  # the binding raises TypeError, ValueError, ZeroDivisionError ...
        log.warning("rule %s: %r cannot be evaluated (%s: %s)", rule, expression, type(exc).__name__, exc)
        return None
    return result is True
