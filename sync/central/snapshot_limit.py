"""At most one snapshot a gate per interval (issue 12, finding 10).

A snapshot is the whole pass table (megabytes for a large site); 300 requests
from one gate made central publish 82.6 MB. A gate asks again only after a gap or
a timeout, so one answer a minute is plenty: the first request in a window is
answered at once, later ones wait, and when the window ends the latest of them
(the request id the gate is waiting on) is answered. Said in the log once per
gate and window, not once per request.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sync.central")


@dataclass
class _Gate:
    answered_at: float
    pending: dict[str, Any] | None = None
    deferred: int = 0  # requests held back in this window


@dataclass
class SnapshotLimiter:
    interval_s: float = 60.0
    _gates: dict[str, _Gate] = field(default_factory=dict)

    def offer(self, gate: str, request: dict[str, Any], now: float) -> bool:
        """True: answer this request now. False: held (the latest is answered when due)."""
        g = self._gates.get(gate)
        if g is None or now - g.answered_at >= self.interval_s:
            self._gates[gate] = _Gate(now)
            return True
        g.pending = request
        g.deferred += 1
        if g.deferred == 1:
            log.warning("snapshot requests from gate %s are answered at most once every %.0f s: "
                        "the next answer in %.0f s", gate, self.interval_s, g.answered_at + self.interval_s - now)
        return False

    def due(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """Held requests whose gate may be answered again now (one a gate: the latest)."""
        out = []
        for gate, g in list(self._gates.items()):
            if now - g.answered_at < self.interval_s:
                continue
            if g.pending is not None:
                if g.deferred > 1:
                    log.info("snapshot to gate %s: %d requests in %.0f s answered by one", gate, g.deferred, self.interval_s)
                out.append((gate, g.pending))
                self._gates[gate] = _Gate(now)
            else:
                del self._gates[gate]  # quiet gate: forget it
        return out
