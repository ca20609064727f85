"""Central's data: events, status, reports, the roster with its versioned change
log, policies and commands, over one DB connection (one store per thread)."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from gate.core import attributes as pass_attributes
from sync import codec
from sync.central import tombstones
from sync.central.db import DB
from sync.central.wire import wire_text, wire_pass


_INSERT_EVENT = "INSERT INTO events (id, gate, seq, ts, type, body, received) VALUES (?,?,?,?,?,?,?)"


class RosterError(ValueError):
    pass


class CentralStore:
    """Central's data: events, status, reports, the roster with its change log,
    policies and commands. One per thread."""

    def __init__(self, url: str) -> None:
        self.db = DB(url)
        self.db.create_schema()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ inbound
    def insert_event(self, ev: dict[str, Any], received: float) -> bool:
        """Inside a tx. True if new, False for a duplicate id."""
        return self.insert_events([(ev, received)])[0]

    def insert_events(self, evs: list[tuple[dict[str, Any], float]]) -> list[bool]:
        """Inside a tx: each (event, received time) stored unless its id is. For each,
        True if stored now, False for a duplicate (stored before, or earlier in the list).
        On PostgreSQL one statement for them all (one round trip, not one an event)."""
        rows = [(ev["id"], ev["gate"], int(ev["seq"]), ev["ts"], ev["type"], codec.encode(ev).decode("utf-8"), received)
                for ev, received in evs]
        if not rows:
            return []
        if not self.db.pg:
            return [self.db.execute(_INSERT_EVENT + " ON CONFLICT (id) DO NOTHING", r).rowcount == 1 for r in rows]
        new = {r[0] for r in self.db.all(
            "INSERT INTO events (id, gate, seq, ts, type, body, received)"
            # %b: the arrays go in binary (in text, each JSON body's quotes would be escaped)
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::float8[])"
            " ON CONFLICT (id) DO NOTHING RETURNING id", [list(col) for col in zip(*rows)])}
        out = []
        for r in rows:
            out.append(r[0] in new)
            new.discard(r[0])  # a second copy later in the list is a duplicate
        return out

    def upsert_status(self, st: dict[str, Any], received: float) -> None:
        self.db.execute(
            "INSERT INTO status (gate, online, ts, body, received) VALUES (?,?,?,?,?) ON CONFLICT (gate) DO UPDATE"
            " SET online = excluded.online, ts = excluded.ts, body = excluded.body, received = excluded.received",
            (st["gate"], 1 if st["online"] else 0, st["ts"], codec.encode(st).decode("utf-8"), received),
        )

    def upsert_report(self, rep: dict[str, Any], received: float) -> None:
        self.db.execute(
            "INSERT INTO reports (gate, date, body, received) VALUES (?,?,?,?) ON CONFLICT (gate, date) DO UPDATE"
            " SET body = excluded.body, received = excluded.received",
            (rep["gate"], rep["date"], codec.encode(rep).decode("utf-8"), received),
        )

    def events(self, gate: str | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT body FROM events"
        args: list[Any] = []
        if gate:
            sql += " WHERE gate = ?"
            args.append(gate)
        sql += " ORDER BY gate, seq, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.db.all(sql, args)]

    def event_count(self, gate: str | None = None) -> int:
        if gate:
            return int(self.db.one("SELECT count(*) FROM events WHERE gate = ?", (gate,))[0])
        return int(self.db.one("SELECT count(*) FROM events")[0])

    def statuses(self) -> dict[str, dict[str, Any]]:
        return {r[0]: json.loads(r[1]) for r in self.db.all("SELECT gate, body FROM status ORDER BY gate")}

    def liveness(self, now: float, alarm_after_s: float) -> dict[str, dict[str, Any]]:
        """Each gate's last status with what central makes of it: `online`, `offline`
        (it said so, or its will did), `stale` (three heartbeats missed) or `silent`
        (stale for longer than alarm_after_s: an alarm for the office)."""
        out = {}
        for gate, body, received in self.db.all("SELECT gate, body, received FROM status ORDER BY gate"):
            st = json.loads(body)
            quiet = max(0.0, now - float(received))
            every = float(st.get("heartbeat_s") or 30.0)
            state = "offline" if not st["online"] else "online"
            if st["online"] and quiet > 3 * every:
                state = "silent" if quiet > alarm_after_s else "stale"
            out[gate] = {**st, "state": state, "quiet_s": round(quiet, 1)}
        return out

    def reports(self, gate: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT body FROM reports", []
        if gate:
            sql += " WHERE gate = ?"
            args.append(gate)
        return [json.loads(r[0]) for r in self.db.all(sql + " ORDER BY gate, date", args)]

    # ------------------------------------------------------------ roster
    @property
    def passes_version(self) -> int:
        return int(self.db.one("SELECT value FROM meta WHERE key = 'passes_version'")[0])

    def get_meta(self, key: str) -> str | None:
        row = self.db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.tx():
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_pass(self, pass_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT wire FROM passes WHERE id = ?", (pass_id,))
        return json.loads(row[0]) if row else None

    def pass_count(self) -> int:
        return int(self.db.one("SELECT count(*) FROM passes")[0])

    def apply(self, changes: list[tuple[str, str, dict[str, Any] | None]], *, by: str | None = None,
              reason: str | None = None, also: Callable[[DB, int], None] | None = None) -> tuple[int, int]:
        """Apply ("upsert", id, wire) / ("delete", id, None) changes in one transaction,
        one version each. Returns (from_version, to_version). Cards stay unique.

        ``by`` and ``reason`` (who made these changes, and why) travel with each change to
        the gates, which record them (a revoke names who revoked); ``also(db, to_version)``
        runs in the same transaction (the console's audit row)."""
        note = ""
        if by:
            note += ',"by":' + json.dumps(by[:128], ensure_ascii=False)
        if reason:
            note += ',"reason":' + json.dumps(reason[:1000], ensure_ascii=False)
        now = time.time()
        with self.db.tx():
            v0 = self.db.lock_roster()
            v = v0
            pass_rows, change_rows, deletes = [], [], []
            stones: list[tuple[int, dict[str, Any]]] = []  # removed passes stay refused (sync/central/tombstones.py)
            wires_in_batch: dict[str, dict[str, Any]] = {}
            cards_in_batch: dict[str, str] = {}
            preload: dict[str, str] | None = None
            if len(changes) > 1000:  # one query instead of one per row
                preload = {r[0]: r[1] for r in self.db.all("SELECT card, id FROM passes WHERE card IS NOT NULL")}
            for op, pid, wire in changes:
                v += 1
                if op == "upsert":
                    assert wire is not None
                    card = wire.get("card")
                    if card:
                        other = cards_in_batch.get(card)
                        if other is None and preload is not None:
                            other = preload.get(card)
                        elif other is None:
                            row = self.db.one("SELECT id FROM passes WHERE card = ? AND id <> ?", (card, pid))
                            other = row[0] if row else None
                        if other is not None and other != pid:
                            raise RosterError(f"card {card} is already bound to pass {other}")
                        cards_in_batch[card] = pid
                    text = wire_text(wire)
                    wires_in_batch[pid] = wire
                    pass_rows.append((pid, wire["category"], wire.get("holder"), wire.get("unit"), card,
                                      1 if wire["revoked"] else 0, v, text, pass_attributes.text(wire.get("attributes"))))
                    change_rows.append((v, pid, "upsert", '{"op":"upsert","pass":' + text + note + "}", now))
                elif op == "delete":
                    deletes.append((pid,))
                    change = tombstones.delete_change(pid, wires_in_batch.get(pid) or self.get_pass(pid))
                    stones.append((v, change))
                    text = json.dumps(change, ensure_ascii=False)
                    change_rows.append((v, pid, "delete", text[:-1] + note + "}" if note else text, now))
                else:
                    raise ValueError(f"unknown op {op!r}")
            # order matters when one batch upserts and deletes the same id: replay in order
            if deletes and pass_rows:
                by_version = {r[6]: r for r in pass_rows}
                for (vv, pid, op, _c, _t) in change_rows:
                    if op == "delete":
                        self.db.execute("DELETE FROM passes WHERE id = ?", (pid,))
                    else:
                        self._upsert_rows([by_version[vv]])
            else:
                if pass_rows:
                    self._upsert_rows(pass_rows)
                if deletes:
                    self.db.executemany("DELETE FROM passes WHERE id = ?", deletes)
            last_op = {pid: op for op, pid, _w in changes}
            tombstones.remember(self.db, [(vv, ch) for vv, ch in stones if last_op[ch["id"]] == "delete"], now)
            if pass_rows and self.db.one("SELECT 1 FROM tombstones LIMIT 1"):
                tombstones.lift(self.db, [pid for pid, op in last_op.items() if op == "upsert"])
            if change_rows:
                self.db.executemany("INSERT INTO changes (version, pass_id, op, change, ts) VALUES (?,?,?,?,?)", change_rows)
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'passes_version'", (str(v),))
            if also is not None:
                also(self.db, v)
        return v0, v

    def _upsert_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany(
            "INSERT INTO passes (id, category, holder, unit, card, revoked, version, wire, attributes)"
            " VALUES (?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET category = excluded.category, holder = excluded.holder,"
            " unit = excluded.unit, card = excluded.card, revoked = excluded.revoked, version = excluded.version,"
            " wire = excluded.wire, attributes = excluded.attributes",
            rows,
        )

    def upsert_passes(self, rows: list[dict[str, Any]], cards: dict[str, str] | None = None, *, only_changed: bool = True) -> tuple[int, int]:
        """Roster rows (gate.desk.roster format, times as datetimes) in; unchanged rows are skipped."""
        bind = {pid: card for card, pid in (cards or {}).items()}
        wires = []
        for r in rows:
            r = dict(r)
            if r["id"] in bind and not r.get("card"):
                r["card"] = bind[r["id"]]
            wires.append(wire_pass(r))
        if only_changed and wires:
            current = {}
            ids = [w["id"] for w in wires]
            for i in range(0, len(ids), 900):
                part = ids[i : i + 900]
                q = "SELECT id, wire FROM passes WHERE id IN (" + ",".join("?" * len(part)) + ")"
                current.update({r[0]: r[1] for r in self.db.all(q, part)})
            wires = [w for w in wires if current.get(w["id"]) != wire_text(w)]
        return self.apply([("upsert", w["id"], w) for w in wires])

    def add_pass(self, **fields: Any) -> int:
        return self.apply([("upsert", fields["id"], wire_pass(fields))])[1]

    def revoke_pass(self, pass_id: str, revoked: bool = True, *, by: str | None = None, reason: str | None = None,
                    also: Callable[[DB, int], None] | None = None) -> int:
        """Revoke a pass (or restore it): an upsert the gates receive with who and why."""
        cur = self.get_pass(pass_id)
        if cur is None:
            raise RosterError(f"no pass {pass_id!r}")
        cur["revoked"] = revoked
        return self.apply([("upsert", pass_id, cur)], by=by, reason=reason, also=also)[1]

    def delete_pass(self, pass_id: str) -> int:
        if self.get_pass(pass_id) is None:
            raise RosterError(f"no pass {pass_id!r}")
        return self.apply([("delete", pass_id, None)])[1]

    def changes_after(self, version: int, limit: int) -> list[tuple[int, str]]:
        return [(int(r[0]), r[1]) for r in self.db.all(
            "SELECT version, change FROM changes WHERE version > ? ORDER BY version LIMIT ?", (version, limit)
        )]

    def snapshot_lines(self) -> tuple[int, list[str]]:
        """(version, wire JSON of every pass, ordered by id) at one consistent version."""
        with self.db.tx(write=False):
            v = int(self.db.one("SELECT value FROM meta WHERE key = 'passes_version'")[0])
            lines = [r[0] for r in self.db.all("SELECT wire FROM passes ORDER BY id")]
            lines += tombstones.snapshot_lines(self.db, time.time())  # removed passes, still refused
        return v, lines

    # ------------------------------------------------------------ policy / commands
    def store_policy(self, payload: dict[str, Any]) -> bool:
        """Keep a signed policy payload; False if that version is already stored."""
        with self.db.tx():
            cur = self.db.execute(
                "INSERT INTO policies (version, payload, ts) VALUES (?,?,?) ON CONFLICT (version) DO NOTHING",
                (payload["version"], codec.encode(payload).decode("utf-8"), time.time()),
            )
            return cur.rowcount == 1

    def latest_policy(self) -> dict[str, Any] | None:
        row = self.db.one("SELECT payload FROM policies ORDER BY version DESC LIMIT 1")
        return json.loads(row[0]) if row else None

    def policy_payload(self, version: int) -> dict[str, Any] | None:
        row = self.db.one("SELECT payload FROM policies WHERE version = ?", (version,))
        return json.loads(row[0]) if row else None

    def store_command(self, payload: dict[str, Any]) -> None:
        with self.db.tx():
            self.db.execute(
                "INSERT INTO commands (nonce, gate, cmd, payload, ts) VALUES (?,?,?,?,?)",
                (payload["nonce"], payload["gate"], payload["cmd"], codec.encode(payload).decode("utf-8"), time.time()),
            )
