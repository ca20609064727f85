"""The gate's side of sync, wired: one MQTT link, the outbox publisher, the
downstream handler and the heartbeat (and, with [sync] homeassistant, the Home
Assistant entities on a second link: sync/homeassistant.py). It never blocks a decision: if the broker
is gone, the lanes go on and the outbox grows."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from gate.config import Config, SyncSection
from gate.core.tokens import KeyRing
from gate.store.database import Store
from sync.downstream import Downstream, Hooks
from sync.homeassistant import HomeAssistant
from sync.link import Link, LinkConfig
from sync.outbox import Limits, Publisher, ReceiptSettings
from sync.status import Heartbeat, offline_payload
from sync.topics import Topics

log = logging.getLogger(__name__)


def link_config(sync: SyncSection, client_id: str, *, broker: str | None = None, homeassistant: bool = False,
                **kw: Any) -> LinkConfig:
    """The link's settings; ``homeassistant``: the Home Assistant connection's (its own login if set)."""
    username, password_file = sync.username, sync.password_file
    if homeassistant and sync.homeassistant_username is not None:
        username, password_file = sync.homeassistant_username, sync.homeassistant_password_file
    password = None
    if password_file is not None:
        password = Path(password_file).read_text(encoding="utf-8").strip()
    return LinkConfig.from_url(
        broker or sync.broker,
        client_id,
        ca_file=sync.ca_file,
        cert_file=sync.cert_file,
        key_file=sync.key_file,
        username=username,
        password=password,
        keepalive_s=sync.keepalive_s,
        backoff_s=sync.backoff_s,
        **kw,
    )


@dataclass
class SyncService:
    link: Link
    publisher: Publisher
    downstream: Downstream | None
    heartbeat: Heartbeat | None
    homeassistant: HomeAssistant | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        open_store: Callable[[], Store],
        *,
        broker: str | None = None,
        hooks: Hooks | None = None,
        devices: Callable[[], dict[str, Any]] = dict,
        policy_version: Callable[[], int] = lambda: 0,
        time_floor: Callable[[], datetime | None] = lambda: None,
        on_backlog: Callable[[bool, str], None] | None = None,
        upstream_only: bool = False,
    ) -> "SyncService":
        sync = config.sync or SyncSection()
        topics = Topics.for_gate(config.gate.site, config.gate.id, sync.prefix)
        # Central's keys only: a key trusted for QR passes ([keys] trusted) signs no batch,
        # policy, command or receipt. None at all (`--broker` on a config without [sync]): the
        # gate sends its events, takes nothing from central, and cannot check central's
        # receipts, so the broker's acknowledgement (never reason 16) is all it has.
        keyring = KeyRing.from_files(list(sync.central_keys))
        if not upstream_only and hooks is not None and not len(keyring):
            log.warning("no [sync] central_keys: events go up, but no pass batch, policy, key list, "
                        "command or receipt from central is taken")
        client_id = sync.client_id or config.gate.id
        if upstream_only:
            client_id += "-drain"  # may run beside a live daemon without kicking it off
        lcfg = link_config(
            sync,
            client_id,
            broker=broker,
            will_topic=None if upstream_only else topics.status,
            will_payload=None if upstream_only else offline_payload(config.gate.id),
            # The broker keeps commands and passes for us through a short outage.
            session_expiry_s=0 if upstream_only else 86400,
        )
        publisher_ref: list[Publisher] = []
        downstream_ref: list[Downstream] = []
        heartbeat_ref: list[Heartbeat] = []

        def on_state(up: bool) -> None:
            for p in publisher_ref:
                p.on_state(up)
            for d in downstream_ref:
                d.on_state(up)
            for h in heartbeat_ref:
                h.on_state(up)

        def on_message(topic: str, payload: bytes) -> None:
            if topic == topics.receipt:
                for p in publisher_ref:
                    p.on_receipt(payload)
                return
            for d in downstream_ref:
                d.on_message(topic, payload)

        def on_ack(mid: int, ok: bool, reason: str) -> None:
            for p in publisher_ref:
                p.on_ack(mid, ok, reason)

        link = Link(
            lcfg,
            subscriptions=([] if upstream_only or not len(keyring)
                           else Downstream.subscriptions(topics, presence=hooks is not None and hooks.site is not None))
            + ([(topics.receipt, 1)] if len(keyring) and sync.receipts else []),
            on_state=on_state,
            on_message=on_message,
            on_ack=on_ack,
        )
        publisher = Publisher(
            link,
            open_store,
            topics.events,
            window=sync.window,
            limits=Limits(sync.outbox_max_rows, sync.outbox_max_age_h * 3600),
            on_backlog=on_backlog,
            receipts=ReceiptSettings(
                keyring if sync.receipts and len(keyring) else None, config.gate.id, sync.receipt_timeout_s,
                sync.receipt_window,
            ),
        )
        publisher_ref.append(publisher)
        downstream = heartbeat = None
        if not upstream_only and hooks is not None:
            if len(keyring):
                downstream = Downstream(link, open_store, topics, keyring, hooks, policy_version=policy_version)
                downstream_ref.append(downstream)
            heartbeat = Heartbeat(
                link,
                open_store,
                topics,
                every_s=sync.heartbeat_s,
                report_at=sync.report_at,
                now=hooks.now,
                devices=devices,
                policy_version=policy_version,
                time_floor=time_floor,
                on_enqueued=publisher.nudge,
                signing_kid=_signing_kid(config.keys.signing),
            )
            heartbeat_ref.append(heartbeat)
        return cls(link, publisher, downstream, heartbeat)

    def start(self) -> None:
        self.publisher.start()
        if self.downstream is not None:
            self.downstream.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        self.link.start()
        if self.homeassistant is not None:
            self.homeassistant.start()

    def stop(self) -> None:
        if self.homeassistant is not None:
            self.homeassistant.stop()  # its will says offline to Home Assistant
        self.link.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.downstream is not None:
            self.downstream.stop()
        self.publisher.stop()

    def presence_caught_up(self, timeout: float) -> bool:
        """True once this gate has applied central's whole presence log as it stands now
        (sync/presence.py, PresenceFollower.catch_up); False without presence or in time."""
        if self.downstream is None or self.downstream.presence is None:
            return False
        return self.downstream.presence.catch_up(timeout)

    @property
    def alive(self) -> bool:
        return (self.link.alive and self.publisher.alive and (self.downstream is None or self.downstream.alive)
                and (self.homeassistant is None or self.homeassistant.alive))


def _signing_kid(path: Any) -> str | None:
    """The key id of [keys] signing (announced in the status), or None."""
    if path is None:
        return None
    from gate.core.tokens import key_id, load_private

    try:
        return key_id(load_private(path).public_key())
    except ValueError:
        return None
