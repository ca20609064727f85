"""Events in the store: a lane's record stored with its outbox row in one transaction,
and what a decision changes (who is inside, fever holds, presence from other gates).
A part of `Store` (a mixin over its connection)."""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from gate.core.records import AckRecord, AlarmRecord, DecisionRecord, LaneRecord
from gate.store.rows import StoredEvent

log = logging.getLogger("gate.store.database")


# The pass's fields a situation holds that say who it is (gate.store.erasure.PERSONAL_FIELDS):
# left out of the situation that goes upstream. The event's "pass" names it already and
# central's roster has its unit; its holder and phone digits were never in a situation.
WHO = ("id", "unit")
MAX_READINGS = 16  # sync/schemas/event.schema.json: situation.temperatures maxItems
MAX_UPSTREAM = 30 * 1024  # under sync.codec.MAX_BYTES["event"] (32 KiB), which central refuses unread


def upstream_situation(situation: dict[str, Any]) -> dict[str, Any] | None:
    """A decision's situation as it goes upstream with the event ([sync]
    send_situations): the pass without its id and unit. None when it cannot go (more
    readings than the schema allows): the decision goes without it (not replayable at
    central, replayable at the gate as ever)."""
    if len(situation.get("temperatures") or ()) > MAX_READINGS:
        return None
    p = situation.get("pass")
    if p is None:
        return situation
    return {**situation, "pass": {k: v for k, v in p.items() if k not in WHO}}


def with_situation(payload: str, situation: dict[str, Any]) -> str:
    """The event's payload (compact JSON, ending in "}") with its upstream situation,
    or as it was when that would make it too large for central."""
    up = upstream_situation(situation)
    if up is None:
        return payload
    text = payload[:-1] + ',"situation":' + json.dumps(up, ensure_ascii=False, separators=(",", ":")) + "}"
    if len(text.encode("utf-8")) > MAX_UPSTREAM:
        log.warning("a decision's situation would make its event %d bytes: sent without it", len(text.encode("utf-8")))
        return payload
    return text


class StoreEvents:
    conn: sqlite3.Connection
    gate_id: str
    send_situations: bool

    def _next_seq(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        seq = int(row[0]) + 1 if row else 1
        self._set_meta(self.conn, "seq", str(seq))
        return seq

    def record(
        self, rec: LaneRecord, *, direction: str | None = None, also: Any = None
    ) -> StoredEvent:
        """Write one event and its outbox row in one transaction (before the door acts).

        A decision also updates what the gate must remember: who is inside, when a
        card was first seen. ``also(conn)``, if given, runs first in the same
        transaction: the change an event records (a revocation, a roster, a policy)
        and its event commit together or not at all."""
        local = rec.at.astimezone(self.tz)
        ts = rec.at.timestamp()
        with self.write() as c:
            if also is not None:
                also(c)
            seq = self._next_seq()
            event_id = rec.id
            fields = rec.to_json()
            body = {"id": event_id, "seq": seq, "gate": self.gate_id, "ts": rec.at.isoformat(), "clock": rec.clock, **fields}
            if isinstance(rec, DecisionRecord):
                # Events name passes by id only: the holder's name stays in the pass table.
                extra = {"card": rec.card, "challenge_id": rec.challenge_id, "who": rec.who, "policy_version": rec.policy_version,
                         "direction": direction if rec.pass_id and direction in ("in", "out") else None}
                body.update({k: v for k, v in extra.items() if v is not None})
            elif isinstance(rec, AlarmRecord) and rec.kind == "fever" and rec.pass_id:
                body["pass"] = rec.pass_id  # central tells the site's other gates to hold it too
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            situation = getattr(rec, "situation", None)
            upstream = payload
            if situation and self.send_situations:
                upstream = with_situation(payload, situation)
            c.execute(
                "INSERT INTO events(seq, id, ts, day, hour, type, lane, pass_id, credential, category, decision,"
                " reason, temperature_c, card, kind, action, body, situation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    event_id,
                    ts,
                    local.date().isoformat(),
                    local.hour,
                    rec.type,
                    rec.lane,
                    fields.get("pass"),
                    fields.get("credential"),
                    fields.get("category"),
                    fields.get("decision"),
                    fields.get("reason"),
                    fields.get("temperature_c"),
                    getattr(rec, "card", None),
                    fields.get("kind"),
                    fields.get("action"),
                    payload,
                    json.dumps(situation, ensure_ascii=False) if situation else None,
                ),
            )
            c.execute(
                "INSERT INTO outbox(seq, event_id, payload, state, created) VALUES (?,?,?,'pending',?)",
                (seq, event_id, upstream, time.time()),
            )
            if isinstance(rec, DecisionRecord):
                self._after_decision(c, rec, ts, direction)
            elif isinstance(rec, AlarmRecord) and rec.kind == "fever" and rec.pass_id:
                self.note_hold(c, rec.pass_id, rec.id, ts, self.gate_id)
            elif isinstance(rec, AckRecord):
                c.execute("DELETE FROM fever_holds WHERE alarm_id = ?", (rec.alarm_id,))
        return StoredEvent(seq, event_id, body)

    def step_used(self, pass_id: str, step: int) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM dynamic_steps WHERE pass_id = ? AND step = ?", (pass_id, step)
        ).fetchone() is not None

    def _after_decision(self, c: sqlite3.Connection, rec: DecisionRecord, ts: float, direction: str | None) -> None:
        if rec.step is not None and rec.pass_id and rec.decision in ("allow", "challenge"):
            c.execute("INSERT OR IGNORE INTO dynamic_steps(pass_id, step, at) VALUES (?,?,?)", (rec.pass_id, rec.step, ts))
            c.execute("DELETE FROM dynamic_steps WHERE at < ?", (ts - 86400,))
        if rec.card:
            c.execute(
                "INSERT INTO cards(number, first_seen, last_seen, swipes) VALUES (?, ?, ?, 1) "
                "ON CONFLICT(number) DO UPDATE SET first_seen = coalesce(first_seen, excluded.first_seen),"
                " last_seen = excluded.last_seen, swipes = swipes + 1",
                (rec.card, ts, ts),
            )
        if rec.decision == "allow" and rec.pass_id and direction in ("in", "out"):
            self.note_move(c, rec.pass_id, ts, direction, self.gate_id, rec.lane)

    @staticmethod
    def note_move(c: sqlite3.Connection, pass_id: str, ts: float, direction: str, gate: str, where: str,
                  *, news: bool = False) -> bool:
        """Inside a write transaction: a pass went in or out, here (a decision: always
        counts) or at another gate of the site (`news`: `where` is "gate:"; news no newer
        than what is known of the pass, our own echoed back included, changes nothing).
        Returns whether it counted."""
        if news:
            row = c.execute("SELECT at FROM last_move WHERE pass_id = ?", (pass_id,)).fetchone()
            if row is not None and row[0] >= ts:
                return False
        c.execute(
            "INSERT INTO last_move(pass_id, at, direction, gate) VALUES (?,?,?,?) ON CONFLICT(pass_id)"
            " DO UPDATE SET at = excluded.at, direction = excluded.direction, gate = excluded.gate",
            (pass_id, ts, direction, gate),
        )
        if direction == "in":
            c.execute(
                "INSERT INTO inside(pass_id, since, lane) VALUES (?,?,?) "
                "ON CONFLICT(pass_id) DO UPDATE SET since = excluded.since, lane = excluded.lane",
                (pass_id, ts, where),
            )
        else:
            c.execute("DELETE FROM inside WHERE pass_id = ?", (pass_id,))
        return True

    @staticmethod
    def note_hold(c: sqlite3.Connection, pass_id: str, alarm_id: str, ts: float, gate: str) -> None:
        """Inside a write transaction: a pass refused for fever (here or elsewhere) is
        held until that alarm is acknowledged; the newest refusal is the one to clear."""
        c.execute(
            "INSERT INTO fever_holds(pass_id, alarm_id, since, gate) VALUES (?,?,?,?) ON CONFLICT(pass_id)"
            " DO UPDATE SET alarm_id = excluded.alarm_id, since = excluded.since, gate = excluded.gate"
            " WHERE excluded.since >= fever_holds.since",
            (pass_id, alarm_id, ts, gate),
        )

    def events(self, *, day: str | None = None, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT body FROM events WHERE seq > ?"
        args: list[Any] = [since_seq]
        if day:
            sql += " AND day = ?"
            args.append(day)
        sql += " ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

    def open_alarms(self, lane: str) -> list[tuple[str, str]]:
        """(id, kind) of the lane's alarms no `ack` record answers yet, oldest first."""
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT a.id, a.kind FROM events a WHERE a.type = 'alarm' AND a.lane = ? AND NOT EXISTS"
            " (SELECT 1 FROM events k WHERE k.type = 'ack' AND k.lane = a.lane"
            " AND json_extract(k.body, '$.alarm_id') = a.id) ORDER BY a.seq",
            (lane,))]
