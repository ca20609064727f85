"""Files that hold secrets should be readable by the gate's user only: say so at start."""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any


def secret_files(config: Any) -> list[tuple[str, Path]]:
    """(config key, path) of every secret file the config names."""
    found: list[tuple[str, Path]] = [("keys.signing", config.keys.signing),
                                     ("guard.password_file", config.guard.password_file),
                                     ("guard.pin_file", config.guard.pin_file)]
    if config.sync is not None:
        found += [("sync.password_file", config.sync.password_file), ("sync.key_file", config.sync.key_file)]
    return [(key, Path(p)) for key, p in found if p is not None]


def exposed(config: Any) -> list[str]:
    """One warning for each secret file other users may read (missing files are someone else's error)."""
    out = []
    for key, path in secret_files(config):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            out.append(f"{key}: {path} is readable by other users (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    return out
