"""Small helpers the tests share: run a drill given as YAML text."""
from __future__ import annotations

import textwrap
from typing import Any

from gate import drill, drill_file


def run_drill(text: str, **kw: Any) -> drill.DrillResult:
    return drill.run(drill_file.parse(textwrap.dedent(text)), **kw)


def decisions(result: drill.DrillResult, **match: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in result.lines
        if line["type"] == "decision" and all(line.get(k) == v for k, v in match.items())
    ]


def of_type(result: drill.DrillResult, kind: str) -> list[dict[str, Any]]:
    return [line for line in result.lines if line["type"] == kind]
