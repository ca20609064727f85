"""Scripted people for the live demo: a drill file played in real time, on a loop,
through the same simulated devices a drill uses."""
from __future__ import annotations

import logging
import threading
import time

from gate.app.gate_app import GateApp
from gate.core.events import AckAlarm
from gate.drill.stimuli import DrillError, Keys, apply_step, pass_rows
from gate.drill.file import Drill

log = logging.getLogger(__name__)


class DemoPlayer:
    def __init__(self, app: GateApp, drill: Drill, keydir, *, loop: bool = True, pause_s: float = 3.0) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.drill = drill
        self.loop = loop
        self.pause_s = pause_s
        self.keys = Keys(keydir)
        app.keyring.add(self.keys.central.public_key())
        self.tokens = {p.id: self.keys.token(p) for p in drill.passes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo", daemon=True)
        self.rounds = 0

    def load_passes(self) -> None:
        store = self.app.open_store()
        try:
            rows, cards = pass_rows(self.drill.passes)
            store.upsert_passes(rows, cards)
            # A new round is a new day at the gate for the script's own people: none of them
            # is inside from the last one, nor held for last round's fever ... (only them: the
            # news of who entered at the site's other gates stays as it came).
            ids = [(p.id,) for p in self.drill.passes]
            with store.write() as c:
                for table in ("inside", "last_move", "fever_holds"):
                    c.executemany(f"DELETE FROM {table} WHERE pass_id = ?", ids)  # noqa: S608 - our own table names
            open_alarms = store.conn.execute(
                "SELECT json_extract(body, '$.id'), lane, kind FROM events WHERE type = 'alarm' AND json_extract(body, '$.id')"
                " NOT IN (SELECT json_extract(body, '$.alarm_id') FROM events WHERE type = 'ack')"
            ).fetchall()
        finally:
            store.close()
        # ... and the demo's guard has seen last round's alarms (the page opens on this round's).
        for alarm_id, lane, kind in open_alarms:
            target = self.app.lanes.get(lane or "")
            if target is not None:
                target.post(AckAlarm(alarm_id, kind or "", who="demo guard"))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.load_passes()
            began = time.monotonic()
            for step in self.drill.steps:
                delay = began + step.at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                try:
                    apply_step(self.app, step, self.tokens)
                except DrillError as exc:
                    log.error("demo step failed: %s", exc)
            self.rounds += 1
            if not self.loop or self._stop.wait(self.pause_s):
                return
