"""Central's publisher thread: signed pass batches from the change log, the latest
batch and policy again on every (re)connect, the policy file, the key list and the
gate key list."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from gate.config import ConfigError, load_policy
from sync import gatekeys, keylist
from sync.central.config import CentralConfig
from sync.central.peer import MqttPeer
from sync.central.signer import Signer
from sync.central.store import CentralStore

log = logging.getLogger("sync.central")


class Publisher:
    """What central sends to every gate, from its own store (one thread: ``run``)."""

    def __init__(
        self, config: CentralConfig, peer: MqttPeer, signer: Signer, db_url: str, *,
        stop: threading.Event, wake: threading.Event, count: Callable[..., None],
    ) -> None:
        self.config, self.peer, self.signer, self.db_url = config, peer, signer, db_url
        self.topics = config.topics
        self._stop, self._wake, self._count = stop, wake, count
        self.republish_head = threading.Event()  # set on every (re)connect
        self._keylist = keylist.Republisher()  # withdrawn keys (sync/keylist.py)
        self._gatekeys = gatekeys.Republisher()  # the site's gate keys (sync/gatekeys.py)
        self._published_policy = 0
        self._policy_mtime: float | None = None

    def run(self) -> None:
        store = CentralStore(self.db_url)
        try:
            published = int(store.get_meta("published_version") or 0)
            last_policy_check = 0.0
            while not self._stop.is_set():
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if not self.peer.connected.is_set():
                    continue
                if time.monotonic() - last_policy_check >= self.config.poll_s:
                    last_policy_check = time.monotonic()
                    if self.config.policy_file:
                        self.load_policy_file(store)
                    self._publish_policy(store)
                    self._keylist.poll(store, self._publish_keylist)
                    self._gatekeys.poll(store, self._publish_gatekeys)
                if self.republish_head.is_set():
                    self.republish_head.clear()
                    self._publish_head(store)
                    self._keylist.poll(store, self._publish_keylist, again=True)
                    self._gatekeys.poll(store, self._publish_gatekeys, again=True)
                # another instance (or the CLI) may have published further
                published = max(published, int(store.get_meta("published_version") or 0))
                head = store.passes_version
                while head > published and not self._stop.is_set() and self.peer.connected.is_set():
                    if head - published > self.config.snapshot_backlog:
                        log.warning("%d unpublished changes: sending only the head; gates will ask for a snapshot", head - published)
                        self._count("skipped_ahead")
                        published = head - min(self.config.batch_size, head)
                    sent = self._publish_batch(store, published)
                    if sent is None:
                        self._wake.set()  # retry at the next poll
                        break
                    published = sent
                    store.set_meta("published_version", str(published))
                    head = store.passes_version
        finally:
            store.close()

    def _publish_batch(self, store: CentralStore, after: int) -> int | None:
        rows = store.changes_after(after, self.config.batch_size)
        if not rows:
            return None
        first, last = rows[0][0], rows[-1][0]
        from_v = after if first == after + 1 else first - 1  # a compacted log: gates behind see a gap
        payload = self.signer.passes_batch(from_v, last, [json.loads(c) for _, c in rows])
        ok = self.peer.publish_wait(self.topics.passes, payload, retain=self.config.retain_passes, timeout=30)
        if not ok:
            self._count("publish_failures")
            return None
        self._count("batches")
        self._count("changes_published", len(rows))
        return last

    def _publish_head(self, store: CentralStore) -> None:
        """On (re)connect: resend the latest batch (retained), so gates learn the head
        even if the broker lost its retained messages."""
        published = int(store.get_meta("published_version") or 0)
        if published <= 0 or not self.config.retain_passes:
            return
        start = max(0, published - self.config.batch_size)
        rows = [r for r in store.changes_after(start, self.config.batch_size) if r[0] <= published]
        if rows:
            from_v = rows[0][0] - 1
            payload = self.signer.passes_batch(from_v, rows[-1][0], [json.loads(c) for _, c in rows])
            self.peer.publish(self.topics.passes, payload, retain=True)
        latest = store.latest_policy()
        if latest:
            self.peer.publish(self.topics.policy, latest, retain=True)
            self._published_policy = max(self._published_policy, latest["version"])

    def _publish_keylist(self, payload: dict[str, Any]) -> bool:
        return self.peer.publish_wait(self.topics.keys, payload, retain=True, timeout=10)

    def _publish_gatekeys(self, payload: dict[str, Any]) -> bool:
        return self.peer.publish_wait(self.topics.gatekeys, payload, retain=True, timeout=10)

    def load_policy_file(self, store: CentralStore, force: bool = False) -> None:
        """Sign and keep the policy file when it changed (with force: read it now, and a
        broken file is a ConfigError); the loop publishes it."""
        path = self.config.policy_file
        assert path is not None
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            if force:
                raise ConfigError(f"{path}: {exc}") from None
            return
        if not force and mtime == self._policy_mtime:
            return
        self._policy_mtime = mtime
        try:
            policy = load_policy(path)
            payload = self.signer.policy(policy)
        except (ConfigError, ValueError) as exc:
            if force:
                raise ConfigError(f"{path}: {exc}") from None
            log.error("policy file %s not published: %s", path, exc)
            return
        latest = store.latest_policy()
        if latest and latest["version"] >= payload["version"]:
            if latest["version"] == payload["version"] and latest["policy"] != payload["policy"]:
                log.error("policy file %s changed but keeps version %d: bump the version to publish it", path, payload["version"])
            return
        store.store_policy(payload)
        self._wake.set()

    def _publish_policy(self, store: CentralStore) -> None:
        latest = store.latest_policy()
        if latest is None or latest["version"] <= self._published_policy:
            return
        if self.peer.publish_wait(self.topics.policy, latest, retain=True, timeout=10):
            self._published_policy = latest["version"]
            self._count("policies")
            log.info("policy version %d published", latest["version"])
