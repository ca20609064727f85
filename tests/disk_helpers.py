"""Real small file systems for disk-full and I/O-error tests (the tests run as root)."""
from __future__ import annotations

import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def _run(*cmd: str) -> None:
    res = subprocess.run(list(cmd), capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed (these tests need root): {res.stderr.strip()}")


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path, name: str = "fill") -> Path:
    """Take every free byte of the file system (what a runaway log file does)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


class Ext2Image:
    """An ext4 file system without extents (block-mapped) on a loop device, so a test
    can point one of a file's blocks outside the device: reading it is an EIO."""

    def __init__(self, image: Path, mnt: Path, size_mb: int = 16) -> None:
        self.image, self.mnt = image, mnt
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        _run("mkfs.ext4", "-q", "-F", "-O", "^extent,^has_journal,^64bit", "-b", "1024", str(image))
        mnt.mkdir(parents=True, exist_ok=True)

    def mount(self) -> None:
        _run("mount", "-o", "loop", str(self.image), str(self.mnt))

    def umount(self) -> None:
        _run("umount", str(self.mnt))

    def break_block(self, name: str) -> None:
        """Unmounted: point the file's first indirectly mapped block beyond the device."""
        res = subprocess.run(["debugfs", "-R", f"stat {name}", str(self.image)], capture_output=True, text=True)
        m = re.search(r"\(IND\):(\d+)", res.stdout)
        assert m, f"{name} has no indirect block (too small?): {res.stdout}"
        with open(self.image, "r+b") as f:
            f.seek(int(m.group(1)) * 1024)
            f.write((99_999_999).to_bytes(4, "little"))
