"""The signed payloads central sends: pass batches, the policy, commands, snapshot
chunks (Ed25519, codec.sign)."""
from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Iterator

from gate.config import PolicyConfig
from gate.core.tokens import load_private
from sync import codec
from sync.central.wire import now_iso
from sync.topics import CentralTopics


COMMANDS = ("open_door", "resync", "report_now", "reload", "door_mode", "erase")


class Signer:
    """Builds the signed payloads central sends."""

    def __init__(self, key_path: Path | str, topics: CentralTopics, by: str = "central") -> None:
        self.key = load_private(Path(key_path))
        self.topics = topics
        self.by = by

    def passes_batch(self, from_version: int, to_version: int, changes: list[dict[str, Any]]) -> dict[str, Any]:
        return codec.sign(
            {"type": "passes", "from_version": from_version, "to_version": to_version, "ts": now_iso(), "changes": changes},
            self.key,
        )

    def policy(self, policy: PolicyConfig | dict[str, Any], version: int | None = None) -> dict[str, Any]:
        if isinstance(policy, dict):
            policy = PolicyConfig.model_validate(policy)
        body = policy.model_dump(mode="json")
        v = int(version if version is not None else policy.version)
        if v < 1:
            raise ValueError("a published policy needs version = N (N >= 1) in its [policy] table")
        body["version"] = v
        return codec.sign({"type": "policy", "version": v, "ts": now_iso(), "policy": body, "by": self.by}, self.key)

    def command(
        self, gate: str, cmd: str, *, lane: str | None = None, reason: str | None = None, day: str | None = None,
        ttl_s: float = 300.0, by: str | None = None, now: float | None = None, mode: str | None = None,
        pass_id: str | None = None, erasure: str | None = None,
    ) -> dict[str, Any]:
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}")
        if cmd == "open_door" and (not lane or not reason):
            raise ValueError("open_door needs a lane and a reason")
        if cmd == "door_mode" and (not lane or not reason or mode not in ("normal", "open", "locked")):
            raise ValueError("door_mode needs a lane (or 'all'), a mode (normal, open or locked) and a reason")
        if cmd == "erase" and (not pass_id or not erasure):
            raise ValueError("erase needs a pass and the erasure's id")
        t = time.time() if now is None else now
        body: dict[str, Any] = {
            "type": "cmd", "cmd": cmd, "gate": gate, "nonce": secrets.token_hex(16),
            "ts": now_iso(t), "expires": now_iso(t + ttl_s), "by": by or self.by,
        }
        if lane:
            body["lane"] = lane
        if reason:
            body["reason"] = reason[:200]
        if day:
            body["date"] = day
        if mode:
            body["mode"] = mode
        if cmd == "erase":
            body["pass"] = pass_id
            body["erasure"] = erasure
        out = codec.sign(body, self.key)
        codec.decode(codec.encode(out), "cmd", _self_ring(self.key))  # our own output must pass our schema
        return out

    def snapshot_chunks(self, request_id: str, version: int, sha256: str, datas: list[str]) -> Iterator[dict[str, Any]]:
        count = len(datas)
        for i, data in enumerate(datas):
            yield codec.sign(
                {"type": "snapshot_chunk", "request_id": request_id, "version": version, "index": i, "count": count,
                 "sha256": sha256, "data": data, "ts": now_iso()},
                self.key,
            )


def _self_ring(key: Any) -> Any:
    from gate.core.tokens import KeyRing

    return KeyRing([key.public_key()])
