"""Plain terminal lines for what a lane did (for `gate run` and `gate drill`)."""
from __future__ import annotations

import sys
from typing import Any, TextIO

_COLOURS = {"allow": "32", "deny": "31", "retest": "33", "challenge": "35"}


def line(rec: dict[str, Any], *, clock: str | None = None) -> str:
    when = clock if clock is not None else f"t={rec.get('t', 0):>8.2f}s"
    lane = f"{rec['gate']}/{rec.get('lane', '')}" if rec.get("gate") else rec.get("lane", "")
    kind = rec.get("type")
    if kind == "decision":
        temp = rec.get("temperature_c")
        parts = [
            f"{rec['decision'].upper():<9}",
            f"{rec['reason']:<16}",
            f"pass={rec.get('pass') or '-'}",
            f"via={rec.get('credential') or '-'}",
            f"{rec.get('category') or ''}",
            f"{temp:.1f}°C" if temp is not None else "",
            f"rule={rec['rule']}" if rec.get("rule") else "",
            "(presence stale)" if rec.get("presence") == "stale" else "",
        ]
        return f"{when} {lane:<4} " + " ".join(p for p in parts if p)
    if kind == "prompt":
        return f"{when} {lane:<4} say      «{rec['text']}»"
    if kind == "alarm":
        return f"{when} {lane:<4} ALARM    {rec['kind']} {rec.get('detail', '')}".rstrip()
    if kind == "door":
        return f"{when} {lane:<4} door     {rec['action']}"
    return f"{when} {lane:<4} {kind}"


def print_line(rec: dict[str, Any], *, clock: str | None = None, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    text = line(rec, clock=clock)
    colour = _COLOURS.get(rec.get("decision", "")) if rec.get("type") == "decision" else ("31;1" if rec.get("type") == "alarm" else None)
    if colour and out.isatty():
        text = f"\033[{colour}m{text}\033[0m"
    print(text, file=out, flush=True)
