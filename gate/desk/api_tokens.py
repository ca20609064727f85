"""Bearer tokens of the gate's local HTTP API (gate/web/api.py): one per client (an
intercom, Home Assistant, Node-RED), each with its rights (`open`, `read`), kept in one
file (`guard.tokens_file`, JSON, mode 0600) that holds only a hash of each token.

A token is ``gt1.<id>.<secret>``: the id (12 hex digits) names it in lists and logs,
the secret is 32 random bytes (base64url). `gate tokens add` prints it once; it is
never stored, so a lost token is removed and made again.

The file is read again whenever it changes (``TokensFile.current``), so
`gate tokens remove` refuses a token in a running gate at its next request.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RIGHTS = ("open", "read")  # open: open a lane's door; read: the event stream
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # recorded as who="api:NAME" with every action
PREFIX = "gt1"


class TokensError(ValueError):
    """A tokens file or an entry that cannot be used; the message is for the operator."""


@dataclass(frozen=True)
class Token:
    name: str
    id: str
    rights: tuple[str, ...]
    created: str  # ISO 8601, UTC
    hash: str  # "sha256:<hex>" of the whole token

    def can(self, right: str) -> bool:
        return right in self.rights

    def listing(self) -> dict[str, Any]:
        """What `gate tokens list` shows: never the hash, only the last four of the id."""
        return {"name": self.name, "rights": list(self.rights), "created": self.created, "id_last4": self.id[-4:]}


def digest(token: str) -> str:
    # SHA-256, not a slow password hash: a token is 32 random bytes (256 bits), so there
    # is no dictionary to try and a fast hash loses nothing, while every request checks
    # it against every stored entry. A slow hash protects guessable secrets (the guards'
    # PINs, gate/desk/guards.py); it adds nothing to a random one. Compared in constant
    # time (hmac.compare_digest) so response times tell nothing about a near miss.
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_rights(text: str) -> tuple[str, ...]:
    rights = tuple(sorted({r.strip() for r in text.split(",") if r.strip()}))
    if not rights:
        raise TokensError(f"--can: name at least one right ({', '.join(RIGHTS)})")
    unknown = [r for r in rights if r not in RIGHTS]
    if unknown:
        raise TokensError(f"--can: unknown right {', '.join(unknown)} (expected {', '.join(RIGHTS)})")
    return rights


def _entry(name: str, raw: Any, path: Path | None) -> Token:
    if not isinstance(raw, dict):
        raise TokensError(f"{path}: token {name!r}: expected an object")
    try:
        rights = tuple(raw["rights"])
        tok = Token(name=name, id=str(raw["id"]), rights=rights, created=str(raw["created"]), hash=str(raw["hash"]))
    except (KeyError, TypeError) as exc:
        raise TokensError(f"{path}: token {name!r}: missing or bad {exc}") from None
    if not tok.hash.startswith("sha256:") or any(r not in RIGHTS for r in rights):
        raise TokensError(f"{path}: token {name!r}: unknown hash or right")
    return tok


def load(path: Path | None) -> dict[str, Token]:
    """name -> Token; an absent file is no tokens yet."""
    if path is None or not Path(path).exists():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokensError(f"{path}: not a readable tokens file ({exc})") from None
    if not isinstance(data, dict):
        raise TokensError(f"{path}: expected an object of token name -> entry")
    return {str(name): _entry(str(name), raw, path) for name, raw in data.items()}


def save(path: Path, tokens: dict[str, Token]) -> None:
    """Written whole, mode 0600, replaced atomically (a running gate never reads half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    body = {t.name: {"id": t.id, "rights": list(t.rights), "created": t.created, "hash": t.hash}
            for t in sorted(tokens.values(), key=lambda t: t.name)}
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(body, f, ensure_ascii=False, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def add(path: Path, name: str, rights: tuple[str, ...], *, now: datetime | None = None) -> str:
    """A new token for `name`; returns the token itself (shown once, never stored)."""
    if not NAME.match(name):
        raise TokensError(f"token name {name!r}: 1-32 letters, digits, '.', '_' or '-'")
    rights = parse_rights(",".join(rights))
    tokens = load(path)
    if name in tokens:
        raise TokensError(f"a token named {name!r} exists already: `gate tokens remove {name}` first to replace it")
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}.{token_id}.{secrets.token_urlsafe(32)}"
    created = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    tokens[name] = Token(name=name, id=token_id, rights=rights, created=created, hash=digest(token))
    save(path, tokens)
    return token


def remove(path: Path, name: str) -> None:
    tokens = load(path)
    if name not in tokens:
        raise TokensError(f"no token named {name!r} in {path}")
    del tokens[name]
    save(path, tokens)


def match(tokens: dict[str, Token], given: str) -> Token | None:
    """The token whose hash this is, if any (every entry compared, in constant time)."""
    h = digest(given)
    found = None
    for tok in tokens.values():
        if hmac.compare_digest(h, tok.hash):
            found = tok
    return found


class TokensFile:
    """The tokens file as a running gate sees it: read again whenever it changes, so
    `gate tokens remove` refuses a token at once, not after a restart."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._seen = self._stamp()
        self._tokens = load(self.path)  # a broken file at start is the operator's error to see

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat() if self.path else None
        except FileNotFoundError:
            return None
        # The inode too: save() replaces the file, so a rewrite within one mtime tick shows.
        return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> dict[str, Token]:
        key = self._stamp()
        if key != self._seen:
            try:
                self._tokens = load(self.path)
                self._seen = key
            except TokensError as exc:
                # Half-written by hand: no token is accepted until it is whole again.
                log.error("%s", exc)
                self._tokens = {}
        return self._tokens

    def check(self, given: str) -> Token | None:
        return match(self.current(), given)
