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
Wrong guesses are throttled: after ``MAX_FAILS`` in a row, nothing is checked for
``LOCKOUT_S`` seconds.
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from pathlib import Path

UNLOCK_HOURS = 12.0
MAX_FAILS = 5
LOCKOUT_S = 60.0


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _matches(given: str, secret: str) -> bool:
    if secret.startswith(("scrypt:", "pbkdf2:")):
        from werkzeug.security import check_password_hash

        return check_password_hash(secret, given)
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


class Guardian:
    def __init__(self, password: str | None, pin: str | None, *, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.password = password
        self.pin = pin
        self._clock = clock
        self._lock = threading.Lock()
        self._fails = 0
        self._locked_until = 0.0

    @property
    def required(self) -> bool:
        return bool(self.password or self.pin)

    def locked_for(self) -> float:
        with self._lock:
            return max(0.0, self._locked_until - self._clock())

    def check(self, given: str | None) -> bool:
        """True if `given` is the password or the PIN. Throttled after repeated failures."""
        if not self.required:
            return True
        with self._lock:
            if self._clock() < self._locked_until:
                return False
        given = (given or "").strip()
        ok = bool(given) and any(s and _matches(given, s) for s in (self.password, self.pin))
        with self._lock:
            if ok:
                self._fails = 0
            else:
                self._fails += 1
                if self._fails >= MAX_FAILS:
                    self._fails = 0
                    self._locked_until = self._clock() + LOCKOUT_S
        return ok

    def check_password(self, given: str | None) -> bool:
        """Sign-in from another machine: the password only, not the PIN."""
        if not self.password:
            return False
        with self._lock:
            if self._clock() < self._locked_until:
                return False
        ok = bool(given) and _matches((given or "").strip(), self.password)
        with self._lock:
            if not ok:
                self._fails += 1
                if self._fails >= MAX_FAILS:
                    self._fails = 0
                    self._locked_until = self._clock() + LOCKOUT_S
        return ok
