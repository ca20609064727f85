"""What `gate` keeps across restarts, read back at start: the time floor, keys central
withdrew, a newer policy from central or the desk, and whether the config file changed.
A part of `GateApp` (a mixin over its config, clock, floor, keyring and store)."""
from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from gate.config import Config, PolicyConfig
from gate.core.clock import Clock, TimeFloor
from gate.core.events import ApplyPolicy
from gate.core.records import AdminRecord
from gate.core.tokens import KeyRing
from gate.store import gatekeys, withdrawn
from gate.store.database import Store

log = logging.getLogger("gate.app.gate_app")


class StoredState:
    config: Config
    config_path: Path | None
    clock: Clock
    floor: TimeFloor
    keyring: KeyRing
    policy: PolicyConfig
    lanes: dict[str, Any]

    def open_store(self) -> Store:
        raise NotImplementedError

    def _restore(self, store: Store) -> None:
        """The time floor, and a policy central sent that is newer than the config's."""
        from gate.store import time_floor as floor_admin

        # Not the last event's time: a clock that read 2030 once must not pin the floor there.
        floor_admin.load(self.floor, store)
        # Pass-signing keys central withdrew stay refused from the first scan on.
        self.keyring.withdraw(withdrawn.load(store).kids)
        # So do the site's gate keys central vouched for (visitors registered at another gate).
        self.keyring.vouch(gatekeys.load(store).keys())
        version = int(store.get_meta("policy_version") or 0)
        body = store.get_meta("policy_json")
        if body and version > self.config.policy.version:
            try:
                self.policy = PolicyConfig.model_validate({**json.loads(body), "version": version})
            except Exception:
                log.exception("the stored policy version %d is unusable; using the config's", version)

    def save_floor(self, force: bool = False) -> None:
        """Checkpoint the time floor (at most once a minute unless it moved), and take
        up a reset made at the desk (`gate clock floor --reset`). Called by `gate run`."""
        from gate.store import time_floor as floor_admin

        if force or self.floor.save_due():
            self.floor.checkpoint(floor_admin.saver(self.open_store), force=True)
            return
        try:  # nothing to save: still look for a reset from the desk
            store = self.open_store()
            try:
                stored = floor_admin.stored_state(store)
            finally:
                store.close()
        except Exception as exc:  # a full or failing store must not stop the gate
            log.warning("time floor: could not read the stored state: %s", exc)
            return
        if stored is not None:
            self.floor.adopt(stored)

    def pick_up_stored_policy(self) -> bool:
        """A policy applied at the desk (`gate policy apply`) while the daemon runs: take
        it between two decisions, as one from central. The desk already recorded the
        audit row and its event; here the lanes just switch."""
        store = self.open_store()
        try:
            version = int(store.get_meta("policy_version") or 0)
            body = store.get_meta("policy_json") if version > self.policy.version else None
        finally:
            store.close()
        if not body:
            return False
        try:
            policy = PolicyConfig.model_validate({**json.loads(body), "version": version})
        except Exception:
            log.exception("the stored policy version %d is unusable; keeping version %d", version, self.policy.version)
            return False
        self.policy = policy
        for lane in self.lanes.values():
            lane.post(ApplyPolicy(policy))
        log.warning("policy version %d from the store is now in force", version)
        return True

    def _config_changed(self, store: Store) -> AdminRecord | None:
        """The config differs from the one the gate last started with: say so, as an event."""
        if self.config_path is None:
            return None
        import hashlib
        import pwd

        try:
            digest = hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()[:16]
            st = Path(self.config_path).stat()
        except OSError:
            return None
        before = store.get_meta("config_sha")
        if before == digest:
            return None
        store.set_meta("config_sha", digest)
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return AdminRecord(
            at=self.clock.now(), lane="", action="config_change", who=f"{owner} (file owner)",
            reason="first start" if before is None else "the config file was edited",
            detail=f"{self.config_path}: {before or '-'} → {digest}, modified {datetime.fromtimestamp(st.st_mtime).isoformat(timespec='seconds')}",
        )
