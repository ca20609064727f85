"""The guard's page: a live local web page for the guard at the gate (see server.py)."""
from gate.web.server import GuardPage, GuardPageError

__all__ = ["GuardPage", "GuardPageError"]
