"""The running gate (`GateApp`): its lanes, their drivers, and the services handed to it,
started and stopped in order.

`start()` is a list of steps, and `stop()` undoes them in reverse: relays locked first,
the store checked and state restored, the lanes built with their drivers, the start
recorded, housekeeping, services (sync, when the entry point hands it in), prompts.
The drivers are built by `gate/app/drivers.py`; what is kept across restarts is read back
by `gate/app/stored_state.py`.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol
from zoneinfo import ZoneInfo

from drivers.gpio import PinFactory
from drivers.voice import PromptCache
from gate.app import secret_files
from gate.app.drivers import DriverFactory, LaneDevices
from gate.app.requests import GateRequests
from gate.app.stored_state import StoredState
from gate.config import Config
from gate.core.clock import Clock, SystemClock, TimeFloor
from gate.core.lane import Lane, Sink
from gate.core.prompts import PROMPTS
from gate.core.records import AdminRecord, AlarmRecord
from gate.core.site import SiteView
from gate.core.tokens import KeyRing
from gate.store.database import Store

log = logging.getLogger(__name__)

class Service(Protocol):
    """Something the gate runs beside its lanes (sync with central): started after the
    lanes, stopped after them, and part of `healthy()`."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def alive(self) -> bool: ...


ServiceFactory = Callable[["GateApp"], Service]


def default_voice_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gate" / "voice"


class GateApp(StoredState, GateRequests):
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        store_path: Path | None = None,
        sinks: list[Sink] | None = None,
        voice_cache: Path | None = None,
        seed: int | None = None,
        prerender: bool = True,
        config_path: Path | None = None,
        pins: PinFactory | None = None,
        site: SiteView | None = None,
        services: Mapping[str, ServiceFactory] | None = None,
    ) -> None:
        """``site``: this gate's view of its site (several gates sharing presence);
        None for a gate on its own.

        ``pins``: the pin factory for the lanes' 'gpio' devices; by default the
        one ``[gpio] backend`` names, made on first use (``gate doctor`` passes
        mock pins to check the other devices where no GPIO backend starts).

        ``services``: built (``factory(app)``) and started after the lanes, by name;
        the entry points (`gate run`, `gate drill`) hand in sync this way, so the app
        itself depends on no service."""
        self.config = config
        self.config_path = config_path
        self.prerender = prerender
        self.policy = config.policy
        # This gate's view of its site: given (a drill's several gates), or followed
        # through central when the gate syncs (sync.presence, set up at start); None for a gate alone.
        self.site = site
        self.service_factories = dict(services or {})
        self.services: dict[str, Service] = {}
        self.maintenance: Any = None
        self.tz = ZoneInfo(config.gate.timezone)
        self.clock: Clock = clock or SystemClock(self.tz)
        # Judged time: never below the floor, which only trusted time moves (gate/core/floor.py).
        self.floor = TimeFloor(
            monotonic=self.clock.monotonic,
            synchronized=getattr(self.clock, "synchronized", lambda: False),
            boot=getattr(self.clock, "boot_id", ""),
        )
        self.store_path = Path(store_path or config.store.path)
        self.sinks = list(sinks or [])
        self.keyring = KeyRing.from_files(list(config.keys.trusted))
        self.voice_cache = voice_cache or config.voice.cache_dir or default_voice_cache()
        self.seed = seed
        self.lanes: dict[str, Lane] = {}
        self.devices: dict[str, LaneDevices] = {}
        self.drivers = DriverFactory(config, self.clock, pins)
        self._prompt_cache: PromptCache | None = None
        self._prerender: threading.Thread | None = None
        self.integrity: Any = None
        # Set by sync when it runs: () -> {"connected": bool, "detail": str}; the guard page shows it.
        self.upstream: Callable[[], dict[str, Any]] | None = None

    @property
    def sync(self) -> Any:
        """The sync service (sync.service.SyncService) when the gate talks to central, else None."""
        return self.services.get("sync")

    def add_sink(self, sink: Sink) -> None:
        """Add a display sink (called on the lane threads for every record: must not block)."""
        self.sinks.append(sink)
        for lane in self.lanes.values():
            lane.sinks.append(sink)

    def open_store(self) -> Store:
        sync = self.config.sync
        return Store(self.store_path, gate_id=self.config.gate.id, tz=self.tz,
                     send_situations=sync.send_situations if sync is not None else True)

    # ------------------------------------------------------------ start and stop

    def start(self, *, waiting: Callable[[Any], bool] | None = None) -> None:
        """``waiting(error)`` (a StoreUnavailable: its text and ``kind``) is called every few seconds while the store cannot be used
        (a full disk, an I/O or permission error): the relays are held locked meanwhile;
        it returns False to give up. Without it, such a store raises StoreUnavailable."""
        self._warn_loose_secrets()
        early = self._lock_relays()
        try:
            opened = self._check_store_and_restore(waiting)
        except BaseException:
            for devices in early.values():
                devices.close()
            raise
        self._build_lanes(early)
        self._record_start(opened)
        self._start_maintenance()
        self._start_services()
        self._prerender_prompts()

    def stop(self) -> None:
        self.lock_doors()
        for devices in self.devices.values():
            devices.close()
        for lane in self.lanes.values():
            lane.stop()
        self._stop_services()
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.lanes:
            self.save_floor(force=True)
        self.drivers.close()
        if self._prerender is not None:
            self._prerender.join(10)
        if self._prompt_cache is not None:
            self._prompt_cache.close()

    def _warn_loose_secrets(self) -> None:
        for found in secret_files.loose(self.config):
            log.warning("%s", found)  # a warning only: a file mode never keeps the door shut

    def _lock_relays(self) -> dict[str, LaneDevices]:
        """Every relay driven locked first, and held so while the store is waited for."""
        early: dict[str, LaneDevices] = {}
        try:
            for lane_cfg in self.config.lanes:
                early[lane_cfg.name] = devices = LaneDevices()
                self.drivers.relay(lane_cfg, devices)
        except BaseException:
            for devices in early.values():
                devices.close()
            raise
        return early

    def _check_store_and_restore(self, waiting: Callable[[Any], bool] | None) -> Any:
        from gate.store.opening import open_when_usable

        opened = open_when_usable(self.store_path, self._first_open, waiting,
                                  reserve=self.store_path.with_name(self.store_path.name + ".reserve"))
        self.integrity = opened.integrity
        return opened

    def _first_open(self) -> AdminRecord | None:
        store = self.open_store()  # migrate once, before any lane opens its own connection
        try:
            store.ensure_reserve()
            self._restore(store)
            self.save_floor(force=True)  # this boot's continuation of the floor, saved at once
            return self._config_changed(store)
        finally:
            store.close()

    def _build_lanes(self, early: dict[str, LaneDevices]) -> None:
        if self.site is None and self.config.sync is not None and self.config.sync.presence:
            self.site = SiteView()  # followed through central (sync/presence.py)
        v = self.config.voice
        self._prompt_cache = PromptCache(self.voice_cache, rate=v.rate, volume=v.volume, engine=v.engine, voices=v.voices)
        for lane_cfg in self.config.lanes:
            devices = early[lane_cfg.name]
            devices.speaker = self.drivers.speaker(lane_cfg, self._prompt_cache)
            devices.closers.append(devices.speaker.close)
            lane = Lane(
                lane_cfg,
                policy=self.policy,
                door=self.config.door,
                languages=list(v.languages),
                clock=self.clock,
                keyring=self.keyring,
                open_store=self.open_store,
                relay=devices.relay,
                speaker=devices.speaker,
                sinks=self.sinks,
                seed=self.seed,
                floor=self.floor,
                site=self.site,
                gate=self.config.gate.id,
            )
            lane.start()
            self.lanes[lane_cfg.name] = lane
            self.devices[lane_cfg.name] = devices
            try:
                self.drivers.inputs(lane_cfg, lane.post, self.post_all, devices)
            except Exception:
                self.stop()
                raise

    def _record_start(self, opened: Any) -> None:
        """What start-up found, as events: a changed config, a rebuilt store, a store waited for."""
        if opened.value is not None:
            self.record_gate_event(opened.value)
        if not self.integrity.ok:
            self.record_gate_event(
                AlarmRecord(
                    at=self.clock.now(),
                    lane="gate",
                    kind="store_rebuilt",
                    detail=f"store failed its integrity check ({self.integrity.detail}); moved to "
                    f"{self.integrity.moved_to}; {self.integrity.restored_passes} passes restored from the last snapshot",
                )
            )
        if opened.waited is not None:
            self.record_gate_event(AlarmRecord(at=self.clock.now(), lane="gate", kind="store_unavailable",
                                               detail=opened.waited))

    def _start_maintenance(self) -> None:
        if self.clock.realtime:
            from gate.app.maintenance import Maintenance

            self.maintenance = Maintenance(self.open_store, retention_days=self.config.retention.days,
                                           overstays=self.check_overstays)
            self.maintenance.start()

    def check_overstays(self) -> int:
        """Raise an `overstay` alarm (on the guard page, and upstream to central) for each
        visitor still inside after their visit ended, once per visit. Returns how many."""
        from datetime import datetime

        from gate.desk.visitors import overstays

        now = self.floor.apply(self.clock.now())[0]
        store = self.open_store()
        try:
            found = overstays(store, now)
        finally:
            store.close()
        for v in found:
            until = datetime.fromtimestamp(v["valid_until"], self.tz).strftime("%H:%M")
            self.record_gate_event(AlarmRecord(
                at=now, lane="gate", kind="overstay", pass_id=v["pass"],
                detail=f"{v['holder'] or v['pass']} → {v['unit'] or '-'}: visit ended {until}"))
        return len(found)

    def _start_services(self) -> None:
        for name, factory in self.service_factories.items():
            service = factory(self)
            self.services[name] = service
            service.start()

    def _stop_services(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    def _prerender_prompts(self) -> None:
        """Every fixed prompt rendered once, off the start-up path: the first person
        of the day hears the prompt as fast as the thousandth."""
        if not self.prerender:
            return
        languages = self.config.voice.languages
        items = [(p.text(lang), lang) for p in PROMPTS.values() for lang in languages]
        items += [(getattr(r.prompt, lang), lang) for r in self.policy.rules for lang in languages]
        cache = self._prompt_cache
        assert cache is not None
        self._prerender = threading.Thread(target=lambda: _quiet(cache.prerender, items), name="prerender", daemon=True)
        self._prerender.start()

    def lock_doors(self) -> None:
        """Drive every relay locked now (first thing on the way out; safe from any thread)."""
        for name, devices in list(self.devices.items()):
            if devices.relay is not None:
                try:
                    devices.relay.lock()
                except Exception:
                    log.exception("lane %s: could not lock the relay", name)


    def __enter__(self) -> "GateApp":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def healthy(self, stall_s: float = 5.0) -> bool:
        """Every lane's engine thread and every service are alive and turning (real time only)."""
        now = self.clock.monotonic()
        lanes_ok = all(lane.alive and now - lane.alive_at < stall_s for lane in self.lanes.values())
        return lanes_ok and all(service.alive for service in self.services.values())

    def join(self) -> None:
        for lane in self.lanes.values():
            lane.join()

    def post_all(self, event: Any) -> None:
        for lane in list(self.lanes.values()):
            lane.post(event)


def _quiet(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("pre-rendering prompts failed; prompts will render on first use")
