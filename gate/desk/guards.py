"""Named guards: each with a PIN of their own, kept hashed in one file
(`guard.guards_file`, JSON {name: hash}, mode 0600). The page then knows who is on
duty: overrides, acknowledgements, visitor registrations and door modes record that
name, and a shift starts with a handover (gate/web/shifts.py)."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger(__name__)

NAME = re.compile(r"^[\w .·-]{1,32}$")  # a name as it is said at the gate: 王师傅, Li Wei
PIN = re.compile(r"^\d{4,12}$")


class GuardsError(ValueError):
    """A guards file or an entry that cannot be used; the message is for the operator."""


def load(path: Path | None) -> dict[str, str]:
    """name -> PIN hash; an absent file is no guards yet."""
    if path is None or not Path(path).exists():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GuardsError(f"{path}: not a readable guards file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise GuardsError(f"{path}: expected an object of guard name -> PIN hash")
    return data


def save(path: Path, guards: dict[str, str]) -> None:
    """Written whole, mode 0600, replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(guards, f, ensure_ascii=False, indent=1, sort_keys=True)
    os.replace(tmp, path)


def add(path: Path, name: str, pin: str) -> None:
    name = name.strip()
    if not NAME.match(name):
        raise GuardsError(f"guard name {name!r}: 1-32 letters, digits, spaces, . · or -")
    if not PIN.match(pin):
        raise GuardsError("a PIN is 4 to 12 digits")
    guards = load(path)
    for other, h in guards.items():
        if other != name and check_password_hash(h, pin):
            raise GuardsError(f"that PIN is {other}'s already: each guard needs a PIN of their own")
    # pbkdf2 at 60,000 rounds: each unlock tries every guard's hash in turn, and a PIN of a
    # few digits gains little from a slower hash (the throttle is what guards it).
    guards[name] = generate_password_hash(pin, method="pbkdf2:sha256:60000")
    save(path, guards)


def remove(path: Path, name: str) -> None:
    guards = load(path)
    if name not in guards:
        raise GuardsError(f"no guard named {name!r} in {path}")
    del guards[name]
    save(path, guards)


class GuardsFile:
    """The guards file as a running page sees it: read again whenever it changes, so
    `gate guards remove` locks a dismissed guard out at once, not after a restart."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._seen = self._stamp()
        self._guards = load(self.path)  # a broken file at start is the operator's error to see
        self.problem: str | None = None  # why the file (changed while running) cannot be used now

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except FileNotFoundError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)

    def current(self) -> dict[str, str]:
        key = self._stamp()
        if key != self._seen:
            try:
                self._guards = load(self.path)
                self._seen, self.problem = key, None
            except GuardsError as exc:
                # Half-written by hand: no named guard unlocks until it is whole again.
                log.error("%s", exc)
                self._guards, self.problem = {}, str(exc)
        return self._guards


def who_has(guards: dict[str, str], pin: str) -> str | None:
    """The guard whose PIN this is, if any."""
    for name, h in guards.items():
        if check_password_hash(h, pin):
            return name
    return None
