"""idrun: run a command in a new user namespace with podman-style id mappings.

Public API (see the README's "Python API"): ``run`` and ``spawn`` (shaped like
subprocess.run and Popen; ``spawn`` returns a ``Process``), ``plan_for`` (resolve
a mapping as ``idrun map`` does, into a ``Plan``), ``resolve`` (the pure resolver),
and the exceptions, all ``IdrunError`` subclasses with ``message``, ``hint`` and
``exit_status``.

The launch path imports this package, so it stays empty of imports: the names
load their modules on first use.
"""
from __future__ import annotations

# Not typing's: this runs first in every launch, and an import here is time in which
# a ^C could only end in a traceback (console.py makes SIGINT quiet after it).
TYPE_CHECKING = False

__version__ = "0.1.0"

_LAZY = {
    "run": "api", "spawn": "api", "plan_for": "api", "Process": "api",
    "resolve": "mapping.resolve", "Plan": "mapping.plan", "Request": "mapping.plan",
    "IdrunError": "errors", "MapSyntaxError": "errors", "MapConflictError": "errors",
    "MapValidationError": "errors", "SubidError": "errors", "LaunchError": "errors",
    "CommandNotFound": "errors", "CommandNotExecutable": "errors",
}

__all__ = [*_LAZY, "__version__"]

if TYPE_CHECKING:
    from .api import Process, plan_for, run, spawn
    from .errors import (CommandNotExecutable, CommandNotFound, IdrunError, LaunchError,
                         MapConflictError, MapSyntaxError, MapValidationError, SubidError)
    from .mapping.plan import Plan, Request
    from .mapping.resolve import resolve


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'idrun' has no attribute {name!r}")
    from importlib import import_module
    return getattr(import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
