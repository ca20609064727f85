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
Wrong guesses are throttled per client (an IPv4 address, or an IPv6 /64): after
``MAX_FAILS`` in a row from one client, nothing more from it is checked for
``LOCKOUT_S`` seconds. A guess is counted before it is checked, under the same lock
as the lockout test, so concurrent guesses cannot outrun the count; a client on the
LAN cannot lock the guard at the kiosk out.
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

UNLOCK_HOURS = 12.0
MAX_FAILS = 5
LOCKOUT_S = 60.0
MAX_CLIENTS = 1024  # throttle entries kept; the least recently seen unlocked one gives way


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


def client_key(addr: str) -> str:
    """Whom a guess is counted against: the address, or its /64 for IPv6 (one host owns a whole /64)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Attempt:
    ok: bool  # the secret matched
    wrong: bool  # it was checked and did not match
    locked_for: float  # seconds this client must wait before the next guess is checked
    name: str | None = None  # the named guard whose own PIN it was (guard.guards_file)


@dataclass
class _Tries:
    fails: int = 0
    locked_until: float = 0.0


class Throttle:
    """Wrong guesses per client: MAX_FAILS in a row lock that client out for LOCKOUT_S."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_fails: int = MAX_FAILS,
                 lockout_s: float = LOCKOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        self._clock = clock
        self.max_fails = max_fails
        self.lockout_s = lockout_s
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._tries: OrderedDict[str, _Tries] = OrderedDict()

    def locked_for(self, client: str) -> float:
        with self._lock:
            t = self._tries.get(client_key(client))
            return 0.0 if t is None else max(0.0, t.locked_until - self._clock())

    def admit(self, client: str) -> float:
        """0 if this guess may be checked (it is counted now, as if wrong); else the seconds to wait."""
        key = client_key(client)
        with self._lock:
            now = self._clock()
            t = self._tries.pop(key, None) or _Tries()
            self._tries[key] = t  # most recently seen last
            if now < t.locked_until:
                return t.locked_until - now
            t.fails += 1
            if t.fails >= self.max_fails:
                t.fails, t.locked_until = 0, now + self.lockout_s
            self._trim(now)
            return 0.0

    def passed(self, client: str) -> None:
        """The guess was right: the client starts afresh."""
        with self._lock:
            self._tries.pop(client_key(client), None)

    def _trim(self, now: float) -> None:
        if len(self._tries) <= self.max_clients:
            return
        for key, t in list(self._tries.items()):
            if len(self._tries) <= self.max_clients:
                return
            if t.locked_until <= now:
                del self._tries[key]


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
