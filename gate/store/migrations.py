"""The store's schema, as sqlite-utils migrations applied in order at start-up."""
from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("gate")


@migrations()
def m001_initial(db: Database) -> None:
    db["passes"].create(
        {
            "id": str,
            "holder": str,
            "unit": str,
            "category": str,
            "phone_last4": str,
            "valid_from": float,  # Unix seconds, NULL when open-ended
            "valid_until": float,
            "observation_until": float,
            "pcr_at": float,
            "health_code": str,
            "revoked": int,
            "updated_at": float,
        },
        pk="id",
        not_null={"category", "revoked"},
        defaults={"revoked": 0},
    )
    # A door card bound to a pass; rows with pass_id NULL are cards swiped but not
    # in the table (reported as unknown). first_seen feeds the daily report.
    db["cards"].create(
        {"number": str, "pass_id": str, "first_seen": float, "last_seen": float, "swipes": int},
        pk="number",
        defaults={"swipes": 0},
    )
    db["cards"].create_index(["pass_id"])
    db["inside"].create({"pass_id": str, "since": float, "lane": str}, pk="pass_id")
    db["events"].create(
        {
            "seq": int,  # per gate, gapless from 1
            "id": str,  # globally unique
            "ts": float,
            "day": str,  # local date, YYYY-MM-DD
            "hour": int,  # local hour
            "type": str,
            "lane": str,
            "pass_id": str,
            "credential": str,
            "category": str,
            "decision": str,
            "reason": str,
            "temperature_c": float,
            "card": str,
            "kind": str,
            "action": str,
            "body": str,  # the full event as JSON, as it goes upstream
        },
        pk="seq",
        not_null={"id", "ts", "day", "type"},
    )
    db["events"].create_index(["id"], unique=True)
    db["events"].create_index(["day", "type"])
    db["events"].create_index(["pass_id"])
    db["outbox"].create(
        {"seq": int, "event_id": str, "payload": str, "state": str, "attempts": int, "created": float, "sent_at": float},
        pk="seq",
        not_null={"event_id", "payload", "state"},
        defaults={"attempts": 0, "state": "pending"},
    )
    db["outbox"].create_index(["state", "seq"])
    db["meta"].create({"key": str, "value": str}, pk="key")


@migrations()
def m002_sync(db: Database) -> None:
    # Reports go up through the outbox too (durable); NULL topic = the events topic.
    db["outbox"].add_column("topic", str)
    # Command nonces already seen, kept until the command would have expired anyway.
    db["nonces"].create({"nonce": str, "expires": float}, pk="nonce")


@migrations()
def m003_dynamic_steps(db: Database) -> None:
    # Time steps of dynamic QR codes that have let someone in: a replay of one is refused.
    db["dynamic_steps"].create({"pass_id": str, "step": int, "at": float}, pk=("pass_id", "step"))


@migrations()
def m004_situation(db: Database) -> None:
    # What a decision was based on (gate.core.policy.Situation as JSON), kept locally so
    # `gate policy replay` can run recorded traffic through a changed policy.
    db["events"].add_column("situation", str)


@migrations()
def m005_policy_audit(db: Database) -> None:
    # `gate policy apply`: who put which policy in force here, when, and what it changed.
    db["policy_audit"].create(
        {
            "id": int,
            "at": float,  # Unix seconds
            "by": str,
            "note": str,
            "version": int,  # the version it was stored as (store meta policy_version)
            "previous_version": int,
            "source": str,  # the file it came from
            "sha256": str,  # of that file's bytes
            "policy_json": str,  # the policy as stored (meta policy_json)
            "diff_json": str,  # [{"key", "old", "new"}] against the policy in force before
        },
        pk="id",
        not_null={"at", "by", "version", "policy_json"},
    )



@migrations()
def m006_card_bindings(db: Database) -> None:
    # Which pass a card opens is central's data, replaced wholesale by snapshots;
    # first_seen/last_seen/swipes are this gate's own history. Apart, a snapshot
    # swaps the bindings in by renaming a table instead of rewriting every card row.
    db.execute(
        "CREATE TABLE card_bindings (number TEXT PRIMARY KEY, pass_id TEXT NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX idx_card_bindings_pass_id ON card_bindings (pass_id)")
    db.execute("INSERT INTO card_bindings(number, pass_id) SELECT number, pass_id FROM cards WHERE pass_id IS NOT NULL")
    # cards keeps the history only (rebuilt: DROP COLUMN needs SQLite 3.35, Raspberry
    # Pi OS bullseye has 3.34). A card bound but never swiped has no history to keep.
    db.execute(
        'CREATE TABLE cards_history ("number" TEXT PRIMARY KEY, "first_seen" REAL, "last_seen" REAL,'
        ' "swipes" INTEGER DEFAULT 0)'
    )
    db.execute(
        "INSERT INTO cards_history(number, first_seen, last_seen, swipes) SELECT number, first_seen, last_seen, swipes"
        " FROM cards WHERE first_seen IS NOT NULL OR last_seen IS NOT NULL OR coalesce(swipes, 0) != 0"
    )
    db.execute("DROP INDEX IF EXISTS idx_cards_pass_id")
    db.execute("DROP TABLE cards")
    db.execute("ALTER TABLE cards_history RENAME TO cards")


@migrations()
def m007_tombstones(db: Database) -> None:
    # A pass removed from the table (central deleted it, a new roster left it out, a
    # privacy erasure) leaves its id here, with no personal data, for as long as its
    # signed QR could still be valid (until: Unix seconds, NULL = keep): a tombstoned
    # id is refused `revoked`, never admitted as unlisted.
    db.execute(
        "CREATE TABLE tombstones (pass_id TEXT PRIMARY KEY, category TEXT, removed_at REAL NOT NULL, until REAL)"
        " WITHOUT ROWID"
    )


@migrations()
def m011_site(db: Database) -> None:
    # Free pass attributes (JSON) that the community's rules read.
    db["passes"].add_column("attributes", str)
    # A pass refused for fever is held until the guard acknowledges that alarm.
    db["fever_holds"].create({"pass_id": str, "alarm_id": str, "since": float, "gate": str}, pk="pass_id")
    db["fever_holds"].create_index(["alarm_id"])
    # The latest movement of each pass known here, at this gate or (news) at another
    # gate of the site: which one is newer decides whether the pass is inside.
    db["last_move"].create({"pass_id": str, "at": float, "direction": str, "gate": str}, pk="pass_id")
