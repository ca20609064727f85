"""The running central (``Central``): the writer that stores and acks what gates
send, the roster API, policy and commands; its publishing threads are in
publisher.py and fanout.py."""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt

from gate.config import PolicyConfig, load_policy
from sync.central import inbound, presence_relay, privacy, privacy_worker, visitors
from sync.central.console import seen as console_seen
from sync.central.config import CentralConfig
from sync.central.fanout import Presence, Snapshots
from sync.central.hardening import share_group
from sync.central.peer import MqttPeer
from sync.central.publisher import Publisher
from sync.central.receipts import ReceiptBook
from sync.central.roster import import_roster
from sync.central.signer import Signer
from sync.central.snapshot import Snapshot
from sync.central.store import CentralStore

log = logging.getLogger("sync.central")


@dataclass
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int
    received: float


class Central:
    """The running central. ``Central(config, db_path)``: db_path (a path or a
    postgresql:// DSN) overrides ``config.db``."""

    def __init__(self, config: CentralConfig, db_path: str | Path | None = None, *, client_id: str | None = None) -> None:
        self.config = config
        self.db_url = str(db_path) if db_path is not None else config.db
        self.topics = config.topics
        self.signer = Signer(config.signing_key, self.topics, config.name)
        self.client_id = client_id or config.mqtt_client_id
        self.group = config.group or share_group(self.signer.key, config.site)
        self.receipts = ReceiptBook(self.signer.key, lambda g: self.topics.gate(g).receipt)  # the writer's
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._inbound: queue.Queue[_Inbound] = queue.Queue()
        self._snap_q: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._presence_q: queue.Queue[tuple[str, int]] = queue.Queue()  # (gate, from): replays asked for
        self._presence_wake = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._writer_core = inbound.Writer(
            handle=self._handle, done=self._stored, open_store=lambda: CentralStore(self.db_url), stop=self._stop,
            count=self._count,
            # End-to-end receipts (sync/central/receipts.py): what each committed transaction stored,
            # and a quarantined event counts as held (the gate stops resending it).
            receipts=inbound.ReceiptHooks(begin=self.receipts.begin, saw=self.receipts.saw,
                                          flush=self.receipts.flush, send=self._send_receipts),
        )
        # the caller's thread (tests, CLI) gets its own store; threads open theirs
        self.store = CentralStore(self.db_url)
        self._subscribed = threading.Event()
        self.peer = MqttPeer(
            config, self.client_id, persistent=True, manual_ack=True,
            on_message=self._on_message, on_connect=self._on_connect,
        )
        self.peer.client.on_subscribe = self._on_subscribe
        # the sending threads (publisher.py, fanout.py); the writer is ours
        self.publisher = Publisher(config, self.peer, self.signer, self.db_url, stop=self._stop, wake=self._wake,
                                   count=self._count)
        self.snapshots = Snapshots(config, self.peer, self.signer, self.db_url, requests=self._snap_q, stop=self._stop,
                                   count=self._count)
        self.presence = Presence(config, self.peer, self.signer, self.db_url, replays=self._presence_q,
                                 wake=self._presence_wake, stop=self._stop, count=self._count)
        # erase commands sent until each gate confirms; the retention purge (sync/central/privacy.py)
        self._privacy_wake = threading.Event()
        self.privacy = privacy_worker.Worker(config, self.peer, self.signer, lambda: CentralStore(self.db_url),
                                      stop=self._stop, wake=self._privacy_wake, count=self._count)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: list[Any], properties: Any) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscriptions refused by the broker: %s (check the ACL for user %s)", bad, self.config.username)
            self._count("subscribe_refused")
        self._subscribed.set()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Central":
        if self.config.policy_file:
            self.publisher.load_policy_file(self.store, force=True)
        for name, fn in (("writer", self._writer), ("publisher", self.publisher.run), ("snapshots", self.snapshots.run),
                         ("presence", self.presence.run), ("privacy", self.privacy.run)):
            t = threading.Thread(target=self._guard(fn), name=f"central-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.peer.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._privacy_wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.peer.stop()
        self.store.close()

    def __enter__(self) -> "Central":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Connected and subscribed (SUBACK received)."""
        deadline = time.monotonic() + timeout
        return self.peer.connected.wait(timeout) and self._subscribed.wait(max(0.0, deadline - time.monotonic()))

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    fn()
                    return
                except Exception:
                    log.exception("central %s failed; restarting it in 1 s", threading.current_thread().name)
                    self._count("thread_restarts")
                    self._stop.wait(1.0)
        return run

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    # ------------------------------------------------------------ inbound
    def _on_connect(self, session_present: bool) -> None:
        self._subscribed.clear()
        t, g = self.topics, self.group
        subs = [
            (t.shared_events(g), 1),
            (f"$share/{g}/{t.all_reports}", 1),
            (f"$share/{g}/{t.snapshot_requests}", 1),
            (f"$share/{g}/{t.presence_requests}", 1),
            (t.all_status, 1),
        ]
        self.peer.client.subscribe([(topic, mqtt.SubscribeOptions(qos=q)) for topic, q in subs])
        self.publisher.republish_head.set()
        self._wake.set()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        # paho's network thread: queue only; the writer stores, then acks
        self._inbound.put(_Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.retain), self.peer.generation, time.time()))

    def _writer(self) -> None:
        store = CentralStore(self.db_url)
        ReceiptBook.create_schema(store.db)
        try:
            while not self._stop.is_set():
                try:
                    first = self._inbound.get(timeout=0.2)
                except queue.Empty:
                    self._send_receipts(self.receipts.tick(store.db))  # holes still open: ask again
                    continue
                batch = [first]
                while len(batch) < 2000:
                    try:
                        batch.append(self._inbound.get_nowait())
                    except queue.Empty:
                        break
                store = self._store_batch(store, batch)
        finally:
            store.close()

    def _store_batch(self, store: CentralStore, batch: list[_Inbound]) -> CentralStore:
        # Each message checked on its own; a bad one is quarantined, never retried (sync/central/inbound.py).
        checked, skipped = [], []
        for m in batch:
            c = inbound.check(m, self.topics.prefix)
            if c is None:  # a retained status someone cleared: nothing to store
                skipped.append(m)
            else:
                checked.append(c)
        if skipped:
            self._stored(Counter({"received": len(skipped), "status_cleared": len(skipped)}), [], skipped)
        return self._writer_core.store_batch(store, checked) if checked else store

    def _stored(self, counts: Counter[str], snaps: list[tuple[str, dict[str, Any]]], msgs: list[_Inbound]) -> None:
        """After a commit: count, queue snapshot requests, and let the broker forget them."""
        with self._lock:
            self.counters.update(counts)
        if counts.get("presence_items"):
            self._presence_wake.set()  # the other gates hear of it now, not at the next poll
        for s in snaps:
            self._snap_q.put(s)
        for m in msgs:
            self.peer.ack(m.mid, m.qos, m.generation)

    def _send_receipts(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        # Retained: a gate that (re)connects learns at once what central holds.
        for topic, payload in items:
            self.peer.publish(topic, payload, retain=True)
        if items:
            self._count("receipts", len(items))

    def _handle(self, store: CentralStore, accepted: list[inbound.Accepted], counts: Counter[str],
                snaps: list[tuple[str, dict[str, Any]]]) -> None:
        events = [a for a in accepted if a.kind == "event"]
        if events:
            objs = []
            for a in events:
                obj = privacy.scrub_incoming(store, a.obj)  # dated before an erasure of its pass: stored without it
                if privacy.acknowledge(store.db, a.gate, obj, a.msg.received):
                    counts["erasures_confirmed"] += 1
                objs.append(obj)
            # A batch's events in a few statements (one round trip each on PostgreSQL), not several an event.
            new = store.insert_events([(obj, a.msg.received) for obj, a in zip(objs, events)])
            stored = [obj for obj, is_new in zip(objs, new) if is_new]
            if stored:
                counts["events"] += len(stored)
                # the site hears of them (sync/central/presence_relay.py)
                counts["presence_items"] += presence_relay.record_many(store.db, stored)
                console_seen.record_many(store.db, stored)  # each pass's latest decision a gate (the community map)
                for obj in stored:
                    if obj["type"] == "registration":
                        counts["visitors"] += visitors.record(store.db, obj)  # the visitor register (sync/central/visitors.py)
            if len(stored) < len(events):
                counts["duplicates"] += len(events) - len(stored)
            for a in events:
                self.receipts.saw(a.gate, int(a.obj["seq"]))
        for a in accepted:
            obj, gate, kind, m = a.obj, a.gate, a.kind, a.msg
            if kind == "status":
                store.upsert_status(obj, m.received)
                counts["status"] += 1
                if obj.get("online"):
                    self._privacy_wake.set()  # an erase it has not confirmed goes now
            elif kind == "report":
                store.upsert_report(obj, m.received)
                counts["reports"] += 1
            elif kind == "snapshot_request":
                counts["snapshot_requests"] += 1
                snaps.append((gate, obj))
            elif kind == "presence_request":
                counts["presence_requests"] += 1
                self._presence_q.put((gate, int(obj["from"])))
                self._presence_wake.set()

    # ------------------------------------------------------------ roster API
    def _notify(self) -> None:
        self._wake.set()

    def wake_publisher(self) -> None:
        """The roster changed behind the API (the office console): publish now, not at the next poll."""
        self._wake.set()

    def add_pass(self, **fields: Any) -> int:
        v = self.store.add_pass(**fields)
        self._notify()
        return v

    def upsert_passes(self, rows: list[dict[str, Any]], cards: dict[str, str] | None = None) -> tuple[int, int]:
        r = self.store.upsert_passes(rows, cards)
        self._notify()
        return r

    def revoke_pass(self, pass_id: str, revoked: bool = True, *, by: str | None = None, reason: str | None = None) -> int:
        v = self.store.revoke_pass(pass_id, revoked, by=by, reason=reason)
        self._notify()
        return v

    def delete_pass(self, pass_id: str) -> int:
        v = self.store.delete_pass(pass_id)
        self._notify()
        return v

    def import_roster(self, path: str | Path, *, replace: bool = False) -> tuple[int, int]:
        rng = import_roster(self.store, Path(path), tz=self.config.timezone, replace=replace,
                            attributes=self.config.roster.attributes)
        self._notify()
        return rng

    def erase_pass(self, pass_id: str, by: str, *, force: bool = False) -> dict[str, Any]:
        """Erase a pass at central; every gate is told (sync/central/privacy.py)."""
        done = privacy.erase(self.store, pass_id, by, force=force)
        self._wake.set()  # the roster's delete batch
        self._privacy_wake.set()
        return done

    def purge(self, now: float | None = None) -> dict[str, int]:
        """The retention purge, now."""
        r = self.config.retention
        return privacy_worker.purge(self.store, days=r.days, now=now, chunk=r.chunk)

    @property
    def passes_version(self) -> int:
        return self.store.passes_version

    def events(self, gate: str | None = None) -> list[dict[str, Any]]:
        return self.store.events(gate)

    def visitors(self, now: float | None = None) -> list[dict[str, Any]]:
        """The visitor register, each visitor with where they are and whether they overstay."""
        return visitors.listing(self.store.db, time.time() if now is None else now)

    def overstays(self, now: float | None = None) -> list[dict[str, Any]]:
        return visitors.overstays(self.store.db, time.time() if now is None else now)

    # ------------------------------------------------------------ policy, commands, snapshots
    def set_policy(self, policy: PolicyConfig | dict[str, Any] | str | Path, version: int | None = None) -> dict[str, Any]:
        """Sign and keep a policy; the publisher sends it (retained) at once."""
        if isinstance(policy, (str, Path)):
            policy = load_policy(policy)
        payload = self.signer.policy(policy, version)
        self.store.store_policy(payload)
        self._wake.set()
        return payload

    def send_command(
        self, gate: str, cmd: str, *, lane: str | None = None, reason: str | None = None, day: str | None = None,
        ttl_s: float | None = None, by: str | None = None, wait: float = 10.0,
    ) -> dict[str, Any]:
        """Sign and publish a command to one gate (QoS 1). Returns the payload."""
        payload = self.signer.command(gate, cmd, lane=lane, reason=reason, day=day, ttl_s=ttl_s or self.config.command_ttl_s, by=by)
        self.store.store_command(payload)
        mid = self.peer.publish(self.topics.gate(gate).cmd, payload)
        if wait and not self.peer.wait([mid], wait):
            self._count("publish_failures")
            raise ConnectionError(f"command {cmd} to {gate} not acknowledged by the broker within {wait} s")
        self._count("commands")
        return payload

    def snapshot(self, store: CentralStore | None = None) -> Snapshot:
        """The current table as compressed chunks (cached per version)."""
        return self.snapshots.snapshot(store or self.store)
