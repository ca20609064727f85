"""A thermometer reading (``Frame``), the MLX90614's physical ranges that every
protocol checks a reading against, and the ``Parser`` shape every protocol has."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from drivers.base import Counters

# What the MLX90614 can physically report (datasheet ranges). A frame outside them
# passed an 8-bit checksum by luck or comes from a broken module: never a reading.
OBJECT_RANGE_C = (-70.0, 382.2)
AMBIENT_RANGE_C = (-40.0, 125.0)


@dataclass(frozen=True)
class Frame:
    object_c: float
    ambient_c: float


def _in_range(frame: Frame) -> bool:
    return (OBJECT_RANGE_C[0] <= frame.object_c <= OBJECT_RANGE_C[1]
            and AMBIENT_RANGE_C[0] <= frame.ambient_c <= AMBIENT_RANGE_C[1])


class Parser(Protocol):
    counters: Counters

    def feed(self, data: bytes) -> list[Frame]: ...
