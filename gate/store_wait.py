"""Opening the store at start-up: a corrupt one is set aside (gate/integrity.py); one
that cannot be used just now (a full disk, an I/O or permission error) is kept, and
the gate waits for it with its relays locked, saying why."""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from gate.integrity import CheckResult, StoreUnavailable, ensure_sound, is_corruption, unavailable_reason

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Opened(Generic[T]):
    integrity: CheckResult
    value: T
    waited: str | None  # what kept the store unusable, and for how long; None if nothing did


def open_when_usable(
    path: Path, first_open: Callable[[], T], waiting: Callable[[str], bool] | None
) -> Opened[T]:
    """Check the store, then ``first_open()`` it (migrations, restore). While either
    fails for a reason other than corruption, call ``waiting(why)`` and try again;
    without ``waiting``, or when it returns False, raise StoreUnavailable."""
    first: str | None = None
    t0 = time.monotonic()
    while True:
        try:
            result = ensure_sound(path)  # a corrupt store is moved aside, never used
            value = first_open()
        except StoreUnavailable as exc:
            why = str(exc)
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise
            why = unavailable_reason(exc, path)
        except OSError as exc:  # the store's directory cannot be made or entered
            why = unavailable_reason(exc, path)
        else:
            waited = None
            if first is not None:
                waited = f"the store could not be used for {time.monotonic() - t0:.0f} s: {first}"
                log.warning("store %s usable again; %s", path, waited)
            return Opened(result, value, waited)
        if why != first:
            log.error("%s", why)
        first = first or why
        if waiting is None or not waiting(why):
            raise StoreUnavailable(why)
