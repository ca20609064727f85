"""Start-up check of the store, and the pass-table snapshot it is rebuilt from.

A store that fails `PRAGMA integrity_check` (or is not a database at all) is moved
aside with its WAL, never used; a fresh one is built, the pass table restored from
the last local snapshot (kept beside the store, refreshed hourly), and an alarm
says so. Central then brings the table up to date as usual.

Only corruption is corruption: a full disk, an I/O error or a permission problem
raises StoreUnavailable and the store is kept (moving a healthy store aside strands
its unsent events and its time floor). SQLite itself reports an EIO on read as
SQLITE_CORRUPT, so before a store is moved aside every byte of it is read once: if
the operating system cannot read it, that is an I/O error, not corruption.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


# SQLite's primary result codes that mean the file's content is damaged.
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class StoreUnavailable(RuntimeError):
    """The store cannot be read or written now (full, I/O, permissions): kept, retried."""

    def __init__(self, why: str, kind: str = "io") -> None:
        super().__init__(why)
        self.kind = kind  # full | permission | locked | io


def unavailable(exc: BaseException, path: Path) -> StoreUnavailable:
    kind, what = _cause(exc, path)
    name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    return StoreUnavailable(f"store {path}: {what}: {exc} [{name}]; the store is kept as it is", kind)


def is_corruption(exc: BaseException) -> bool:
    # Extended codes (SQLITE_CORRUPT_INDEX ...) carry the primary code in the low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPT_CODES


def _cause(exc: BaseException, path: Path) -> tuple[str, str]:
    """(kind, what an operator reads) for an error that is not corruption."""
    name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    errno_ = getattr(exc, "errno", None)
    # SHMSIZE: the WAL index could not be sized, which on a full disk is ENOSPC.
    if name.startswith("SQLITE_FULL") or errno_ == 28 or ("SHMSIZE" in name and _disk_full(path)):
        return "full", "the disk is full"
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH")) or errno_ in (1, 13):
        return "permission", f"no permission to use it ({_owner(path)})"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "locked", "another process holds it locked"
    return "io", "an I/O error (a failing card or disk?)"


def _owner(path: Path) -> str:
    """Who owns the store (or, before it exists, its directory), against who we are."""
    import pwd

    for p in (path, path.parent):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{p}: {exc.strerror}"
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return f"{p} owned by {owner}, mode {st.st_mode & 0o777:o}; the gate runs as uid {os.getuid()}"
    return f"{path.parent} does not exist"


def _disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < (1 << 20)
    except OSError:
        return False


def _readable(path: Path) -> OSError | None:
    """Read the store and its WAL through once: the OS's own I/O error, if any."""
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        try:
            with open(p, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
        except FileNotFoundError:
            continue
        except OSError as exc:
            return exc
    return None


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    moved_to: Path | None = None
    restored_passes: int = 0


def snapshot_path(store: Path) -> Path:
    return store.with_name(store.name + ".passes-snapshot")


def check(path: Path) -> tuple[bool, str]:
    """(sound, detail). Raises StoreUnavailable when it cannot tell (full, I/O, permissions)."""
    try:
        if not path.exists():
            return True, "new store"
    except OSError as exc:  # a directory we may not search
        raise unavailable(exc, path) from exc
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise unavailable(exc, path) from exc
        return _corrupt_unless_unreadable(path, str(exc))
    if rows == ["ok"]:
        return True, "ok"
    return _corrupt_unless_unreadable(path, "; ".join(rows[:5]))


def _corrupt_unless_unreadable(path: Path, detail: str) -> tuple[bool, str]:
    err = _readable(path)
    if err is not None:
        raise unavailable(err, path)
    return False, detail


def ensure_sound(path: Path) -> CheckResult:
    """Raises StoreUnavailable (store kept) unless the store is sound or corrupt."""
    ok, detail = check(path)
    if ok:
        return CheckResult(True, detail)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(moved) + suffix))
    log.error("store %s failed its integrity check (%s); moved aside to %s", path, detail, moved)
    restored = restore_passes(path)
    return CheckResult(False, detail, moved, restored)


def pass_table_signature(conn: sqlite3.Connection) -> str:
    """What the pass snapshot holds, in one digest: the table's version, its rows' count
    and latest change, who is revoked, every card binding and the tombstones. Equal
    digests: nothing to write (an SD card is worn by rewriting an unchanged table)."""
    import hashlib

    h = hashlib.sha256()
    conn.execute("BEGIN")  # one read snapshot for all of it
    try:
        for sql in ("SELECT value FROM meta WHERE key = 'passes_version'",
                    "SELECT count(*), max(updated_at) FROM passes",
                    "SELECT count(*), max(removed_at) FROM tombstones"):
            h.update(repr(conn.execute(sql).fetchall()).encode())
        for (pid,) in conn.execute("SELECT id FROM passes WHERE revoked = 1 ORDER BY id"):
            h.update(pid.encode() + b"\0")
        h.update(b"--")
        for number, pid in conn.execute("SELECT number, pass_id FROM card_bindings ORDER BY number"):
            h.update(f"{number}\0{pid}\n".encode())
    finally:
        conn.execute("COMMIT")
    return h.hexdigest()


def save_snapshot(conn: sqlite3.Connection, store: Path) -> Path:
    """Copy passes, card bindings and the table's version into the snapshot file
    (atomically; one read transaction, so a snapshot swap cannot fall in between)."""
    target = snapshot_path(store)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn.execute("ATTACH DATABASE ? AS snap", (str(tmp),))
    try:
        conn.execute("BEGIN")
        try:
            conn.execute("CREATE TABLE snap.passes AS SELECT * FROM main.passes")
            # Still called cards in the file, so a snapshot written before schema m006 restores.
            conn.execute("CREATE TABLE snap.cards AS SELECT number, pass_id FROM main.card_bindings")
            conn.execute("CREATE TABLE snap.meta AS SELECT * FROM main.meta WHERE key IN ('passes_version', 'passes_synced_at')")
            conn.execute("CREATE TABLE snap.tombstones AS SELECT * FROM main.tombstones")  # removed passes stay refused
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("DETACH DATABASE snap")
    os.replace(tmp, target)
    return target


def restore_passes(store: Path) -> int:
    """A fresh store with the pass table of the last snapshot; the number of passes restored."""
    from gate.store.database import Store

    snap = snapshot_path(store)
    fresh = Store(store)
    try:
        if not snap.exists():
            return 0
        c = fresh.conn
        c.execute("ATTACH DATABASE ? AS snap", (str(snap),))
        try:
            with fresh.write():
                # a snapshot written before a column existed (attributes) lacks it: NULL
                have = {r[1] for r in c.execute("PRAGMA snap.table_info(passes)")}
                cols = ", ".join(col for col in Store.PASS_COLUMNS if col in have)
                c.execute(f"INSERT OR REPLACE INTO passes ({cols}) SELECT {cols} FROM snap.passes")
                c.execute(
                    "INSERT OR REPLACE INTO card_bindings(number, pass_id)"
                    " SELECT number, pass_id FROM snap.cards WHERE pass_id IS NOT NULL"
                )
                c.execute("INSERT OR REPLACE INTO meta(key, value) SELECT key, value FROM snap.meta")
                if c.execute("SELECT 1 FROM snap.sqlite_master WHERE name = 'tombstones'").fetchone():
                    c.execute("INSERT OR REPLACE INTO tombstones SELECT * FROM snap.tombstones")
        finally:
            c.execute("DETACH DATABASE snap")
        return fresh.pass_count()
    except sqlite3.DatabaseError as exc:
        log.error("the pass snapshot %s is unusable too (%s); central will resend the table", snap, exc)
        return 0
    finally:
        fresh.close()
