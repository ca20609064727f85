"""The site of a drill with several gates (`gates:` in DRILLS.md): carries each
gate's news (movements, fever holds) to the others in-process, as central does for
real gates, and lets a drill cut a gate's link (`link: down`) and restore it.

News travels when both ends are linked, at the next `pump()`; the runner pumps
after every step and every timer, so on a live link the news has arrived before
the next thing happens. A gate that is cut off hears nothing, its own news waits,
and both catch up when the link returns.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from gate.core import site
from gate.core.site import News, SiteView
from gate.store.database import Store


@dataclass
class _Item:
    origin: str
    news: News
    delivered: set[str] = field(default_factory=set)


class DrillSite:
    def __init__(self, gates: list[str]) -> None:
        self.gates = list(gates)
        self.views = {g: SiteView() for g in gates}
        self.linked = {g: True for g in gates}
        self._stores: dict[str, Store] = {}
        self._pending: list[_Item] = []
        self._lock = threading.Lock()  # lane threads post news; the runner pumps

    def attach(self, gate: str, store: Store) -> None:
        """The store the news for `gate` is written to (opened in the runner's thread)."""
        self._stores[gate] = store

    def post(self, origin: str, news: News) -> None:
        """From a lane thread of gate `origin`: something the others should hear."""
        with self._lock:
            self._pending.append(_Item(origin, news))

    def set_link(self, gate: str, up: bool, now: datetime) -> None:
        self.pump(now)  # what was said before the cut still travels
        self.linked[gate] = up
        self.pump(now)

    def pump(self, now: datetime) -> None:
        """Deliver what can travel now, in the order it happened."""
        with self._lock:
            items = list(self._pending)
        batches: dict[str, list[News]] = {g: [] for g in self.gates}
        for item in items:
            if not self.linked[item.origin]:
                continue
            for g in self.gates:
                if g != item.origin and g not in item.delivered and self.linked[g]:
                    batches[g].append(item.news)
                    item.delivered.add(g)
        for g, news in batches.items():
            if news:
                site.apply(self._stores[g], news)
        for g in self.gates:
            if self.linked[g]:
                self.views[g].heard(now)
        with self._lock:
            done = {id(i) for i in items if len(i.delivered) == len(self.gates) - 1}
            self._pending = [i for i in self._pending if id(i) not in done]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()
