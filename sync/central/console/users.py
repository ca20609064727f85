"""Staff accounts of the console, in central's database (``console_users``).

Roles, each able to do what the one before can and more:
- ``viewer``: reads every page;
- ``staff``: also changes passes (revoke, restore);
- ``admin``: also sees the staff accounts.

Passwords are kept as werkzeug scrypt hashes (as the guard's PINs are werkzeug hashes);
accounts are made and disabled with ``gate central users`` (sync/central/users_cli.py),
never deleted, so the audit's names keep meaning someone. A disabled account cannot sign
in, and a browser already signed in as it is signed out at its next request.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

ROLES = ("viewer", "staff", "admin")
NAME = re.compile(r"^[\w .·@-]{1,32}$")  # 王芳, li.wei, office-1
MIN_PASSWORD = 8
# A fixed hash to check a guess against when the name is unknown: as slow as a real check,
# so the time taken does not tell which names exist.
_DUMMY = generate_password_hash("not a password of anyone's", method="scrypt")


class UserError(ValueError):
    """An account that cannot be made or changed; the message is for the operator."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool
    created: float
    changed: float

    def may(self, role: str) -> bool:
        """At least ``role``."""
        return not self.disabled and ROLES.index(self.role) >= ROLES.index(role)


def _user(row: Any) -> User:
    return User(row[0], row[1], bool(row[2]), float(row[3]), float(row[4]))


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME.match(name):
        raise UserError(f"user name {name!r}: 1-32 letters, digits, spaces, . · @ _ or -")
    return name


def add(db: Any, name: str, role: str, password: str) -> User:
    """A new account (UserError if the name is taken, the role unknown or the password short)."""
    name = check_name(name)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    now = time.time()
    with db.tx():
        if db.one("SELECT 1 FROM console_users WHERE name = ?", (name,)):
            raise UserError(f"there is a user {name!r} already")
        db.execute("INSERT INTO console_users (name, role, hash, disabled, created, changed) VALUES (?,?,?,?,?,?)",
                   (name, role, generate_password_hash(password, method="scrypt"), 0, now, now))
    return User(name, role, False, now, now)


def set_disabled(db: Any, name: str, disabled: bool = True) -> User:
    with db.tx():
        n = db.execute("UPDATE console_users SET disabled = ?, changed = ? WHERE name = ?",
                       (1 if disabled else 0, time.time(), name)).rowcount
    if n != 1:
        raise UserError(f"no user {name!r}")
    got = get(db, name)
    assert got is not None
    return got


def get(db: Any, name: str) -> User | None:
    row = db.one("SELECT name, role, disabled, created, changed FROM console_users WHERE name = ?", (name,))
    return _user(row) if row else None


def all_users(db: Any) -> list[User]:
    return [_user(r) for r in db.all("SELECT name, role, disabled, created, changed FROM console_users ORDER BY name")]


def verify(db: Any, name: str, password: str) -> tuple[User | None, str]:
    """(the user, "") when the name and password match an enabled account; else (None,
    "wrong") or (None, "disabled") (said only to someone who knew the password)."""
    row = db.one("SELECT name, role, disabled, created, changed, hash FROM console_users WHERE name = ?", ((name or "").strip(),))
    if row is None:
        check_password_hash(_DUMMY, password or "")
        return None, "wrong"
    if not password or not check_password_hash(row[5], password):
        return None, "wrong"
    user = _user(row)
    if user.disabled:
        return None, "disabled"
    return user, ""
