"""Operations on a gate's devices: `gate doctor` and `gate thermometer calibrate`."""
