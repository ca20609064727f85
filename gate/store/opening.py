"""Opening the store at start-up: a corrupt one is set aside (gate/store/integrity.py); one
that cannot be used just now (a full disk, an I/O or permission error) is kept, and
the gate waits for it with its relays locked, saying why."""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from gate.store.integrity import CheckResult, StoreUnavailable, ensure_sound, is_corruption, unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Opened(Generic[T]):
    integrity: CheckResult
    value: T
    waited: str | None  # what kept the store unusable, and for how long; None if nothing did


def open_when_usable(
    path: Path, first_open: Callable[[], T], waiting: Callable[[StoreUnavailable], bool] | None,
    reserve: Path | None = None,
) -> Opened[T]:
    """Check the store, then ``first_open()`` it (migrations, restore). While either
    fails for a reason other than corruption, call ``waiting(error)`` and try again;
    without ``waiting``, or when it returns False, raise StoreUnavailable. A full disk
    first gets the ``reserve`` file (Store.reserve_path): it is there for this."""
    first: str | None = None
    released = False
    t0 = time.monotonic()
    while True:
        try:
            result = ensure_sound(path)  # a corrupt store is moved aside, never used
            value = first_open()
        except StoreUnavailable as exc:
            err = exc
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise
            err = unavailable(exc, path)
        except OSError as exc:  # the store's directory cannot be made or entered
            err = unavailable(exc, path)
        else:
            waited = None
            if first is not None:
                how = "the disk reserve was released to start" if released else \
                    f"the store could not be used for {time.monotonic() - t0:.0f} s"
                waited = f"{how}: {first}"
                log.warning("store %s usable again; %s", path, waited)
            return Opened(result, value, waited)
        why = str(err)
        if why != first:
            log.error("%s", why)
        first = first or why
        if err.kind == "full" and reserve is not None and not released and reserve.exists():
            reserve.unlink()
            released = True
            log.warning("store %s: the disk is full at start: released the reserve %s", path, reserve)
            continue
        if waiting is None or not waiting(err):
            raise err
