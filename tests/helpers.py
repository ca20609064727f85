"""Small helpers the tests share: run a drill given as YAML text; the demo's config in a tmp dir."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from gate.drill import runner as drill

from gate.drill import file as drill_file


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


def demo_config(tmp_path: Path, port: int) -> Path:
    """config/demo.toml with its store in tmp_path and its guard page on 127.0.0.1:port."""
    from tests.conftest import ROOT

    text = (ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    text = (
        text.replace('"../var/demo.db"', f'"{tmp_path / "demo.db"}"')
        .replace('"../var/voice"', f'"{ROOT / "var" / "voice"}"')
        .replace('script = "demo-people.yaml"', f'script = "{ROOT / "config" / "demo-people.yaml"}"')
    )
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text + f'\n[guard]\nlisten = "127.0.0.1:{port}"\n', encoding="utf-8")
    return cfg
