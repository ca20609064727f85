from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GATE_SHARED", ROOT.parent / "shared"))


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared folder ({SHARED}) with drills and datasets is missing; set GATE_SHARED")
    return SHARED

from tests.mqtt_broker import broker, broker_factory  # noqa: E402,F401  (real mosquitto fixtures)
