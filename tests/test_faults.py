"""The fault harness (bench/faults.py) in short form: real gate daemons, `gate
central` and a mosquitto from the shipped docs config, through gate and central
kill -9s, broker restarts with persistence on and off, a rogue $share subscriber,
a client-id takeover attempt and malformed messages. Every event a gate made is
stored at central exactly once. `pytest -m long` runs the bench's full plan."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import HEADER, Plan, run_plan


def check(plan: Plan, directory: Path) -> None:
    lines = run_plan(plan, print, directory)
    print("\n".join([HEADER, *(x.text() for x in lines)]))
    assert len(lines) == 8
    for x in lines:
        assert x.lost == 0 and x.duplicated == 0, x
    assert all(x.made > 0 for x in lines), "a phase made no events: the stream stopped"


def test_faults_short(tmp_path: Path) -> None:
    check(Plan.short(), tmp_path)


@pytest.mark.long
def test_faults_full(tmp_path: Path) -> None:
    check(Plan(), tmp_path)
