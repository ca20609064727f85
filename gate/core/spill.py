"""What a lane does when the disk is full (gate/core/lane.py _store_record): which errors
mean it, and how the events held in memory past the reserve are announced."""
from __future__ import annotations

import logging
import sqlite3
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

_SQLITE_FULL = 13


def disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_FULL) or "full" in str(exc)


def should_tell(held: int) -> bool:
    """Alarm at 1, 2, 4, 8 ... 64 held events, then every 100: often enough that the
    count on the guard page is current, not an alarm per person."""
    return held & (held - 1) == 0 if held <= 64 else held % 100 == 0


def held_in_memory(held: int) -> str:
    return (f"storage full past the reserve: {held} events held in memory only "
            "(lost on a power cut); free space to write them")


def show(sinks: Iterable[Callable[[Any], None]], rec: Any) -> None:
    """Hand a record to the display sinks now (it cannot be stored yet)."""
    for sink in list(sinks):
        try:
            sink(rec)
        except Exception:
            log.exception("display sink failed")
