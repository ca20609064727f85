"""Changes made in the console: revoking and restoring a pass. Each goes to central's
roster exactly as ``gate central passes revoke`` does (a new roster version, sent to
every gate in the next signed batch), names who made it and why (the gates record
both), and writes its audit row in the same transaction."""
from __future__ import annotations

from typing import Any, Callable

from sync.central.console import audit

MAX_REASON = 500


class ActionError(ValueError):
    """A change that was not made; ``code`` names why for the page's words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def set_revoked(store: Any, pass_id: str, *, revoked: bool, who: str, reason: str,
                notify: Callable[[], None] = lambda: None) -> int:
    """Revoke (or restore) a pass. Returns the new roster version; ActionError if there is no
    such pass, no reason, or nothing to do."""
    reason = (reason or "").strip()
    if not reason:
        raise ActionError("reason", "say why")
    if len(reason) > MAX_REASON:
        raise ActionError("reason", f"the reason is longer than {MAX_REASON} characters")
    current = store.get_pass(pass_id)
    if current is None:
        raise ActionError("no_pass", f"no pass {pass_id!r}")
    if bool(current.get("revoked")) == revoked:
        raise ActionError("already", f"pass {pass_id} is {'already revoked' if revoked else 'not revoked'}")

    def also(db: Any, version: int) -> None:
        audit.record(db, who, "revoke" if revoked else "restore", pass_id, reason, f"roster version {version}")

    version = store.revoke_pass(pass_id, revoked, by=who, reason=reason, also=also)
    notify()  # the running central's publisher sends it now rather than at its next poll
    return int(version)
