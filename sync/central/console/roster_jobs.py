"""Roster uploads in the console, as jobs that run beside the pages (a 100,000-row file
takes seconds): the file is kept in a spool folder under its SHA-256, read and checked
(sync/central/roster.py ``read``: bad rows by their spreadsheet row numbers), compared
with central's roster (``plan_import``), and shown; applied only on a second request
that carries the file's SHA-256 (so a confirmation meant for one file never applies
another), and only if the roster has not moved since the check. The import goes to the
gates as ``gate central passes import`` does (``store.apply``: a new roster version, in
the next signed batch), with its audit row in the same transaction. Progress is read
by the page (``/api/roster/jobs/<id>``) while the job runs on its own thread with its
own database connection.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sync.central.console import audit
from sync.central.console.actions import ActionError
from sync.central.roster import Plan, plan_import, read
from sync.central.store import CentralStore, RosterError

log = logging.getLogger("sync.central.console")
KEEP = 20  # jobs kept (and their files); the oldest finished go first
RUNNING = 2  # jobs that read or write at once (the others wait their turn)
SHOWN = 200  # rows of each list a page shows
_ROW = re.compile(r": row (\d+): (.*)$")
_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")


@dataclass
class Job:
    id: str
    who: str
    filename: str
    path: Path
    sha256: str
    replace: bool
    created: float
    state: str = "waiting"  # waiting, reading, comparing, ready, bad, applying, applied, stale, failed
    done: int = 0
    total: int = 0
    plan: Plan | None = None
    bad: list[tuple[int, str]] = field(default_factory=list)  # (row number, why); 0: the file as a whole
    error: str = ""
    versions: tuple[int, int] = (0, 0)
    applied_by: str = ""
    finished: float = 0.0

    @property
    def running(self) -> bool:
        return self.state in ("waiting", "reading", "comparing", "applying")

    def progress(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total, "error": self.error,
                "counts": self.plan.counts() if self.plan else None, "bad": len(self.bad),
                "versions": list(self.versions)}


def bad_rows(message: str) -> list[tuple[int, str]]:
    """A RosterError's message as (row number, why); a line that names no row is row 0."""
    out = []
    for line in message.splitlines():
        line = line.strip()
        if not line or line.startswith("nothing imported"):
            continue
        m = _ROW.search(line)
        out.append((int(m.group(1)), m.group(2)) if m else (0, line))
    return out


def safe_name(name: str) -> str:
    name = _NAME.sub("_", Path(name or "").name)[-80:].strip("._")
    return name or "roster.csv"


class Stale(Exception):
    """The roster moved between the check and the apply."""


class Jobs:
    """The console's roster uploads. ``notify`` wakes central's publisher after an import."""

    def __init__(self, db_url: str, tz: str, notify: Callable[[], None], attributes: dict[str, str] | None = None) -> None:
        self.db_url = db_url
        self.tz = tz
        self.attributes = dict(attributes or {})  # CENTRAL.toml [roster] attributes
        self.notify = notify
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._turns = threading.BoundedSemaphore(RUNNING)
        self._spool: Path | None = None

    def spool(self) -> Path:
        with self._lock:
            if self._spool is None:
                self._spool = Path(tempfile.mkdtemp(prefix="gate-console-roster-"))
                weakref.finalize(self, shutil.rmtree, str(self._spool), True)
            return self._spool

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: -j.created)

    # ------------------------------------------------------------ checking

    def check(self, who: str, filename: str, data: bytes, *, replace: bool) -> Job:
        """Keep the file and start reading and comparing it; the job at once."""
        sha = hashlib.sha256(data).hexdigest()
        name = safe_name(filename)
        folder = self.spool() / sha
        folder.mkdir(exist_ok=True)
        path = folder / name
        if not path.exists():
            path.write_bytes(data)
        job = Job(uuid.uuid4().hex[:16], who, name, path, sha, replace, time.time())
        self._add(job)
        threading.Thread(target=self._check, args=(job,), name=f"roster-check-{job.id}", daemon=True).start()
        return job

    def recheck(self, job: Job, who: str) -> Job:
        """The same file checked again (after the roster moved)."""
        return self.check(who, job.filename, job.path.read_bytes(), replace=job.replace)

    def _add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            done = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.created)
            for old in done[: max(0, len(self._jobs) - KEEP)]:
                del self._jobs[old.id]
                if not any(j.sha256 == old.sha256 for j in self._jobs.values()):
                    shutil.rmtree(old.path.parent, ignore_errors=True)

    def _tell(self, job: Job, state: str) -> Callable[[int, int], None]:
        def progress(done: int, total: int) -> None:
            job.state, job.done, job.total = state, done, total
        return progress

    def _check(self, job: Job) -> None:
        with self._turns:
            store = None
            try:
                job.state = "reading"
                roster = read(job.path, tz=self.tz, attributes=self.attributes, progress=self._tell(job, "reading"))
                job.state, job.done, job.total = "comparing", 0, len(roster.rows)
                store = CentralStore(self.db_url)
                plan = plan_import(store, roster, replace=job.replace, progress=self._tell(job, "comparing"))
                job.plan = plan
                job.bad = list(plan.conflicts)
                job.state = "bad" if plan.conflicts else "ready"
            except RosterError as exc:
                job.bad = bad_rows(str(exc).replace(str(job.path), job.filename))
                job.state = "bad"
            except Exception as exc:  # the page says what went wrong; the log has the rest
                log.exception("console: checking roster %s", job.filename)
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            finally:
                job.finished = time.time()
                if store is not None:
                    store.close()

    # ------------------------------------------------------------ applying

    def apply(self, job: Job, token: str, who: str) -> None:
        """Start applying a checked job: ActionError unless ``token`` is the checked file's
        SHA-256, the check found no bad row, and nothing else is applying it."""
        if not token or token != job.sha256:
            raise ActionError("token", "this confirmation is for another file: upload and check the file again")
        try:
            on_disk = hashlib.sha256(job.path.read_bytes()).hexdigest()
        except OSError:
            on_disk = ""
        if on_disk != job.sha256:
            raise ActionError("token", "the checked file is gone or changed: upload it again")
        with self._lock:
            if job.state != "ready" or job.plan is None:
                raise ActionError("not_ready", f"the job is {job.state}, not ready to apply")
            job.state, job.applied_by, job.done, job.total = "applying", who, 0, len(job.plan.changes)
        threading.Thread(target=self._apply, args=(job, who), name=f"roster-apply-{job.id}", daemon=True).start()

    def _apply(self, job: Job, who: str) -> None:
        assert job.plan is not None
        plan = job.plan
        with self._turns:
            store = CentralStore(self.db_url)
            try:
                def also(db: Any, version: int) -> None:
                    if version - len(plan.changes) != plan.version:
                        raise Stale()
                    audit.record(db, who, "roster_import", job.filename, "",
                                 f"{plan.summary()}; {plan.rows} rows; roster version {plan.version} -> {version};"
                                 f" sha256 {job.sha256[:16]}{'; replace' if job.replace else ''}")

                v0, v1 = store.apply(plan.changes, by=who, reason=f"roster {job.filename}", also=also)
                job.versions, job.done, job.state = (v0, v1), len(plan.changes), "applied"
                self.notify()  # the running central's publisher sends it now
            except Stale:
                job.state = "stale"
            except RosterError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:
                log.exception("console: applying roster %s", job.filename)
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            finally:
                job.finished = time.time()
                store.close()
