"""Wiring: build each lane's drivers from the config, bind them to the lane's queue,
and start and stop everything in order.

Start: store (migrations) -> lanes (engine threads) -> drivers. Stop: drivers ->
lanes (each locks its relay on the way out) -> voice.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from drivers.camera import SimCamera
from drivers.door import DigitalInput, Relay, SimInput
from drivers.gpio import MockFactory, PinFactory, make_factory
from drivers.qr import QrScanner, make_decoder
from drivers.thermometer import Compensation, Measurement, SerialThermometer, SimThermometer
from drivers.voice import PromptCache, SimSpeaker, Speaker
from drivers.wiegand import SimWiegandReader, WiegandReader
from gate.core.clock import Clock, SystemClock, TimeFloor
from gate.config import Config, InputConfig, LaneConfig, PolicyConfig
from gate.core.events import (
    ApplyPolicy,
    CardRead,
    DeviceHealth,
    DoorContactChanged,
    ExitPressed,
    FireAlarmChanged,
    ManualOpen,
    PresenceChanged,
    QrSeen,
    SetDoorMode,
    TemperatureRead,
)
from gate.core.lane import Lane, Sink
from gate.core.records import AdminRecord, AlarmRecord, LaneRecord
from gate.core.tokens import KeyRing
from gate.core.prompts import PROMPTS
from gate.core.site import SiteView
from gate.store.database import Store
from gate.app import secret_files
from gate.store import withdrawn

log = logging.getLogger(__name__)


def default_voice_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gate" / "voice"


@dataclass
class LaneDevices:
    """The drivers of one lane, and the simulators that stand in for missing hardware."""

    scanner: QrScanner | None = None
    camera: Any = None  # a FrameSource; a SimCamera in simulation
    thermometer: SerialThermometer | None = None
    sim_thermometer: SimThermometer | None = None
    compensation: Compensation = Compensation()
    ambient_c: float = 22.0
    wiegand: WiegandReader | None = None
    sim_wiegand: SimWiegandReader | None = None
    relay: Relay | None = None
    inputs: dict[str, DigitalInput] = field(default_factory=dict)
    sim_inputs: dict[str, SimInput] = field(default_factory=dict)
    speaker: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("closing a driver failed")


class GateApp:
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
        broker: str | None = None,
        config_path: Path | None = None,
        pins: PinFactory | None = None,
        site: SiteView | None = None,
    ) -> None:
        """``site``: this gate's view of its site (several gates sharing presence);
        None for a gate on its own.

        ``pins``: the pin factory for the lanes' 'gpio' devices; by default the
        one ``[gpio] backend`` names, made on first use (``gate doctor`` passes
        mock pins to check the other devices where no GPIO backend starts)."""
        self.config = config
        self.config_path = config_path
        self.broker = broker
        self.prerender = prerender
        self.policy = config.policy
        # This gate's view of its site: given (a drill's several gates), or followed
        # through central when the gate syncs (sync.presence, set up at start); None for a gate alone.
        self.site = site
        self.sync: Any = None  # sync.service.SyncService when the gate talks to central
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
        self._gpio: PinFactory | None = pins
        self._sim_pins: dict[str, MockFactory] = {}
        self._prompt_cache: PromptCache | None = None
        self._prerender: threading.Thread | None = None
        # Set by sync when it runs: () -> {"connected": bool, "detail": str}; the guard page shows it.
        self.upstream: Callable[[], dict[str, Any]] | None = None

    def add_sink(self, sink: Sink) -> None:
        """Add a display sink (called on the lane threads for every record: must not block)."""
        self.sinks.append(sink)
        for lane in self.lanes.values():
            lane.sinks.append(sink)

    # ------------------------------------------------------------ store

    def open_store(self) -> Store:
        return Store(self.store_path, gate_id=self.config.gate.id, tz=self.tz)

    # ------------------------------------------------------------ lifecycle

    def start(self, *, waiting: Callable[[Any], bool] | None = None) -> None:
        """``waiting(error)`` (a StoreUnavailable: its text and ``kind``) is called every few seconds while the store cannot be used
        (a full disk, an I/O or permission error): the relays are held locked meanwhile;
        it returns False to give up. Without it, such a store raises StoreUnavailable."""
        from gate.store.opening import open_when_usable

        for found in secret_files.loose(self.config):
            log.warning("%s", found)  # a warning only: a file mode never keeps the door shut
        if self.site is None and self.config.sync is not None and self.config.sync.presence:
            self.site = SiteView()  # followed through central (sync/presence.py)
        early: dict[str, LaneDevices] = {}
        try:
            for lane_cfg in self.config.lanes:
                early[lane_cfg.name] = devices = LaneDevices()
                self._relay(lane_cfg, devices)  # locked from here on, also while the store is waited for
            opened = open_when_usable(self.store_path, self._first_open, waiting,
                                      reserve=self.store_path.with_name(self.store_path.name + ".reserve"))
        except BaseException:
            for devices in early.values():
                devices.close()
            raise
        self.integrity, config_change, store_waited = opened.integrity, opened.value, opened.waited
        v = self.config.voice
        self._prompt_cache = PromptCache(self.voice_cache, rate=v.rate, volume=v.volume, engine=v.engine, voices=v.voices)
        for lane_cfg in self.config.lanes:
            devices = early[lane_cfg.name]
            devices.speaker = self._speaker(lane_cfg)
            devices.closers.append(devices.speaker.close)
            relay = devices.relay
            lane = Lane(
                lane_cfg,
                policy=self.policy,
                door=self.config.door,
                languages=list(v.languages),
                clock=self.clock,
                keyring=self.keyring,
                open_store=self.open_store,
                relay=relay,
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
                self._inputs(lane_cfg, lane, devices)
            except Exception:
                self.stop()
                raise
        if config_change is not None:
            self.record_gate_event(config_change)
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
        if store_waited is not None:
            self.record_gate_event(AlarmRecord(at=self.clock.now(), lane="gate", kind="store_unavailable",
                                               detail=store_waited))
        if self.clock.realtime:
            from gate.app.maintenance import Maintenance

            self.maintenance = Maintenance(self.open_store, retention_days=self.config.retention.days)
            self.maintenance.start()
        if self.config.sync is not None or self.broker:
            self._start_sync()
        # Every fixed prompt rendered once, off the start-up path: the first person
        # of the day hears the prompt as fast as the thousandth.
        if self.prerender:
            items = [(p.text(lang), lang) for p in PROMPTS.values() for lang in v.languages]
            items += [(getattr(r.prompt, lang), lang) for r in self.policy.rules for lang in v.languages]
            cache = self._prompt_cache
            self._prerender = threading.Thread(
                target=lambda: _quiet(cache.prerender, items), name="prerender", daemon=True
            )
            self._prerender.start()

    def _first_open(self) -> AdminRecord | None:
        store = self.open_store()  # migrate once, before any lane opens its own connection
        try:
            store.ensure_reserve()
            self._restore(store)
            self.save_floor(force=True)  # this boot's continuation of the floor, saved at once
            return self._config_changed(store)
        finally:
            store.close()

    def lock_doors(self) -> None:
        """Drive every relay locked now (first thing on the way out; safe from any thread)."""
        for name, devices in list(self.devices.items()):
            if devices.relay is not None:
                try:
                    devices.relay.lock()
                except Exception:
                    log.exception("lane %s: could not lock the relay", name)

    def stop(self) -> None:
        self.lock_doors()
        for devices in self.devices.values():
            devices.close()
        for lane in self.lanes.values():
            lane.stop()
        if self.sync is not None:
            self.sync.stop()
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.lanes:
            self.save_floor(force=True)
        if self._gpio is not None:
            self._gpio.close()
        if self._prerender is not None:
            self._prerender.join(10)
        if self._prompt_cache is not None:
            self._prompt_cache.close()

    def __enter__(self) -> "GateApp":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def healthy(self, stall_s: float = 5.0) -> bool:
        """Every lane's engine thread and the publisher are alive and turning (real time only)."""
        now = self.clock.monotonic()
        lanes_ok = all(lane.alive and now - lane.alive_at < stall_s for lane in self.lanes.values())
        return lanes_ok and (self.sync is None or self.sync.alive)

    # ------------------------------------------------------------ state kept across restarts

    def _restore(self, store: Store) -> None:
        """The time floor, and a policy central sent that is newer than the config's."""
        from gate.store import time_floor as floor_admin

        # Not the last event's time: a clock that read 2030 once must not pin the floor there.
        floor_admin.load(self.floor, store)
        # Pass-signing keys central withdrew stay refused from the first scan on.
        self.keyring.withdraw(withdrawn.load(store).kids)
        version = int(store.get_meta("policy_version") or 0)
        body = store.get_meta("policy_json")
        if body and version > self.config.policy.version:
            try:
                self.policy = PolicyConfig.model_validate({**json.loads(body), "version": version})
            except Exception:
                log.exception("the stored policy version %d is unusable; using the config's", version)

    def save_floor(self, force: bool = False) -> None:
        """Checkpoint the time floor (at most once a minute unless it moved), and take
        up a reset made at the desk (`gate clock floor --reset`). Called by `gate run`."""
        from gate.store import time_floor as floor_admin

        if force or self.floor.save_due():
            self.floor.checkpoint(floor_admin.saver(self.open_store), force=True)
            return
        try:  # nothing to save: still look for a reset from the desk
            store = self.open_store()
            try:
                stored = floor_admin.stored_state(store)
            finally:
                store.close()
        except Exception as exc:  # a full or failing store must not stop the gate
            log.warning("time floor: could not read the stored state: %s", exc)
            return
        if stored is not None:
            self.floor.adopt(stored)

    def pick_up_stored_policy(self) -> bool:
        """A policy applied at the desk (`gate policy apply`) while the daemon runs: take
        it between two decisions, as one from central. The desk already recorded the
        audit row and its event; here the lanes just switch."""
        store = self.open_store()
        try:
            version = int(store.get_meta("policy_version") or 0)
            body = store.get_meta("policy_json") if version > self.policy.version else None
        finally:
            store.close()
        if not body:
            return False
        try:
            policy = PolicyConfig.model_validate({**json.loads(body), "version": version})
        except Exception:
            log.exception("the stored policy version %d is unusable; keeping version %d", version, self.policy.version)
            return False
        self.policy = policy
        for lane in self.lanes.values():
            lane.post(ApplyPolicy(policy))
        log.warning("policy version %d from the store is now in force", version)
        return True

    def _config_changed(self, store: Store) -> AdminRecord | None:
        """The config differs from the one the gate last started with: say so, as an event."""
        if self.config_path is None:
            return None
        import hashlib
        import pwd

        try:
            digest = hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()[:16]
            st = Path(self.config_path).stat()
        except OSError:
            return None
        before = store.get_meta("config_sha")
        if before == digest:
            return None
        store.set_meta("config_sha", digest)
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return AdminRecord(
            at=self.clock.now(), lane="", action="config_change", who=f"{owner} (file owner)",
            reason="first start" if before is None else "the config file was edited",
            detail=f"{self.config_path}: {before or '-'} → {digest}, modified {datetime.fromtimestamp(st.st_mtime).isoformat(timespec='seconds')}",
        )

    # ------------------------------------------------------------ sync

    def policy_version(self) -> int:
        return self.policy.version

    def apply_policy(self, policy: PolicyConfig, version: int, *, who: str = "central", why: str = "") -> None:
        before = self.policy
        self.policy = policy
        for lane in self.lanes.values():
            lane.post(ApplyPolicy(policy))
        changed = {
            k: (getattr(before, k), v) for k, v in policy.model_dump().items() if before.model_dump().get(k) != v
        }
        self.record_gate_event(
            AdminRecord(
                at=self.clock.now(), lane="", action="policy_apply", who=who, reason=why,
                detail=f"version {before.version} → {version}: " + "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changed.items() if k != "version"),
            )
        )

    def withdraw_keys(self, kids: frozenset[str], who: str) -> None:
        """Central's key list: QR passes signed by these keys are refused (forged) from now on."""
        before = self.keyring.withdrawn
        self.keyring.withdraw(kids)
        self.record_gate_event(AdminRecord(
            at=self.clock.now(), lane="", action="keys_withdrawn", who=who, reason="signed key list from central",
            detail=f"withdrawn: {', '.join(sorted(kids)) or '-'}; given back: {', '.join(sorted(before - kids)) or '-'}"))

    def open_door(self, lane: str, reason: str, who: str) -> bool:
        target = self.lanes.get(lane)
        if target is None:
            log.warning("open_door for unknown lane %r", lane)
            return False
        target.post(ManualOpen(reason, who))
        return True

    def set_door_mode(self, lane: str, mode: str, why: str, who: str) -> bool:
        """The guard or central sets a lane's door mode ("all": every lane)."""
        targets = list(self.lanes.values()) if lane == "all" else [self.lanes[lane]] if lane in self.lanes else []
        if not targets:
            log.warning("door mode for unknown lane %r", lane)
            return False
        for target in targets:
            target.post(SetDoorMode(mode, who, why))
        return True

    def reload(self) -> None:
        """Re-read the config file's policy (what `reload` from central asks for)."""
        if self.config_path is None:
            log.warning("reload asked, but this gate was not started from a config file")
            return
        from gate import config as cfgmod

        try:
            fresh = cfgmod.load(self.config_path)
        except cfgmod.ConfigError as exc:
            log.error("reload: %s", exc)
            return
        if fresh.policy.version >= self.policy.version:
            self.apply_policy(fresh.policy, fresh.policy.version, who="central", why=f"reload of {self.config_path}")

    def device_health(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            name: {dev: {"ok": ok, "detail": detail} for dev, (ok, detail) in dict(lane.health).items()}
            for name, lane in self.lanes.items()
        }

    def record_gate_event(self, rec: LaneRecord) -> None:
        """An event that belongs to no lane (an outbox backlog alarm): stored, then shown."""
        store = self.open_store()
        try:
            store.record(rec)
        finally:
            store.close()
        for sink in list(self.sinks):
            try:
                sink(rec)
            except Exception:
                log.exception("display sink failed")

    def _start_sync(self) -> None:
        from sync.downstream import Hooks
        from sync.service import SyncService

        def backlog(over: bool, detail: str) -> None:
            if over:
                self.record_gate_event(AlarmRecord(at=self.clock.now(), lane="gate", kind="sync_backlog", detail=detail))

        hooks = Hooks(
            apply_policy=self.apply_policy,
            open_door=self.open_door,
            report_now=lambda day: self.sync.heartbeat.report_now(day) if self.sync and self.sync.heartbeat else None,
            reload=self.reload,
            now=lambda: self.floor.apply(self.clock.now())[0],  # expiry is never judged by a clock set back
            raise_floor=self.floor.from_central,
            withdraw_keys=self.withdraw_keys,
            set_door_mode=self.set_door_mode,
            site=self.site if self.config.sync is not None and self.config.sync.presence else None,
        )
        self.sync = SyncService.build(
            self.config,
            self.open_store,
            broker=self.broker,
            hooks=hooks,
            devices=self.device_health,
            policy_version=self.policy_version,
            time_floor=lambda: self.floor.value,
            on_backlog=backlog,
        )
        publisher = self.sync.publisher
        self.add_sink(lambda rec: publisher.nudge() if rec.type != "prompt" else None)
        link = self.sync.link
        self.upstream = lambda: {"connected": link.connected, "detail": link.last_error or ("connected" if link.connected else "connecting")}
        self.sync.start()

    def join(self) -> None:
        for lane in self.lanes.values():
            lane.join()

    # ------------------------------------------------------------ drivers

    def _factory(self, driver: str, lane: str) -> PinFactory:
        """Simulated pins are per lane (lanes may reuse pin numbers); real ones per gate."""
        if driver == "sim":
            return self._sim_pins.setdefault(lane, MockFactory())
        if self._gpio is None:
            self._gpio = make_factory(self.config.gpio.backend)
        return self._gpio

    def _speaker(self, cfg: LaneConfig) -> Any:
        assert self._prompt_cache is not None
        if cfg.speaker.driver == "sim":
            return SimSpeaker(self._prompt_cache)
        return Speaker(self._prompt_cache, device=cfg.speaker.device)

    def _relay(self, cfg: LaneConfig, devices: LaneDevices) -> Relay | None:
        if cfg.relay is None:
            return None
        factory = self._factory(cfg.relay.driver, cfg.name)
        locked = 0 if cfg.relay.active_high else 1
        relay = Relay(factory.output(cfg.relay.pin, initial=locked), active_high=cfg.relay.active_high)
        devices.relay = relay
        devices.closers.append(relay.close)
        return relay

    def _inputs(self, cfg: LaneConfig, lane: Lane, devices: LaneDevices) -> None:
        post = lane.post
        health: Callable[[str, bool, str], None] = lambda device, ok, detail: post(DeviceHealth(device, ok, detail))

        if cfg.camera is not None:
            cam = cfg.camera
            if cam.driver == "sim":
                source: Any = SimCamera(cam.width, cam.height, stream_fps=cam.fps if self.clock.realtime else 0.0)
            elif cam.driver in ("v4l2", "picamera2"):
                # Live cameras are supervised: opened lazily (a camera missing at boot
                # degrades the lane instead of stopping the gate), a stalled or
                # unplugged one is reported (sensor_fault) and reopened when it returns.
                from drivers.camera import Picamera2Camera, SupervisedCamera, V4L2Camera

                if cam.driver == "v4l2":
                    opener: Callable[[], Any] = lambda c=cam: V4L2Camera(c.device, c.width, c.height, c.fps,
                                                                           c.pixel_format)
                else:
                    opener = lambda c=cam: Picamera2Camera(c.width, c.height, c.fps, camera_num=c.camera)
                source = SupervisedCamera(opener, name="camera")
            else:
                from drivers.camera import ImageFolderSource, VideoFileSource

                source = ImageFolderSource(cam.path) if Path(cam.path).is_dir() else VideoFileSource(cam.path, loop=cam.loop)
            scanner = QrScanner(
                source,
                make_decoder(cam.decoder),
                lambda text: post(QrSeen(text)),
                now=self.clock.monotonic,
                name="camera",
                on_fault=health,
            )
            devices.camera, devices.scanner = source, scanner
            scanner.start()
            devices.closers.append(scanner.close)
            devices.closers.append(source.close)  # closed first: wakes the scanner's blocking read

        if cfg.thermometer is not None:
            th = cfg.thermometer
            comp = Compensation(th.compensation.offset_c, th.compensation.ambient_ref_c, th.compensation.ambient_k)
            devices.compensation = comp

            def measured(m: Measurement) -> None:
                post(TemperatureRead(m.body_c, m.object_c, m.ambient_c))

            if th.driver == "sim":
                simt = SimThermometer(ambient_c=th.ambient_c, stream=self.clock.realtime)
                simt.start()
                devices.sim_thermometer, devices.ambient_c = simt, th.ambient_c
                devices.closers.append(simt.close)
                port, baud, proto = simt.port, 9600, "gy-mcu90614"
                serial_extra: dict[str, Any] = {}
            else:
                port, baud, proto = th.port, th.baudrate, th.protocol
                serial_extra = {"parity": th.parity, **th.modbus()}
            reader = SerialThermometer(
                port,
                **serial_extra,
                baudrate=baud,
                protocol=proto,
                compensation=comp,
                on_measurement=measured,
                on_fault=health,
                # A drill's sim sends only when someone measures; the live one streams.
                stale_s=th.stale_after() if th.driver == "serial" else (3.0 if self.clock.realtime else None),
            )
            reader.start()
            devices.thermometer = reader
            devices.closers.append(reader.close)

        if cfg.card_reader is not None:
            cr = cfg.card_reader
            factory = self._factory(cr.driver, cfg.name)
            reader_w = WiegandReader(
                factory.input(cr.d0, pull="up"),
                factory.input(cr.d1, pull="up"),
                lambda number, bits: post(CardRead(number, bits)),
            )
            devices.wiegand = reader_w
            devices.closers.append(reader_w.close)
            if cr.driver == "sim":
                assert isinstance(factory, MockFactory)
                devices.sim_wiegand = SimWiegandReader(factory, cr.d0, cr.d1)

        def add_input(name: str, icfg: InputConfig | None, on_change: Callable[[bool], None]) -> None:
            if icfg is None:
                return
            factory = self._factory(icfg.driver, cfg.name)
            pull = icfg.pull or ("down" if icfg.active_high else "up")
            pull = None if pull == "none" else pull
            inp = DigitalInput(
                factory.input(icfg.pin, pull=pull),
                active_high=icfg.active_high,
                debounce_ms=icfg.debounce_ms,
                on_change=on_change,
                name=name,
            )
            devices.inputs[name] = inp
            devices.closers.append(inp.close)
            if icfg.driver == "sim":
                assert isinstance(factory, MockFactory)
                devices.sim_inputs[name] = SimInput(factory, icfg.pin, active_high=icfg.active_high)

        add_input("door_contact", cfg.door_contact, lambda active: post(DoorContactChanged(active)))
        add_input("exit_button", cfg.exit_button, lambda active: post(ExitPressed()) if active else None)
        def on_pir(active: bool) -> None:
            post(PresenceChanged(active))
            if devices.scanner is not None:
                devices.scanner.presence(active)  # someone there: decode every frame, not only changed ones

        add_input("pir", cfg.pir, on_pir)
        # The fire alarm is the whole gate's: every lane is held open while it is active.
        add_input("fire_alarm", cfg.fire_alarm, lambda active: self.post_all(FireAlarmChanged(active)))

    def post_all(self, event: Any) -> None:
        for lane in list(self.lanes.values()):
            lane.post(event)


def _quiet(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("pre-rendering prompts failed; prompts will render on first use")
