"""Start-up check of the store, and the pass-table snapshot it is rebuilt from.

A store that fails `PRAGMA integrity_check` (or is not a database at all) is moved
aside with its WAL, never used; a fresh one is built, the pass table restored from
the last local snapshot (kept beside the store, refreshed hourly), and an alarm
says so. Central then brings the table up to date as usual.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    moved_to: Path | None = None
    restored_passes: int = 0


def snapshot_path(store: Path) -> Path:
    return store.with_name(store.name + ".passes-snapshot")


def check(path: Path) -> tuple[bool, str]:
    if not path.exists():
        return True, "new store"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return False, str(exc)
    if rows == ["ok"]:
        return True, "ok"
    return False, "; ".join(rows[:5])


def ensure_sound(path: Path) -> CheckResult:
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
    from gate.store import Store

    snap = snapshot_path(store)
    fresh = Store(store)
    try:
        if not snap.exists():
            return 0
        c = fresh.conn
        c.execute("ATTACH DATABASE ? AS snap", (str(snap),))
        try:
            with fresh.write():
                cols = ", ".join(Store.PASS_COLUMNS)
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
