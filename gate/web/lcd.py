"""The optional character LCD beside the gate: the last decision, or an alarm until
it is acknowledged, or an open guard check. A display sink like the page's: the
lane thread only queues the record; a thread of our own writes to the (slow) I2C
display.

The LCD's ROM has no Chinese, so it shows codes in plain English and the unit
(never the holder's name):

    16x2                 20x4
    IN  ALLOW  36.4°     IN  ALLOW     36.4°C
    ok 3-2-501           ok
                         3-2-501  resident
                         08:00:01
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from datetime import tzinfo
from typing import Any

from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, LaneRecord
from gate.core.words import LCD, LCD_ALARMS

log = logging.getLogger(__name__)

# The alarms the LCD shows, in the vocabulary's English column (an HD44780 has no Chinese).
_ALARM_WORDS = {kind: en for kind, (_zh, en) in LCD_ALARMS.items()}
_READY = ["gate", LCD["ready"][1]]


class LcdPresenter:
    def __init__(self, display: Any, tz: tzinfo) -> None:
        self.display = display
        self.tz = tz
        self.cols = display.cols
        self.rows = display.rows
        self._inbox: queue.Queue[LaneRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.last: DecisionRecord | None = None
        self.alarms: OrderedDict[str, AlarmRecord] = OrderedDict()
        self.checks: OrderedDict[str, DecisionRecord] = OrderedDict()
        self.handled = 0
        self._cond = threading.Condition()

    def sink(self, rec: LaneRecord) -> None:
        self._inbox.put_nowait(rec)

    def start(self) -> None:
        self.display.show(_READY)
        self._thread = threading.Thread(target=self._run, name="lcd", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(5)
        try:
            self.display.close()
        except Exception:
            log.exception("closing the LCD failed")

    def wait_handled(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.handled >= n, timeout)

    def _run(self) -> None:
        dirty = False
        while True:
            rec = self._inbox.get()
            if rec is None:
                return
            dirty |= self.apply(rec)
            # Under a burst, write only the state after the last queued record.
            if dirty and self._inbox.empty():
                dirty = False
                try:
                    self.display.show(self.lines())
                except Exception:
                    log.exception("LCD write failed")
            with self._cond:
                self.handled += 1
                self._cond.notify_all()

    def apply(self, rec: LaneRecord) -> bool:
        if isinstance(rec, DecisionRecord):
            self.last = rec
            if rec.challenge_id:
                if rec.decision == "challenge":
                    self.checks[rec.challenge_id] = rec
                else:
                    self.checks.pop(rec.challenge_id, None)
            return True
        if isinstance(rec, AlarmRecord):
            if rec.kind in _ALARM_WORDS:
                self.alarms[rec.id] = rec
                return True
            return False
        if isinstance(rec, AckRecord):
            return self.alarms.pop(rec.alarm_id, None) is not None
        return False

    def lines(self) -> list[str]:
        wide = self.cols >= 20
        if self.alarms:
            a = next(iter(self.alarms.values()))
            more = f" +{len(self.alarms) - 1}" if len(self.alarms) > 1 else ""
            out = [f"!{_ALARM_WORDS[a.kind]}{more}", f"{a.lane.upper()} {a.detail}".strip()]
            if self.rows > 2:
                out += [a.at.astimezone(self.tz).strftime("%H:%M:%S"), LCD["acknowledge"][1]]
            return out
        if self.checks:
            c = next(iter(self.checks.values()))
            out = [f"{LCD['check'][1]} {c.lane.upper()}", f"{c.unit or c.pass_id or ''}"]
            if self.rows > 2:
                out += [c.reason, LCD["answer"][1]]
            return out
        d = self.last
        if d is None:
            return _READY
        temp = "" if d.temperature_c is None else (f"{d.temperature_c:.1f}°C" if wide else f"{d.temperature_c:.1f}°")
        head = f"{d.lane.upper():<3} {d.decision.upper()}"
        first = head + temp.rjust(self.cols - len(head)) if temp else head
        if self.rows == 2:
            return [first, f"{d.reason} {d.unit or ''}".strip()]
        return [
            first,
            d.reason,
            f"{d.unit or d.pass_id or '-'}  {d.category or ''}".strip(),
            d.at.astimezone(self.tz).strftime("%H:%M:%S"),
        ]
