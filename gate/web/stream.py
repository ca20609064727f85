"""The guard page's live stream (`/events`, server-sent events): the state first, then
every change as it happens, a ping every HEARTBEAT_S so that proxies keep the connection
and a closed page is found; a cap per client so that other machines' pages never evict
the kiosk's own stream (gate/web/live.py)."""
from __future__ import annotations

import queue
from typing import Any

from flask import Flask, Response

from gate.web.protect import client, local

HEARTBEAT_S = 15.0


def register(app: Flask, page: Any) -> None:
    @app.get("/events")
    def events() -> Response:
        got = page.live.subscribe(client(), local=local())
        if got is None:  # every stream is taken by other machines' pages: try again later
            return Response("busy\n", 503, mimetype="text/plain", headers={"Retry-After": "10"})
        sub, first = got

        def stream() -> Any:
            try:
                yield "retry: 2000\n\n"
                yield first
                while not page.stopping.is_set():
                    try:
                        msg = sub.queue.get(timeout=HEARTBEAT_S)
                    except queue.Empty:
                        yield ": ping\n\n"  # keeps proxies and the connection awake; finds closed pages
                        continue
                    if msg is None:
                        return
                    yield msg
            finally:
                page.live.unsubscribe(sub)

        return Response(
            stream(), mimetype="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

