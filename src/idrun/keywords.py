"""Keyword checks for the public API's ``**options`` functions.

``spawn`` and ``run`` pass options on to inner functions; without this check a
typo would surface as ``plan_for() got an unexpected keyword argument``, naming
a function the caller never called. ``check_keywords`` names the public one.
"""
from __future__ import annotations

from typing import Callable, Collection, Iterable


def keywords_of(*funcs: Callable) -> frozenset[str]:
    """The keyword names ``funcs`` accept (read from their code: no inspect import)."""
    names: set[str] = set()
    for f in funcs:
        code = f.__code__
        names.update(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    return frozenset(names)


def check_keywords(public: str, given: Iterable[str], allowed: Collection[str]) -> None:
    """Raise TypeError, as Python would for ``public``, for a keyword not in ``allowed``."""
    for name in given:
        if name not in allowed:
            raise TypeError(f"{public}() got an unexpected keyword argument {name!r}")
