"""A lane's devices: cameras, thermometers, card readers, relays, inputs, speakers, and
the lane itself (each device a driver: the real one or "sim")."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from gate.config.base import Strict

# ---------------------------------------------------------------- devices


class SimCameraConfig(Strict):
    driver: Literal["sim"]
    width: int = 640
    height: int = 480
    fps: float = Field(10.0, ge=0, le=120)  # empty frames a second when live (drills feed frames themselves)
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class V4L2CameraConfig(Strict):
    driver: Literal["v4l2"]
    device: str  # /dev/v4l/by-id/... survives re-plugging into another port
    width: int = 1280
    height: int = 720
    fps: int = 30
    # What the camera sends over USB: "mjpeg" is what most UVC cameras need for
    # 720p at 30 fps; "yuyv" (uncompressed) suits small frames or a camera without
    # MJPEG. Either way the decoder gets grey without a colour conversion.
    pixel_format: Literal["mjpeg", "yuyv"] = "mjpeg"
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class FileCameraConfig(Strict):
    driver: Literal["file"]
    path: Path  # a video file or a folder of images
    loop: bool = False
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


class Picamera2CameraConfig(Strict):
    """A Raspberry Pi camera module (CSI) through picamera2 (the `pi` extra)."""

    driver: Literal["picamera2"]
    camera: int = Field(0, ge=0)  # which module, on boards with two
    width: int = 1280
    height: int = 720
    fps: int = 30
    decoder: Literal["auto", "fast", "zxing", "pyzbar"] = "auto"


CameraConfig = Annotated[
    Union[SimCameraConfig, V4L2CameraConfig, FileCameraConfig, Picamera2CameraConfig], Field(discriminator="driver")
]


class CompensationConfig(Strict):
    """Forehead skin to body temperature: body = object + offset_c + ambient_k * (ambient_ref_c - ambient)."""

    offset_c: float = 0.0
    ambient_ref_c: float = 25.0
    ambient_k: float = 0.0


class SimThermometerConfig(Strict):
    driver: Literal["sim"]
    ambient_c: float = 22.0
    compensation: CompensationConfig = CompensationConfig()


class SerialThermometerConfig(Strict):
    driver: Literal["serial"]
    port: str  # /dev/serial/by-id/...
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 9600
    protocol: Literal["gy-mcu90614", "ascii", "modbus"] = "gy-mcu90614"
    parity: Literal["N", "E", "O"] = "N"  # Modbus RTU's standard is "E"; most IR sensors ship "N"
    compensation: CompensationConfig = CompensationConfig()
    # No valid frame for this long while the port is open is a sensor fault. The
    # GY-MCU90614 streams at ~14 Hz and a Modbus sensor answers every poll; an ASCII
    # sensor that prints only when it measures needs "stale_s = 0" (off), which is
    # its default.
    stale_s: float | None = Field(None, ge=0)
    # Modbus RTU: the sensor's address and the holding registers (tenths of °C) of
    # the object and, if it has one, the ambient temperature; polls per second.
    slave: int = Field(1, ge=1, le=247)
    object_register: int = Field(0, ge=0, le=0xFFFF)
    ambient_register: int | None = Field(None, ge=0, le=0xFFFF)
    poll_hz: float = Field(10.0, gt=0, le=50)

    def stale_after(self) -> float | None:
        if self.stale_s is None:
            return 3.0 if self.protocol in ("gy-mcu90614", "modbus") else None
        return self.stale_s or None

    def modbus(self) -> dict[str, Any]:
        """SerialThermometer's Modbus arguments (none for the other protocols)."""
        if self.protocol != "modbus":
            return {}
        return {"slave": self.slave, "register": self.object_register,
                "ambient_register": self.ambient_register, "poll_hz": self.poll_hz}


ThermometerConfig = Annotated[
    Union[SimThermometerConfig, SerialThermometerConfig], Field(discriminator="driver")
]


class WiegandConfig(Strict):
    driver: Literal["sim", "gpio"]
    d0: int = Field(ge=0, le=53)
    d1: int = Field(ge=0, le=53)


class RelayConfig(Strict):
    driver: Literal["sim", "gpio"]
    pin: int = Field(ge=0, le=53)
    active_high: bool = True


class InputConfig(Strict):
    driver: Literal["sim", "gpio"]
    pin: int = Field(ge=0, le=53)
    active_high: bool = False  # most contacts and buttons pull the line low
    debounce_ms: float = Field(30.0, ge=0)
    pull: Literal["up", "down", "none"] | None = None  # default: idle at the inactive level


class SpeakerConfig(Strict):
    driver: Literal["sim", "aplay"] = "sim"
    device: str | None = None  # ALSA device, e.g. "plughw:1,0"


class LaneConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    direction: Literal["in", "out"]
    camera: CameraConfig | None = None
    thermometer: ThermometerConfig | None = None
    card_reader: WiegandConfig | None = None
    relay: RelayConfig | None = None
    door_contact: InputConfig | None = None
    exit_button: InputConfig | None = None
    pir: InputConfig | None = None
    speaker: SpeakerConfig = SpeakerConfig()
    schedule: str | None = None  # a named schedule (policy.schedules) this lane admits entries in
    label: str | None = Field(None, max_length=32)  # what the guard page calls it ("东门 进 East gate in")
    # A fire-alarm contact: while active, every lane of the gate is held open (and it is an alarm).
    fire_alarm: InputConfig | None = None

    def devices(self) -> dict[str, Any]:
        names = ("camera", "thermometer", "card_reader", "relay", "door_contact", "exit_button", "pir", "fire_alarm")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
