"""Wrong guesses of a password or PIN, counted per client (an IPv4 address, or an IPv6
/64): after ``MAX_FAILS`` in a row from one client, nothing more from it is checked for
``LOCKOUT_S`` seconds. A guess is counted before it is checked, under the same lock as
the lockout test, so concurrent guesses cannot outrun the count; a client elsewhere
cannot lock out the kiosk or the office PC. Used by the guard's page (gate/web/auth.py)
and the office console (sync/central/console/)."""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

MAX_FAILS = 5
LOCKOUT_S = 60.0
MAX_CLIENTS = 1024  # throttle entries kept; the least recently seen unlocked one gives way


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False



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


