"""The office console: a web page for the community office, served by the running
central (`gate central -c CENTRAL.toml` with a `[console]` section) on central's own
database. Staff sign in with their own accounts (`gate central users ...`); every change
made here is in the audit with the person's name, and a revoke reaches the gates naming
who revoked.

One concern a module: ``schema`` (its tables and indexes), ``users`` (accounts and
roles), ``audit`` (who changed what), ``board`` (the gates board and the site's alarms),
``search`` (passes by name, unit, card or id), ``actions`` (revoke and restore),
``live`` (the board pushed over server-sent events), ``guard`` (sign-in, sessions,
CSRF, roles), ``pages`` (the routes), ``server`` (``Console``: the Flask app under
waitress, beside central's threads). Imports nothing of the gate's but the core, config
and store, and gate/webbase (the Host allow-list, throttle and sessions the guard's
page uses too).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Console"]


def __getattr__(name: str) -> Any:  # the web stack is loaded only when a console is served
    if name == "Console":
        from sync.central.console.server import Console

        return Console
    raise AttributeError(name)
