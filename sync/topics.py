"""Every MQTT topic the gate and central use, in one place.

Default prefix: gate/v1/{site}. A gate publishes only under {prefix}/{gate}/ and
reads only its own commands and snapshots, plus the site-wide passes, policy, key list and gate key list;
the example ACL (docs/mosquitto.acl) enforces that.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "gate/v1/{site}"


@dataclass(frozen=True)
class SiteTopics:
    """The site-wide topics central publishes and every gate reads."""

    prefix: str  # already formatted, e.g. "gate/v1/sunny-garden"

    @property
    def passes(self) -> str:
        return f"{self.prefix}/passes"

    @property
    def policy(self) -> str:
        return f"{self.prefix}/policy"

    @property
    def keys(self) -> str:
        return f"{self.prefix}/keys"

    @property
    def gatekeys(self) -> str:
        # the site's gates and the keys their desks sign visitor passes with (signed by central)
        return f"{self.prefix}/gatekeys"

    # presence: who went in or out where, fever holds (signed by central)
    @property
    def presence(self) -> str:
        return f"{self.prefix}/presence"

    @property
    def presence_head(self) -> str:
        return f"{self.prefix}/presence/head"


@dataclass(frozen=True)
class Topics(SiteTopics):
    gate: str

    @classmethod
    def for_gate(cls, site: str, gate: str, prefix: str = DEFAULT_PREFIX) -> "Topics":
        return cls(prefix.format(site=site).rstrip("/"), gate)

    # gate -> central
    @property
    def events(self) -> str:
        return f"{self.prefix}/{self.gate}/events"

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.gate}/status"

    @property
    def report(self) -> str:
        return f"{self.prefix}/{self.gate}/report"

    @property
    def snapshot_request(self) -> str:
        return f"{self.prefix}/{self.gate}/snapshot/request"

    # gate -> Home Assistant (sync/homeassistant.py): plain online/offline, the last will of
    # the Home Assistant connection, and each lane's entity states and door commands
    @property
    def available(self) -> str:
        return f"{self.prefix}/{self.gate}/available"

    def lane(self, lane: str, what: str) -> str:
        """'{prefix}/{gate}/{lane}/{what}', e.g. what = 'door/lock', 'door/set' (Home Assistant's command)."""
        return f"{self.prefix}/{self.gate}/{lane}/{what}"

    # central -> gate
    @property
    def cmd(self) -> str:
        return f"{self.prefix}/{self.gate}/cmd"

    @property
    def presence_reply(self) -> str:
        return f"{self.prefix}/{self.gate}/presence"

    @property
    def presence_request(self) -> str:
        return f"{self.prefix}/{self.gate}/presence/request"

    @property
    def snapshot(self) -> str:
        return f"{self.prefix}/{self.gate}/snapshot"

    @property
    def receipt(self) -> str:
        # central's signed "I have stored these of your events" (retained)
        return f"{self.prefix}/{self.gate}/receipt"


@dataclass(frozen=True)
class CentralTopics(SiteTopics):
    @classmethod
    def for_site(cls, site: str, prefix: str = DEFAULT_PREFIX) -> "CentralTopics":
        return cls(prefix.format(site=site).rstrip("/"))

    def shared_events(self, group: str = "central") -> str:
        # MQTT v5 shared subscription: several central instances split the load.
        return f"$share/{group}/{self.prefix}/+/events"

    @property
    def all_status(self) -> str:
        return f"{self.prefix}/+/status"

    @property
    def all_reports(self) -> str:
        return f"{self.prefix}/+/report"

    @property
    def snapshot_requests(self) -> str:
        return f"{self.prefix}/+/snapshot/request"

    @property
    def presence_requests(self) -> str:
        return f"{self.prefix}/+/presence/request"

    def gate(self, gate: str) -> Topics:
        return Topics(self.prefix, gate)

    def gate_of(self, topic: str) -> str | None:
        """The gate id in '{prefix}/{gate}/...'."""
        if not topic.startswith(self.prefix + "/"):
            return None
        rest = topic[len(self.prefix) + 1 :].split("/")
        return rest[0] if len(rest) >= 2 else None
