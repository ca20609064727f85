"""The gates board, live: one thread reads the board from the database every
``every_s`` seconds (its own connection) and, when what it shows has changed, hands the
rendered board to every open page over server-sent events (``/events``). Pages never
poll; a page that connects gets the current board at once. The number of streams is
bounded (each holds one of the server's threads): when they are all taken a page is told
to try again later (503), and other pages keep working.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger("sync.central.console")


class Live:
    def __init__(self, render: Callable[[], str], *, every_s: float = 2.0, max_streams: int = 4) -> None:
        self.render = render  # the board's HTML as of now (on this thread, with its own store)
        self.every_s = every_s
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._subs: list[queue.Queue[str | None]] = []
        self._last = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renders = 0

    @staticmethod
    def message(html: str) -> str:
        return "event: board\ndata: " + json.dumps({"html": html, "at": time.time()}, ensure_ascii=False) + "\n\n"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.end_streams()
        if self._thread is not None:
            self._thread.join(2.0)

    def end_streams(self) -> None:
        with self._lock:
            for q in self._subs:
                q.put(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                html = self.render()
                self.renders += 1
            except Exception:  # the database away for a moment: the pages keep what they show
                log.exception("console: the board could not be read")
                html = None
            if html is not None and html != self._last:
                self._last = html
                msg = self.message(html)
                with self._lock:
                    for q in self._subs:
                        q.put(msg)
            self._stop.wait(self.every_s)

    def subscribe(self) -> queue.Queue[str | None] | None:
        """A queue of messages for one page (the current board first), or None when every stream is taken."""
        with self._lock:
            if len(self._subs) >= self.max_streams:
                return None
            q: queue.Queue[str | None] = queue.Queue()
            if self._last:
                q.put(self.message(self._last))
            self._subs.append(q)
            return q

    def unsubscribe(self, q: queue.Queue[str | None]) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def stream(self, q: queue.Queue[str | None], stopping: threading.Event, heartbeat_s: float = 15.0) -> Any:
        try:
            yield "retry: 2000\n\n"
            while not stopping.is_set():
                try:
                    msg = q.get(timeout=heartbeat_s)
                except queue.Empty:
                    yield ": ping\n\n"
                    continue
                if msg is None:
                    return
                yield msg
        finally:
            self.unsubscribe(q)
