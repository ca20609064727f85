"""Infrared forehead thermometer: GY-MCU90614 (MLX90614), a line-based ASCII sensor or
a Modbus RTU sensor (holding registers in tenths of °C) on a serial port.

Layers, each usable on its own, one module each:

* ``gy90614`` / ``ascii`` / ``modbus``: parsers that turn bytes into ``Frame``
  readings (``frame``); the Modbus one also makes the read-holding-registers polls.
* ``measurement``: ``MeasurementDetector`` turns a frame stream into one
  ``Measurement`` per "something warm in front of the sensor" episode (median of
  the frames); ``Compensation`` maps forehead skin to an estimated body temperature.
* ``serial_reader``: ``SerialThermometer`` runs all of it on a pyserial port in a
  thread, reconnects after an unplug and reports faults.
* ``sim``: ``SimThermometer``, a simulated GY-MCU90614 or Modbus RTU sensor behind
  a real pseudo-terminal, so drills and tests exercise the real serial path.

The driver reports what it measured; judging fever or human range is the lane's job.
"""
from __future__ import annotations

from drivers.thermometer.ascii import AsciiLineParser
from drivers.thermometer.frame import AMBIENT_RANGE_C, OBJECT_RANGE_C, Frame, Parser
from drivers.thermometer.gy90614 import (CMD_CONTINUOUS, CMD_QUERY, FRAME_HEADER, FRAME_LEN,
                                         Gy90614Parser, encode_frame)
from drivers.thermometer.measurement import Compensation, Measurement, MeasurementDetector
from drivers.thermometer.modbus import (MODBUS_MAX_REGISTERS, MODBUS_READ_HOLDING, ModbusRtuParser,
                                        crc16_modbus, exception_response, read_holding_request,
                                        read_holding_response, with_crc)
from drivers.thermometer.serial_reader import SerialThermometer
from drivers.thermometer.sim import SimThermometer

__all__ = [
    "AMBIENT_RANGE_C", "CMD_CONTINUOUS", "CMD_QUERY", "FRAME_HEADER", "FRAME_LEN",
    "MODBUS_MAX_REGISTERS", "MODBUS_READ_HOLDING", "OBJECT_RANGE_C", "AsciiLineParser",
    "Compensation", "Frame", "Gy90614Parser", "Measurement", "MeasurementDetector",
    "ModbusRtuParser", "Parser", "SerialThermometer", "SimThermometer", "crc16_modbus",
    "encode_frame", "exception_response", "read_holding_request", "read_holding_response",
    "with_crc",
]
