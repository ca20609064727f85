"""What central receives, checked and stored one message at a time.

Each message is decoded and validated on its own (sync/codec.py, sync/schemas/);
a bad one is quarantined (sync/central/quarantine.py), counted per gate and reason,
logged once, and acknowledged with the others. Storing is tried for the whole
batch in one transaction (one commit for thousands of events); when that fails,
message by message, which tells the two failures apart:

* the database is down (the write fails, and so does a probe write that has
  nothing to do with the message): nothing is acknowledged, the broker keeps the
  messages, the writer retries with back-off;
* the message cannot be stored (a data error, or it fails again and again while
  the database takes other writes): it goes to quarantine and is acknowledged.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from sync import codec
from sync.central import quarantine
from sync.codec import PayloadError

log = logging.getLogger("sync.central")

_KINDS = {"events": "event", "status": "status", "report": "report"}
MAX_SEQ = (1 << 63) - 1  # SQLite's INTEGER
STORE_ATTEMPTS = 3  # failures of one message, while the database works, before it is set aside


@dataclass(frozen=True)
class Accepted:
    msg: Any  # central's _Inbound: topic, payload, mid, qos, generation, received
    kind: str
    gate: str
    obj: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    msg: Any
    kind: str | None
    gate: str | None
    reason: str
    detail: str
    seq: int | None = None  # a refused event's seq, when it has a usable one: the gate's seq is no hole


def _seq_of(m: Any, gate: str | None) -> int | None:
    """Best effort: the seq a refused event carries (json.loads takes what orjson refuses)."""
    if len(m.payload) > codec.MAX_BYTES["event"]:
        return None
    try:
        obj = json.loads(m.payload)
    except (ValueError, RecursionError):
        return None
    seq = obj.get("seq") if isinstance(obj, dict) and obj.get("gate") == gate else None
    return seq if type(seq) is int and 1 <= seq <= MAX_SEQ else None


def check(m: Any, prefix: str) -> Accepted | Refused | None:
    """Decode and validate one message (no database). None: nothing to store (a
    retained status someone cleared)."""
    p = prefix + "/"
    rest = m.topic[len(p):].split("/") if m.topic.startswith(p) else []
    gate = rest[0] if rest else None
    kind = None
    if len(rest) == 2 and rest[1] in _KINDS:
        kind = _KINDS[rest[1]]
    elif len(rest) == 3 and rest[1:] == ["snapshot", "request"]:
        kind = "snapshot_request"
    elif len(rest) == 3 and rest[1:] == ["presence", "request"]:
        kind = "presence_request"
    if kind is None:
        return Refused(m, None, gate, "topic", "unexpected topic")
    if kind == "status" and not m.payload:
        return None
    try:
        obj = codec.decode(m.payload, kind)
    except PayloadError as exc:
        return Refused(m, kind, gate, exc.reason, exc.detail, _seq_of(m, gate) if kind == "event" else None)
    except Exception as exc:  # noqa: BLE001 - whatever else a payload trips, it stays this message's problem
        return Refused(m, kind, gate, "malformed", f"{type(exc).__name__}: {exc}")
    if obj.get("gate") != gate:
        return Refused(m, kind, gate, "gate_mismatch", f"payload says gate {obj.get('gate')!r}")
    return Accepted(m, kind, gate, obj)


def is_data_error(exc: BaseException) -> bool:
    """An error about the values written, not about the database being there."""
    if isinstance(exc, (ValueError, TypeError, KeyError, OverflowError, UnicodeError)):
        return True
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError)):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.DataError, psycopg.IntegrityError))


Handle = Callable[[Any, list[Accepted], "Counter[str]", list], None]  # (store, accepted messages in order, counts, snaps)
Done = Callable[["Counter[str]", list, list], None]  # (counts, snaps, messages) after a commit


@dataclass
class ReceiptHooks:
    """Central's receipts around each transaction: begin() before it, saw(gate, seq) for a
    quarantined event, flush(db) inside it (what to send), send(...) once it committed."""

    begin: Callable[[], None]
    saw: Callable[[str, int], None]
    flush: Callable[[Any], list]
    send: Callable[[list], None]


_NO_RECEIPTS = ReceiptHooks(lambda: None, lambda gate, seq: None, lambda db: [], lambda items: None)


class Writer:
    """Stores batches for central's writer thread; see the module doc."""

    def __init__(self, *, handle: Handle, done: Done, open_store: Callable[[], Any], stop: threading.Event,
                 count: Callable[[str, int], None], receipts: ReceiptHooks = _NO_RECEIPTS) -> None:
        self.handle = handle
        self.done = done
        self.open_store = open_store
        self.stop = stop
        self.count = count
        self.receipts = receipts
        self._logged: Counter[tuple[str | None, str]] = Counter()

    def store_batch(self, store: Any, checked: list[Accepted | Refused]) -> Any:
        """Store (or quarantine) every message, then hand them to done() to be
        acknowledged. Returns the store to go on with (reopened after an outage)."""
        counts: Counter[str] = Counter()
        snaps: list[Any] = []
        fresh: list[Refused] = []
        self.receipts.begin()
        try:
            with store.db.tx():
                self._some(store, checked, counts, snaps, fresh)
                receipts = self.receipts.flush(store.db)
        except Exception as exc:  # noqa: BLE001 - sorted out message by message below
            if not is_data_error(exc):
                self.count("db_errors", 1)
            log.warning("storing %d messages in one transaction failed (%s); storing them one by one",
                        len(checked), quarantine.clean(str(exc), 200))
            return self._one_by_one(store, checked)
        self._finish(counts, snaps, [c.msg for c in checked], fresh)
        self.receipts.send(receipts)
        return store

    def _some(self, store: Any, checked: list[Accepted | Refused], counts: Counter[str], snaps: list[Any],
              fresh: list[Refused]) -> None:
        """Inside the transaction: quarantine the refused, hand the accepted to handle()
        all at once (it stores them a few statements at a time)."""
        accepted = []
        for c in checked:
            counts["received"] += 1
            if isinstance(c, Refused):
                if self._quarantine(store, c, counts):
                    fresh.append(c)
            else:
                accepted.append(c)
        if accepted:
            self.handle(store, accepted, counts, snaps)

    def _quarantine(self, store: Any, r: Refused, counts: Counter[str]) -> bool:
        counts["bad"] += 1
        counts[f"bad_{r.kind or 'message'}_{r.reason}"] += 1
        counts["quarantined"] += 1
        counts[f"quarantined_{r.gate or '-'}_{r.reason}"] += 1
        if r.kind == "event" and r.gate and isinstance(r.seq, int) and 1 <= r.seq <= MAX_SEQ:
            self.receipts.saw(r.gate, r.seq)  # held, in quarantine: the gate need not send it again
        return quarantine.put(store.db, topic=r.msg.topic, raw=bytes(r.msg.payload), gate=r.gate, kind=r.kind,
                              reason=r.reason, detail=r.detail, seq=r.seq, now=r.msg.received)

    def _finish(self, counts: Counter[str], snaps: list[Any], msgs: list[Any], fresh: list[Refused]) -> None:
        for r in fresh:  # logged once per message, and at most 20 times per gate and reason
            n = self._logged[(r.gate, r.reason)] = self._logged[(r.gate, r.reason)] + 1
            if n <= 20 or n % 1000 == 0:
                log.warning("quarantined %s from gate %s on %s (%s, #%d): %s", r.kind or "message", r.gate,
                            quarantine.clean(r.msg.topic, 200), r.reason, n, quarantine.clean(r.detail, 300))
        self.done(counts, snaps, msgs)

    def _one_by_one(self, store: Any, checked: list[Accepted | Refused]) -> Any:
        delay = 0.2
        for c in checked:
            failures = 0
            while True:
                counts: Counter[str] = Counter()
                snaps: list[Any] = []
                fresh: list[Refused] = []
                self.receipts.begin()
                try:
                    with store.db.tx():
                        self._some(store, [c], counts, snaps, fresh)
                        receipts = self.receipts.flush(store.db)
                    self._finish(counts, snaps, [c.msg], fresh)
                    self.receipts.send(receipts)
                    break
                except Exception as exc:  # noqa: BLE001
                    error = exc
                data = is_data_error(error)
                if not data:
                    self.count("db_errors", 1)
                if self._database_works(store):
                    failures += 1
                    if data or failures >= STORE_ATTEMPTS:
                        self._set_aside(store, c, error)
                        break
                    continue
                # The database itself failed: keep this message and the rest unacknowledged.
                log.error("database unavailable (%s); %s kept unacknowledged, retrying in %.1f s",
                          quarantine.clean(str(error), 200), _plural(len(checked) - checked.index(c)), delay)
                if self.stop.wait(delay):
                    return store  # not acked: the broker delivers them again to the next session
                delay = min(delay * 2, 10.0)
                store = self._reopen(store)
        return store

    def _set_aside(self, store: Any, c: Accepted | Refused, error: BaseException) -> None:
        """A message the working database will not take: to quarantine, and acknowledged."""
        detail = f"{type(error).__name__}: {error}"
        seq = c.obj.get("seq") if isinstance(c, Accepted) and c.kind == "event" else None
        r = Refused(c.msg, c.kind, c.gate, "unstorable", detail, seq) if isinstance(c, Accepted) else c
        counts: Counter[str] = Counter({"received": 1})
        new = False
        receipts: list = []
        self.receipts.begin()
        try:
            with store.db.tx():
                new = self._quarantine(store, r, counts)
                receipts = self.receipts.flush(store.db)
        except Exception as exc:  # noqa: BLE001 - not even its quarantine row: count it and let it go
            counts["unquarantinable"] += 1
            log.error("message on %s dropped: cannot be stored (%s) nor quarantined (%s)",
                      quarantine.clean(c.msg.topic, 200), quarantine.clean(detail, 200), quarantine.clean(str(exc), 200))
        self._finish(counts, [], [c.msg], [r] if new else [])
        self.receipts.send(receipts)

    def _database_works(self, store: Any) -> bool:
        try:
            with store.db.tx():
                store.db.execute("UPDATE meta SET value = value WHERE key = 'passes_version'")
            return True
        except Exception:  # noqa: BLE001
            return False

    def _reopen(self, store: Any) -> Any:
        try:
            store.close()
        except Exception:  # noqa: BLE001
            pass
        try:
            return self.open_store()
        except Exception as exc:  # noqa: BLE001 - still down: the next attempt fails and waits again
            log.debug("reopening the database failed: %s", exc)
            return store


def _plural(n: int) -> str:
    return f"{n} message" + ("" if n == 1 else "s")
