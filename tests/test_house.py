"""The house rules of README "Module map" that a reader relies on: every module under
gate/, drivers/ and sync/ says what it is for in a docstring, and none is over 400
lines (a module that grows past it is split by concern, not trimmed)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for top in ("gate", "drivers", "sync") for p in (ROOT / top).rglob("*.py"))
LIMIT = 400


def test_there_are_modules_to_check() -> None:
    assert len(MODULES) > 100


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_is_short_and_says_what_it_is_for(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= LIMIT, f"{path.relative_to(ROOT)}: {lines} lines (at most {LIMIT}): split it by concern"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)}: no module docstring saying what it is for"
