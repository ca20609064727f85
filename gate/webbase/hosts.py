"""Which ``Host`` names the guard page answers to.

A page from another site whose name is re-pointed at this machine (DNS rebinding)
reaches us with that site's name in ``Host``; so does a request a browser sends on
that page's behalf. Refusing unknown names keeps such pages from loading the guard
page, reading its CSRF token and acting with it. An IP literal cannot be rebound,
so when the page listens on every address (0.0.0.0 or ::) any IP literal is
accepted: the LAN reaches the gate by the address it has today.

Allowed by default: ``localhost``, the loopback addresses, the listen address and,
on every address, this machine's host name (and ``NAME.local``).
``guard.allowed_hosts`` adds more names.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterable

WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets or a final dot, lower-case."""
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostCheck:
    names: frozenset[str]
    any_ip: bool  # listening on every address: any IP literal is one of ours or unreachable

    @classmethod
    def build(cls, listen_host: str, extra: Iterable[str] = ()) -> "HostCheck":
        names = {"localhost", *(host_name(h) for h in extra)}
        listen = host_name(listen_host)
        any_ip = listen in WILDCARDS
        if any_ip:
            me = socket.gethostname().lower()
            names |= {me, f"{me}.local"}
        else:
            names.add(listen)
        return cls(frozenset(n for n in names if n), any_ip)

    def allows(self, header: str) -> bool:
        name = host_name(header)
        if name in self.names:
            return True
        ip = _ip(name)
        if ip is None:
            return False
        return ip.is_loopback or self.any_ip or any(_ip(n) == ip for n in self.names)
