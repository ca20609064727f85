"""Presence across the site, the gate's side: central's signed presence news
(movements and fever holds at the other gates) applied to this gate's store, so
passback and fever holds count here too (gate/core/site.py), and how fresh that news is
(every presence message, the retained head included, is news from the site).

Central numbers its log; the gate keeps the last number it applied (meta
`presence_seq`). A message that starts past it, or a head that is ahead of it,
means something was missed: the gate asks central to replay from there
(`{prefix}/{gate}/presence/request`), at most once every few seconds.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable

from drivers.base import Counters
from gate.core import site
from gate.core.site import Hold, Move, News, Release, SiteView
from gate.store.database import Store

log = logging.getLogger(__name__)

ASK_AGAIN_S = 5.0


def news(items: list[dict[str, Any]]) -> list[News]:
    out: list[News] = []
    for it in items:
        if it["kind"] == "move" and it.get("pass") and it.get("direction") and it.get("at"):
            out.append(Move(it["pass"], it["direction"], datetime.fromisoformat(it["at"]), it.get("gate", "")))
        elif it["kind"] == "hold" and it.get("pass") and it.get("alarm_id") and it.get("at"):
            out.append(Hold(it["pass"], it["alarm_id"], datetime.fromisoformat(it["at"]), it.get("gate", "")))
        elif it["kind"] == "release" and it.get("alarm_id"):
            out.append(Release(it["alarm_id"]))
    return out


class PresenceFollower:
    def __init__(self, view: SiteView, ask: Callable[[int], bool], now: Callable[[], datetime], counters: Counters) -> None:
        self.view = view
        self._ask = ask  # publishes a replay request from this sequence number; False when offline
        self._now = now
        self.counters = counters
        self._asked_at = -ASK_AGAIN_S
        # For catch_up (another thread): answers to our requests seen, where the latest said
        # the log stands, what is applied.
        self._seen = threading.Condition()
        self._heads = 0
        self._head_seq = 0
        self._have = 0

    def on_message(self, store: Store, msg: dict[str, Any]) -> None:
        self.view.heard(self._now())  # anything signed by central is news of the site
        have = int(store.get_meta("presence_seq") or 0)
        try:
            if msg["seq_from"] > have + 1:
                self._request(have + 1)  # a hole before this message: fill it first
                return
            if msg.get("head") or not msg["items"]:
                if msg["seq_to"] > have:
                    self._request(have + 1)
                return
            fresh = [it for it in msg["items"] if it["seq"] > have]
            if fresh:
                applied = site.apply(store, news(fresh))
                self.counters.inc("presence_applied", applied)
            if msg["seq_to"] > have:
                have = msg["seq_to"]
                store.set_meta("presence_seq", str(have))
        finally:
            with self._seen:
                self._have = have
                if msg.get("head") and msg.get("to"):  # central's answer to a request of ours
                    self._heads += 1
                    self._head_seq = max(self._head_seq, int(msg["seq_to"]))
                self._seen.notify_all()

    def catch_up(self, timeout: float) -> bool:
        """Ask central where its log stands (a replay of what this gate lacks, then the
        head) and wait until this gate has applied all of it: True when it has within
        ``timeout``. A drill through a real broker waits on this instead of sleeping;
        the head's arrival is also fresh news of the site (``view.heard``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._seen:
                heads, start = self._heads, self._have + 1
            if self._ask(start):
                with self._seen:
                    if self._seen.wait_for(lambda: self._heads > heads and self._have >= self._head_seq,
                                           max(0.0, min(1.0, deadline - time.monotonic()))):
                        return True
            elif time.monotonic() < deadline:
                time.sleep(0.05)  # offline: the link is coming up
            if time.monotonic() >= deadline:
                return False

    def _request(self, start: int) -> None:
        if time.monotonic() - self._asked_at < ASK_AGAIN_S:
            return
        self._asked_at = time.monotonic()
        if self._ask(start):
            self.counters.inc("presence_requests")
            log.info("presence: asked central to replay from %d", start)
