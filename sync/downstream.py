"""Passes, policy and commands coming in from central.

Messages arrive on paho's thread and are handled here on one worker thread with its
own store connection. Each payload is trusted for its signature (sync/codec.py),
never for its topic; a bad one is counted, logged and ignored. Nothing here ever
blocks a lane: a new policy reaches the lanes as an event, applied between two
decisions, and a pass batch is one short transaction.
"""
from __future__ import annotations

import json
import logging
import queue

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from drivers.base import Counters
from gate.config import PolicyConfig
from gate.core.tokens import KeyRing
from gate.store.database import Store
from gate.store.erasure import erase_in, erasure_record, refresh_snapshot
from gate.store import withdrawn
from sync import codec, gatekeys, keylist
from sync.link import Link
from sync.presence import PresenceFollower
from sync.snapshot_in import SnapshotReceiver, _Snapshot
from sync.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class Hooks:
    """What downstream may ask of the gate."""

    apply_policy: Callable[..., None]  # (policy, version, who=..., why=...)
    open_door: Callable[[str, str, str], bool]  # lane, reason, who -> done?
    report_now: Callable[[str | None], None]  # date or None (today)
    reload: Callable[[], None]
    now: Callable[[], datetime]
    raise_floor: Callable[[datetime], None] = lambda ts: None
    # Central's key list withdrew these pass-signing key ids (the whole set) and says who by.
    withdraw_keys: Callable[[frozenset[str], str], None] = lambda kids, who: None
    # Central's signed list of the site's gate keys: key id -> public key (the whole set), and who by.
    vouch_gate_keys: Callable[[dict[str, Any], str], None] = lambda keys, who: None
    set_door_mode: Callable[[str, str, str, str], bool] = lambda lane, mode, why, who: False  # lane or "all"
    # Central's signed erase: (pass id, erasure id, who) -> what was erased. None: downstream
    # erases in its own store and records the admin event there (nothing shown on a page).
    erase_pass: Callable[[str, str, str], dict[str, int]] | None = None
    # A batch revoked (True) or restored (False) a pass, naming who at central and why.
    pass_revoked: Callable[[str, bool, str, str], None] = lambda pass_id, revoked, who, why: None
    site: Any = None  # gate.core.site.SiteView: presence across the site is followed when set


class Downstream(SnapshotReceiver):

    def __init__(
        self,
        link: Link,
        open_store: Callable[[], Store],
        topics: Topics,
        keyring: KeyRing,
        hooks: Hooks,
        *,
        policy_version: Callable[[], int] = lambda: 0,
    ) -> None:
        self.link = link
        self._open_store = open_store
        self.topics = topics
        self._kinds = {topics.passes: "passes", topics.policy: "policy", topics.cmd: "cmd",
                       topics.snapshot: "snapshot_chunk", topics.keys: "keylist", topics.gatekeys: "gatekeys",
                       topics.presence: "presence", topics.presence_head: "presence",
                       topics.presence_reply: "presence"}  # topic -> message kind
        self.keyring = keyring
        self.hooks = hooks
        # Asked each time: a policy applied at the desk raises it behind our back.
        self.policy_version = policy_version
        self.counters = Counters()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._snapshot: _Snapshot | None = None
        self.store: Store | None = None
        self.presence = None if hooks.site is None else PresenceFollower(
            hooks.site, self._ask_presence, hooks.now, self.counters)

    @staticmethod
    def subscriptions(topics: Topics, presence: bool = False) -> list[tuple[str, int]]:
        subs = [(topics.passes, 1), (topics.policy, 1), (topics.cmd, 1), (topics.snapshot, 1), (topics.keys, 1),
                (topics.gatekeys, 1)]
        if presence:
            subs += [(topics.presence, 1), (topics.presence_head, 1), (topics.presence_reply, 1)]
        return subs

    # from paho's thread
    def on_message(self, topic: str, payload: bytes) -> None:
        self._queue.put((topic, payload))

    def on_state(self, connected: bool) -> None:
        if connected:
            # After any outage we may have missed batches: compare versions by asking
            # for nothing more than the next batch; a gap on arrival triggers a snapshot.
            self._queue.put(("$connected", b""))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="downstream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def join(self) -> None:
        self._queue.join()

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def _run(self) -> None:
        self.store = self._open_store()
        # Keys central withdrew before a restart stay withdrawn before the first message.
        self.keyring.withdraw(withdrawn.load(self.store).kids)
        try:
            while True:
                try:
                    item = self._queue.get(timeout=5.0)
                except queue.Empty:
                    self._snapshot_timeout()
                    continue
                try:
                    if item is None:
                        return
                    self._handle(*item)
                except Exception:
                    self.counters.inc("errors")
                    log.exception("downstream: failed on %s", item[0])
                finally:
                    self._queue.task_done()
        finally:
            self.store.close()

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == "$connected":
            self._snapshot_timeout()
            return
        kind = self._kinds.get(topic)
        if kind is None:
            self.counters.inc("unexpected_topic")
            return
        if kind in ("policy", "keylist", "gatekeys", "presence") and not payload:
            return  # a cleared retained message
        try:
            msg = codec.decode(payload, kind, self.keyring)
        except codec.PayloadError as err:
            self.counters.inc(f"{kind}_{err.reason}")
            log.warning("downstream: refused %s payload on %s: %s", kind, topic, err)
            return
        self._floor(msg.get("ts"))
        getattr(self, f"_on_{kind}")(msg)

    def _floor(self, ts: Any) -> None:
        # Central's signed timestamp is the best clock a gate without an RTC has.
        if isinstance(ts, str):
            try:
                when = datetime.fromisoformat(ts)
            except ValueError:
                return
            if when.tzinfo is not None:
                self.hooks.raise_floor(when)
                assert self.store is not None
                saved = self.store.get_meta("time_floor")
                if not saved or datetime.fromisoformat(saved) < when:
                    self.store.set_meta("time_floor", when.isoformat())

    # ------------------------------------------------------------ passes

    def _on_passes(self, msg: dict[str, Any]) -> None:
        assert self.store is not None
        have = self.store.passes_version()
        frm, to = msg["from_version"], msg["to_version"]
        if to <= have:
            self.counters.inc("passes_duplicate")
            if to == have:
                # Central's retained head batch: our table is current as of now.
                self.store.set_meta("passes_synced_at", str(time.time()))
            return
        if frm != have:
            self.counters.inc("passes_gap")
            log.warning("downstream: pass batch %d→%d but we have %d: asking for a snapshot", frm, to, have)
            self.request_snapshot()
            return
        # The last change of an id wins (a pass deleted and issued again in one batch is issued).
        last = {(ch["pass"]["id"] if ch["op"] == "upsert" else ch["id"]): ch for ch in msg["changes"]}
        upserts, cards, deletes = [], {}, []
        named: list[tuple[str, bool, str, str]] = []  # revocations that say who made them
        for ch in last.values():
            if ch["op"] == "upsert":
                p = ch["pass"]
                upserts.append(codec.pass_from_wire(p))
                cards[p["id"]] = p.get("card")
                if ch.get("by"):
                    before = self.store.get_pass(p["id"])
                    if (before is not None and before.revoked) != bool(p.get("revoked")):
                        named.append((p["id"], bool(p.get("revoked")), ch["by"], ch.get("reason") or ""))
            else:
                deletes.append(codec.tombstone_from_wire(ch))  # removed: refused `revoked` from now on
        self.store.apply_pass_changes(upserts, cards, deletes, to)
        self.counters.inc("passes_batches")
        for pass_id, revoked, who, why in named:  # recorded at the gate, and sent back up
            self.hooks.pass_revoked(pass_id, revoked, who, why)

    def _on_policy(self, msg: dict[str, Any]) -> None:
        version = msg["version"]
        current = self.policy_version()
        if version <= current:
            self.counters.inc("policy_old")
            if version == current and self.store is not None:
                self.store.set_meta("policy_applied_at", str(time.time()))  # confirmed current
            return
        try:
            policy = PolicyConfig.model_validate({**msg["policy"], "version": version})
        except Exception as exc:
            self.counters.inc("policy_invalid")
            log.error("downstream: policy version %d is signed but invalid, not applied: %s", version, exc)
            return
        assert self.store is not None
        self.store.set_metas({  # together: a crash never leaves one version's text under another's number
            "policy_json": json.dumps(msg["policy"], ensure_ascii=False), "policy_version": str(version),
            "policy_applied_at": str(time.time()), "policy_by": str(msg.get("by", ""))})
        self.hooks.apply_policy(policy, version, who=f"central:{msg.get('by', '')}", why="signed policy from central")
        self.counters.inc("policies_applied")

    # ------------------------------------------------------------ withdrawn keys

    def _on_presence(self, msg: dict[str, Any]) -> None:
        if msg.get("to") not in (None, self.topics.gate):
            return  # a replay for another gate (only possible with a loose ACL)
        if self.presence is None:
            self.counters.inc("presence_ignored")
            return
        assert self.store is not None
        self.presence.on_message(self.store, msg)

    def _ask_presence(self, start: int) -> bool:
        req = {"type": "presence_request", "gate": self.topics.gate, "from": start, "ts": self.hooks.now().isoformat()}
        return self.link.publish(self.topics.presence_request, codec.encode(req), qos=1) is not None

    def _on_keylist(self, msg: dict[str, Any]) -> None:
        assert self.store is not None
        outcome = keylist.accept(self.store, msg, self.keyring)
        if outcome.result == "applied":
            self.hooks.withdraw_keys(outcome.kids, f"central:{msg.get('by', '')}")
        self.counters.inc(f"keylist_{outcome.result}")  # counted once in force at the lanes too

    def _on_gatekeys(self, msg: dict[str, Any]) -> None:
        assert self.store is not None
        outcome = gatekeys.accept(self.store, msg)
        if outcome.result == "applied":
            self.hooks.vouch_gate_keys(outcome.keys, f"central:{msg.get('by', '')}")
        self.counters.inc(f"gatekeys_{outcome.result}")

    # ------------------------------------------------------------ commands

    def _on_cmd(self, msg: dict[str, Any]) -> None:
        if msg["gate"] != self.topics.gate:
            self.counters.inc("cmd_other_gate")
            log.warning("downstream: command for gate %s refused here", msg["gate"])
            return
        expires = datetime.fromisoformat(msg["expires"])
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        if expires <= self.hooks.now():
            self.counters.inc("cmd_expired")
            log.warning("downstream: expired command %s refused", msg["cmd"])
            return
        assert self.store is not None
        if not self.store.use_nonce(msg["nonce"], expires.timestamp()):
            self.counters.inc("cmd_replayed")
            log.warning("downstream: replayed command %s (nonce %s) refused", msg["cmd"], msg["nonce"])
            return
        who = f"central:{msg['by']}"
        cmd = msg["cmd"]
        if cmd == "open_door":
            if not self.hooks.open_door(msg["lane"], msg["reason"], who):
                self.counters.inc("cmd_bad_lane")
                return
        elif cmd == "resync":
            self._snapshot = None
            self.request_snapshot()
        elif cmd == "report_now":
            self.hooks.report_now(msg.get("date"))
        elif cmd == "reload":
            self.hooks.reload()
        elif cmd == "door_mode":
            if not self.hooks.set_door_mode(msg["lane"], msg["mode"], msg["reason"], who):
                self.counters.inc("cmd_bad_lane")
                return
        elif cmd == "erase":
            self._erase(msg["pass"], msg["erasure"], who)
        self.counters.inc(f"cmd_{cmd}")

    def _erase(self, pass_id: str, erasure: str, who: str) -> None:
        """As `gate privacy erase` (gate/store/erasure.py); the `privacy_erase` admin event
        naming the erasure (not the pass) goes upstream and is central's acknowledgement.
        Idempotent: central sends it again until that event arrives."""
        if self.hooks.erase_pass is not None:
            done = self.hooks.erase_pass(pass_id, erasure, who)
        else:
            assert self.store is not None
            store = self.store
            done = {}
            rec = erasure_record(self.hooks.now(), erasure, who)
            store.record(rec, also=lambda c: done.update(erase_in(store, c, pass_id)))
            refresh_snapshot(store)
        log.info("downstream: erasure %s from %s: %s", erasure, who, done)
