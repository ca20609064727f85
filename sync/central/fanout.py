"""Central's threads that answer gates: roster snapshots to the gate that asked (at
most one a gate per interval), and presence to every gate with replays for gaps."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from sync.central import presence_relay
from sync.central.config import CentralConfig
from sync.central.peer import MqttPeer
from sync.central.signer import Signer
from sync.central.snapshot import Snapshot, build_snapshot
from sync.central.snapshot_limit import SnapshotLimiter
from sync.central.store import CentralStore

log = logging.getLogger("sync.central")


class Snapshots:
    """The snapshot thread (``run``): requests from the writer, chunks out, signed."""

    def __init__(
        self, config: CentralConfig, peer: MqttPeer, signer: Signer, db_url: str, *,
        requests: queue.Queue[tuple[str, dict[str, Any]]], stop: threading.Event, count: Callable[..., None],
    ) -> None:
        self.config, self.peer, self.signer, self.db_url = config, peer, signer, db_url
        self.topics = config.topics
        self._requests, self._stop, self._count = requests, stop, count
        self._cache: Snapshot | None = None

    def snapshot(self, store: CentralStore) -> Snapshot:
        """The current table as compressed chunks (cached per version)."""
        cached = self._cache
        if cached is not None and cached.version == store.passes_version:
            return cached
        version, lines = store.snapshot_lines()
        snap = build_snapshot(version, lines, self.config.snapshot_chunk)
        self._cache = snap
        return snap

    def run(self) -> None:
        store = CentralStore(self.db_url)
        limiter = SnapshotLimiter(self.config.snapshot_interval_s)  # one a gate per interval (sync/central/snapshot_limit.py)
        try:
            while not self._stop.is_set():
                answer: list[tuple[str, dict[str, Any]]] = []
                try:
                    gate, req = self._requests.get(timeout=0.2)
                    if limiter.offer(gate, req, time.monotonic()):
                        answer.append((gate, req))
                    else:
                        self._count("snapshot_requests_held")
                except queue.Empty:
                    pass
                for gate, req in answer + limiter.due(time.monotonic()):
                    self._send(store, gate, req)
        finally:
            store.close()

    def _send(self, store: CentralStore, gate: str, req: dict[str, Any]) -> None:
        t0 = time.monotonic()
        snap = self.snapshot(store)
        topic = self.topics.gate(gate).snapshot
        mids = [
            self.peer.publish(topic, chunk)
            for chunk in self.signer.snapshot_chunks(req["request_id"], snap.version, snap.sha256, list(snap.datas))
        ]
        ok = self.peer.wait(mids, 120)
        self._count("snapshots" if ok else "publish_failures")
        log.info("snapshot v%d (%d passes, %d chunks) to %s in %.2f s%s", snap.version, snap.passes,
                 len(snap.datas), gate, time.monotonic() - t0, "" if ok else " (not all acknowledged)")


class Presence:
    """The presence thread (``run``): presence to every gate as it is stored, the retained
    head as a heartbeat, and replays to a gate that missed some (presence_relay.py)."""

    def __init__(
        self, config: CentralConfig, peer: MqttPeer, signer: Signer, db_url: str, *,
        replays: queue.Queue[tuple[str, int]], wake: threading.Event, stop: threading.Event, count: Callable[..., None],
    ) -> None:
        self.config, self.peer, self.signer, self.db_url = config, peer, signer, db_url
        self._replays, self._wake, self._stop, self._count = replays, wake, stop, count

    def run(self) -> None:
        store = CentralStore(self.db_url)
        relay = presence_relay.Relay(self.signer.key, self.signer.by, self.config.topics, self.config.presence_heartbeat_s)
        try:
            while not self._stop.is_set():
                self._wake.wait(min(1.0, self.config.presence_heartbeat_s))
                self._wake.clear()
                if self._stop.is_set() or not self.peer.connected.is_set():
                    continue
                relay.publish(store, self.peer.publish_wait)
                while not self._replays.empty():
                    gate, start = self._replays.get_nowait()
                    self._count("presence_replays")
                    relay.replay(store, gate, start, self.peer.publish_wait)
        finally:
            store.close()
