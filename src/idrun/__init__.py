"""idrun: run a command in a new user namespace with podman-style id mappings.

The launch path imports this package, so it stays empty of imports: the API
functions load their modules on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["run", "spawn", "resolve", "IdrunError", "__version__"]


def __getattr__(name: str):
    if name in ("run", "spawn"):
        from . import api
        return getattr(api, name)
    if name == "resolve":
        from .resolve import resolve
        return resolve
    if name == "IdrunError":
        from .errors import IdrunError
        return IdrunError
    raise AttributeError(name)
