"""Sync handed to a running gate as a service: the entry points (`gate run`, `gate drill`)
call `services(config, broker)` and pass the result to `GateApp(services=...)`, so the
gate's app depends on no part of sync. The hooks say what central may ask of the gate."""
from __future__ import annotations

from typing import Any, Callable

from gate.config import Config
from gate.core.records import AlarmRecord
from sync.downstream import Hooks
from sync.homeassistant import OFFLINE, HomeAssistant
from sync.service import SyncService, link_config
from sync.topics import Topics


def services(config: Config, broker: str | None = None) -> dict[str, Callable[[Any], SyncService]]:
    """{"sync": factory} when the config has [sync] or a broker is given, else nothing."""
    if config.sync is None and not broker:
        return {}
    return {"sync": lambda app: attach(app, broker)}


def attach(app: Any, broker: str | None = None) -> SyncService:
    """The sync service for ``app`` (a GateApp), built but not started."""
    built: list[SyncService] = []

    def backlog(over: bool, detail: str) -> None:
        if over:
            app.record_gate_event(AlarmRecord(at=app.clock.now(), lane="gate", kind="sync_backlog", detail=detail))

    def report_now(day: Any) -> Any:
        return built[0].heartbeat.report_now(day) if built and built[0].heartbeat else None

    config = app.config
    hooks = Hooks(
        apply_policy=app.apply_policy,
        open_door=app.open_door,
        report_now=report_now,
        reload=app.reload,
        now=lambda: app.floor.apply(app.clock.now())[0],  # expiry is never judged by a clock set back
        raise_floor=app.floor.from_central,
        withdraw_keys=app.withdraw_keys,
        vouch_gate_keys=app.vouch_gate_keys,
        set_door_mode=app.set_door_mode,
        erase_pass=app.erase_pass,
        pass_revoked=app.pass_revoked,
        site=app.site if config.sync is not None and config.sync.presence else None,
    )
    service = SyncService.build(
        config,
        app.open_store,
        broker=broker,
        hooks=hooks,
        devices=app.device_health,
        policy_version=app.policy_version,
        time_floor=lambda: app.floor.value,
        on_backlog=backlog,
    )
    built.append(service)
    publisher, link = service.publisher, service.link
    app.add_sink(lambda rec: publisher.nudge() if rec.type != "prompt" else None)
    if config.sync is not None and config.sync.homeassistant:
        service.homeassistant = homeassistant(app, broker)
        app.add_sink(service.homeassistant.sink)
    app.upstream = lambda: {"connected": link.connected,
                            "detail": link.last_error or ("connected" if link.connected else "connecting")}
    return service


def homeassistant(app: Any, broker: str | None = None) -> HomeAssistant:
    """The Home Assistant entities of ``app``'s lanes ([sync] homeassistant), on a connection of
    their own (client id: the gate's + "-ha") whose last will is ``{prefix}/{gate}/available`` offline."""
    config = app.config
    sync = config.sync
    topics = Topics.for_gate(config.gate.site, config.gate.id, sync.prefix)
    lcfg = link_config(sync, (sync.client_id or config.gate.id) + "-ha", broker=broker, homeassistant=True,
                       will_topic=topics.available, will_payload=OFFLINE,
                       session_expiry_s=0)  # a door command sent while the gate was away is not kept for it
    return HomeAssistant(
        config,
        lcfg,
        open_store=app.open_store,
        open_door=app.open_door,
        lane_state=lambda: {name: (lane.unlocked, lane.door_open) for name, lane in list(app.lanes.items())},
        now=app.clock.now,
    )
