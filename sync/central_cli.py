"""The `gate central` command group at its old import path, for gate/cli.py.

The group lives in sync/central/cli.py; this stays until gate/cli.py imports it from there.
"""
from sync.central.cli import central

__all__ = ["central"]
