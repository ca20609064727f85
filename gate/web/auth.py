"""Who may use the guard's page, and how actions are protected.

- ``guard.password_file``: the guard password. Needed to serve beyond localhost;
  then a browser on another machine must sign in before it sees anything.
- ``guard.pin_file``: a short PIN for the guard at the kiosk.
- With either set, every action (confirm, reject, acknowledge, open, register)
  needs the password or the PIN: the guard types it once and the page stays
  unlocked for the shift (``UNLOCK_HOURS``) in that browser.
- With neither set (only allowed on localhost), actions need no secret.
- Every action carries the page's CSRF token (and a same-origin ``Origin``).

A file holds the secret as plain text (mode 0600, owned by the gate's user), or a
werkzeug hash (``scrypt:...``/``pbkdf2:...``, made with
``python -c 'from werkzeug.security import generate_password_hash as g; print(g("..."))'``).
Wrong guesses are throttled per client (gate/webbase/throttle.py): after ``MAX_FAILS``
in a row from one client, nothing more from it is checked for ``LOCKOUT_S`` seconds;
a client on the LAN cannot lock the guard at the kiosk out.
"""
from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# The throttle is shared with the office console (gate/webbase/throttle.py).
from gate.webbase.throttle import LOCKOUT_S, MAX_FAILS, Throttle, client_key, is_loopback

__all__ = ["LOCKOUT_S", "MAX_FAILS", "UNLOCK_HOURS", "Attempt", "AuthConfigError", "Guardian", "Throttle",
           "client_key", "is_loopback", "read_secret"]

UNLOCK_HOURS = 12.0


class AuthConfigError(Exception):
    pass


def read_secret(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AuthConfigError(f"guard.{what}_file: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise AuthConfigError(f"guard.{what}_file: {path} is empty")
    return text


def _matches(given: str, secret: str) -> bool:
    if secret.startswith(("scrypt:", "pbkdf2:")):
        from werkzeug.security import check_password_hash

        return check_password_hash(secret, given)
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


@dataclass
class Attempt:
    ok: bool  # the secret matched
    wrong: bool  # it was checked and did not match
    locked_for: float  # seconds this client must wait before the next guess is checked
    name: str | None = None  # the named guard whose own PIN it was (guard.guards_file)


class Guardian:
    def __init__(self, password: str | None, pin: str | None, *, clock: Callable[[], float] = time.monotonic,
                 guards: Callable[[], dict[str, str]] = dict) -> None:
        self.password = password
        self.pin = pin
        self._guards = guards  # name -> PIN hash as of now (gate/desk/guards.py GuardsFile.current)
        self.throttle = Throttle(clock=clock)

    @property
    def guards(self) -> dict[str, str]:
        return self._guards()

    @property
    def required(self) -> bool:
        return bool(self.password or self.pin or self.guards)

    def locked_for(self, client: str) -> float:
        return self.throttle.locked_for(client)

    def check(self, given: str | None, client: str) -> Attempt:
        """The password or the PIN, from `client` (its address). Throttled per client."""
        if not self.required:
            return Attempt(True, False, 0.0)
        return self._attempt(given, client, (self.password, self.pin))

    def check_password(self, given: str | None, client: str) -> Attempt:
        """Sign-in from another machine: the password only, not the PIN."""
        if not self.password:
            return Attempt(False, False, 0.0)
        return self._attempt(given, client, (self.password,))

    def _attempt(self, given: str | None, client: str, secrets: tuple[str | None, ...]) -> Attempt:
        wait = self.throttle.admit(client)
        if wait > 0:
            return Attempt(False, False, wait)
        given = (given or "").strip()
        ok = bool(given) and any(s and _matches(given, s) for s in secrets)
        name = None
        guards = self.guards
        if not ok and given and guards and secrets != (self.password,):
            from gate.desk.guards import who_has

            name = who_has(guards, given)
            ok = name is not None
        if ok:
            self.throttle.passed(client)
            return Attempt(True, False, 0.0, name)
        return Attempt(False, True, self.throttle.locked_for(client))
