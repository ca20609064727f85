"""Sessions of a page of ours (the guard's page, the office console) kept in the server's memory.

The cookie carries only a random id; what a browser may do (signed in, unlocked
until, its CSRF token) stays on the server, so it can be taken back: Lock drops the
unlock and gives the browser a new id, and the old id then means nothing. Unlocking
and signing in also give a new id, so an id seen before is never the unlocked one.

A session belongs to the client (address, or IPv6 /64) that started it: the same
cookie sent from another machine is no session at all. Sessions end when the daemon
restarts (the guard unlocks again), after ``lifetime_s`` from the last change, after
``idle_s`` without a request (when given: the console's office PCs), or when a client
holds too many (its oldest gives way, so a flood from one machine cannot push out the
kiosk's).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from gate.webbase.throttle import client_key

MAX_SESSIONS = 1024
PER_CLIENT = 32


class ServerSession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None) -> None:
        def changed(_: Any) -> None:
            self.modified = True

        super().__init__(data or {}, changed)
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.renew = False

    def renew_id(self) -> None:
        """Give this browser a new id; the old one is forgotten (after Lock, unlock, sign-in)."""
        self.renew = True
        self.modified = True


@dataclass
class _Entry:
    data: dict[str, Any]
    client: str
    expires: float
    seen: float = 0.0  # the last request that came with it


class SessionStore(SessionInterface):
    def __init__(self, lifetime_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = MAX_SESSIONS, per_client: int = PER_CLIENT, idle_s: float | None = None) -> None:
        self.lifetime_s = lifetime_s
        self.idle_s = idle_s
        self._clock = clock
        self.max_sessions = max_sessions
        self.per_client = per_client
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def open_session(self, app: Flask, req: Request) -> ServerSession:
        sid = req.cookies.get(self.get_cookie_name(app))
        if not sid:
            return ServerSession()
        with self._lock:
            entry = self._entries.get(sid)
            now = self._clock()
            if entry is None or entry.expires <= now or entry.client != client_key(req.remote_addr or ""):
                return ServerSession()
            if self.idle_s is not None and now - entry.seen > self.idle_s:
                del self._entries[sid]  # idle too long: signed out
                return ServerSession()
            entry.seen = now
            return ServerSession(dict(entry.data), sid)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:  # type: ignore[override]
        assert isinstance(session, ServerSession)
        if not session.modified:
            return
        name = self.get_cookie_name(app)
        client = client_key(request.remote_addr or "")
        with self._lock:
            sid = session.sid
            if sid is not None and (session.renew or not session):
                self._entries.pop(sid, None)
                sid = None
            if not session:
                if session.sid is not None:
                    response.delete_cookie(name, path=self.get_cookie_path(app), domain=self.get_cookie_domain(app))
                return
            fresh = sid is None
            if fresh:
                sid = secrets.token_urlsafe(32)
            now = self._clock()
            self._entries[sid] = _Entry(dict(session), client, now + self.lifetime_s, now)
            self._entries.move_to_end(sid)
            self._trim(client)
        if fresh:
            response.set_cookie(
                name, sid, max_age=int(self.lifetime_s), path=self.get_cookie_path(app),
                domain=self.get_cookie_domain(app), secure=self.get_cookie_secure(app),
                httponly=self.get_cookie_httponly(app), samesite=self.get_cookie_samesite(app),
            )

    def _trim(self, client: str) -> None:
        now = self._clock()
        for sid in [s for s, e in self._entries.items() if e.expires <= now]:
            del self._entries[sid]
        mine = [s for s, e in self._entries.items() if e.client == client]
        for sid in mine[: max(0, len(mine) - self.per_client)]:
            del self._entries[sid]
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)
