"""Drills (DRILLS.md): the file format, the runner, and the site of several gates."""
