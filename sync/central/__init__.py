"""The reference central: the other end of the gates' MQTT sync.

    central = Central(load_central_config("CENTRAL.toml"), db_path=None).start()
    central.add_pass(id="P1", holder="Li", unit="3-2-501", category="resident")
    central.send_command("east-1", "open_door", lane="in", reason="ambulance")
    central.stop()

What it does (docs/mqtt.md is the contract):

* consumes ``{prefix}/+/events`` (and reports and snapshot requests) through MQTT
  v5 shared subscriptions ``$share/{group}/...``, so several instances split the
  load; status is a plain subscription (retained messages are not delivered to
  shared subscriptions);
* stores events idempotently by ``id`` (INSERT ... ON CONFLICT DO NOTHING) and
  acknowledges each message (paho ``manual_ack``) only after the transaction that
  stored it has committed: a crash before the commit means the broker delivers
  it again, and the id makes the second copy a no-op;
* holds the roster: every change bumps a version and goes to a change log, from
  which signed batches ``{from_version, to_version, changes}`` go out on
  ``{prefix}/passes``; answers snapshot requests with signed chunks;
* publishes the signed policy (retained) and signed commands with a nonce and an
  expiry.

Storage is SQLite by default, PostgreSQL for a ``postgresql://`` DSN (psycopg 3);
both run the same SQL (``?`` placeholders are rewritten for psycopg).

Threads: paho's network thread only queues what arrives; a writer thread stores
and acks in arrival order (batched: one commit per batch); a publisher thread
sends pass batches and policy; a snapshot thread builds and sends snapshots; a
presence thread relays who is inside.

The rooms: config (CENTRAL.toml), db (the SQL dialect layer and schema), store,
wire (pass records as gates get them), signer, snapshot, peer (MQTT), service
(``Central``), publisher and fanout (its sending threads), roster (CSV import),
inbound and quarantine (what arrives, checked one by one), receipts, tombstones,
snapshot_limit, presence_relay, hardening, site_report, and the CLI (cli with
cli_common, passes_cli, commands_cli, keys_cli, quarantine_cli). This module re-exports what the rest of the project
imports from ``sync.central``, lazily: `gate --help` registers the CLI without
loading paho or the database layer.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CentralConfig": "config", "load_central_config": "config",
    "DB": "db",
    "MqttPeer": "peer", "publish_once": "peer",
    "import_roster": "roster",
    "Central": "service",
    "COMMANDS": "signer", "Signer": "signer",
    "Snapshot": "snapshot", "build_snapshot": "snapshot", "read_snapshot": "snapshot",
    "CentralStore": "store", "RosterError": "store",
    "now_iso": "wire", "wire_pass": "wire",
}
__all__ = [  # the keys of _EXPORTS
    "COMMANDS", "DB", "Central", "CentralConfig", "CentralStore", "MqttPeer", "RosterError", "Signer", "Snapshot",
    "build_snapshot", "import_roster", "load_central_config", "now_iso", "publish_once", "read_snapshot", "wire_pass",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and editors see
    from sync.central.config import CentralConfig, load_central_config
    from sync.central.db import DB
    from sync.central.peer import MqttPeer, publish_once
    from sync.central.roster import import_roster
    from sync.central.service import Central
    from sync.central.signer import COMMANDS, Signer
    from sync.central.snapshot import Snapshot, build_snapshot, read_snapshot
    from sync.central.store import CentralStore, RosterError
    from sync.central.wire import now_iso, wire_pass
