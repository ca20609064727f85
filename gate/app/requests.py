"""What central, the guard page, the HTTP API and Home Assistant ask of a running gate:
a new policy, withdrawn keys, a door opened or put in a mode, a pass erased, the config
read again, device health, and an event of the gate's own. A part of `GateApp` (a mixin:
each request becomes an event on the lanes' queues or a row in the store)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gate.config import Config, PolicyConfig
from gate.core.clock import Clock
from gate.core.events import ApplyPolicy, ManualOpen, SetDoorMode
from gate.core.records import AdminRecord, LaneRecord
from gate.core.tokens import KeyRing
from gate.store.database import Store
from gate.store.erasure import erase_in, erasure_record, refresh_snapshot

log = logging.getLogger("gate.app.gate_app")


class GateRequests:
    config: Config
    config_path: Path | None
    clock: Clock
    keyring: KeyRing
    policy: PolicyConfig
    lanes: dict[str, Any]
    sinks: list[Any]

    def open_store(self) -> Store:
        raise NotImplementedError

    def policy_version(self) -> int:
        return self.policy.version

    def apply_policy(self, policy: PolicyConfig, version: int, *, who: str = "central", why: str = "") -> None:
        before = self.policy
        self.policy = policy
        for lane in self.lanes.values():
            lane.post(ApplyPolicy(policy))
        changed = {
            k: (getattr(before, k), v) for k, v in policy.model_dump().items() if before.model_dump().get(k) != v
        }
        self.record_gate_event(
            AdminRecord(
                at=self.clock.now(), lane="", action="policy_apply", who=who, reason=why,
                detail=f"version {before.version} → {version}: " + "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items() if k != "version"),
            )
        )

    def withdraw_keys(self, kids: frozenset[str], who: str) -> None:
        """Central's key list: QR passes signed by these keys are refused (forged) from now on."""
        before = self.keyring.withdrawn
        self.keyring.withdraw(kids)
        self.record_gate_event(AdminRecord(
            at=self.clock.now(), lane="", action="keys_withdrawn", who=who, reason="signed key list from central",
            detail=f"withdrawn: {', '.join(sorted(kids)) or '-'}; given back: {', '.join(sorted(before - kids)) or '-'}"))

    def vouch_gate_keys(self, keys: dict[str, Any], who: str) -> None:
        """Central's list of the site's gate keys: visitor passes those gates issue are
        admitted here from now on (gate.core.tokens.gate_key_may_sign: nothing else)."""
        before = self.keyring.vouched
        self.keyring.vouch(keys)
        now = self.keyring.vouched
        self.record_gate_event(AdminRecord(
            at=self.clock.now(), lane="", action="gate_keys", who=who, reason="signed gate key list from central",
            detail=f"gate keys now: {', '.join(sorted(now)) or '-'}; added: {', '.join(sorted(now - before)) or '-'}; "
                   f"taken off: {', '.join(sorted(before - now)) or '-'}"))

    def pass_revoked(self, pass_id: str, revoked: bool, who: str, why: str) -> None:
        """Central revoked (or restored) a pass naming who and why: an ``admin`` event, as at the desk."""
        self.record_gate_event(AdminRecord(at=self.clock.now(), lane="", action="revoke" if revoked else "unrevoke",
                                           who=f"central:{who}", reason=why or "pass batch from central", pass_id=pass_id))

    def open_door(self, lane: str, reason: str, who: str) -> bool:
        target = self.lanes.get(lane)
        if target is None:
            log.warning("open_door for unknown lane %r", lane)
            return False
        target.post(ManualOpen(reason, who))
        return True

    def set_door_mode(self, lane: str, mode: str, why: str, who: str) -> bool:
        """The guard or central sets a lane's door mode ("all": every lane)."""
        targets = list(self.lanes.values()) if lane == "all" else [self.lanes[lane]] if lane in self.lanes else []
        if not targets:
            log.warning("door mode for unknown lane %r", lane)
            return False
        for target in targets:
            target.post(SetDoorMode(mode, who, why))
        return True

    def erase_pass(self, pass_id: str, erasure: str, who: str) -> dict[str, int]:
        """Central's signed erase: as `gate privacy erase`, in one transaction with the
        `privacy_erase` admin event that tells central it is done (gate/store/erasure.py)."""
        done: dict[str, int] = {}
        store = self.open_store()
        try:
            self.record_gate_event(erasure_record(self.clock.now(), erasure, who),
                                   also=lambda c: done.update(erase_in(store, c, pass_id)), store=store)
            refresh_snapshot(store)
        finally:
            store.close()
        return done

    def reload(self) -> None:
        """Re-read the config file's policy (what `reload` from central asks for)."""
        if self.config_path is None:
            log.warning("reload asked, but this gate was not started from a config file")
            return
        from gate import config as cfgmod

        try:
            fresh = cfgmod.load(self.config_path)
        except cfgmod.ConfigError as exc:
            log.error("reload: %s", exc)
            return
        if fresh.policy.version >= self.policy.version:
            self.apply_policy(fresh.policy, fresh.policy.version, who="central", why=f"reload of {self.config_path}")

    def device_health(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            name: {dev: {"ok": ok, "detail": detail} for dev, (ok, detail) in dict(lane.health).items()}
            for name, lane in self.lanes.items()
        }

    def record_gate_event(self, rec: LaneRecord, *, also: Any = None, store: Store | None = None) -> None:
        """An event that belongs to no lane (an outbox backlog alarm): stored, then shown.
        ``also(conn)`` commits with it (Store.record); ``store``: one already open."""
        own = store is None
        st = self.open_store() if store is None else store
        try:
            st.record(rec, also=also)
        finally:
            if own:
                st.close()
        for sink in list(self.sinks):
            try:
                sink(rec)
            except Exception:
                log.exception("display sink failed")
