"""Housekeeping on its own threads: retention purge and the pass-table snapshot (hourly
is enough for both), and visitors overstaying (every minute); none is ever on a lane's path."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from gate.store.integrity import pass_table_signature, save_snapshot, snapshot_path
from gate.desk.privacy import purge
from gate.store.database import Store

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, open_store: Callable[[], Store], *, retention_days: int, every_s: float = 3600.0,
                 overstays: Callable[[], int] | None = None, overstay_every_s: float = 60.0) -> None:
        self._open_store = open_store
        self._overstays = overstays
        self.overstay_every_s = overstay_every_s
        self._overstay_thread: threading.Thread | None = None
        self.retention_days = retention_days
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.snapshots = 0  # pass snapshots written (the table had changed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()
        if self._overstays is not None:
            self._overstay_thread = threading.Thread(target=self._watch_overstays, name="overstay", daemon=True)
            self._overstay_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in (self._thread, self._overstay_thread):
            if t is not None:
                t.join(timeout)

    def _watch_overstays(self) -> None:
        assert self._overstays is not None
        while not self._stop.wait(self.overstay_every_s):
            try:
                self._overstays()
            except Exception:
                log.exception("checking for visitors overstaying failed; will try again in %.0f s", self.overstay_every_s)

    def run_once(self, store: Store) -> None:
        # Old pass tables a crash left between a snapshot swap and its cleanup (and a
        # staging nobody holds any more), in short transactions.
        store.clear_snapshot_leftovers(staging=None)
        purge(store, retention_days=self.retention_days)
        store.forget_tombstones()  # removed passes whose QR has expired anyway
        store.ensure_reserve()  # re-made once a full disk has room again
        snap = snapshot_path(store.path)
        if not snap.exists() or time.time() - snap.stat().st_mtime >= self.every_s:
            # Written only when the pass table changed since the last one (SD card wear:
            # 4.4 MB an hour at 50,000 passes for nothing).
            signature = pass_table_signature(store.conn)
            if not snap.exists() or store.get_meta("pass_snapshot_signature") != signature:
                save_snapshot(store.conn, store.path)
                store.set_meta("pass_snapshot_signature", signature)
                self.snapshots += 1
        self.runs += 1

    def _run(self) -> None:
        # First pass a minute after start: start-up stays quick.
        if self._stop.wait(min(60.0, self.every_s)):
            return
        store = self._open_store()
        try:
            while True:
                try:
                    self.run_once(store)
                except Exception:
                    log.exception("maintenance failed; will try again in %.0f s", self.every_s)
                if self._stop.wait(self.every_s):
                    return
        finally:
            store.close()
