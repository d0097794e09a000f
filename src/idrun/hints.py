"""The typing names the launch path uses, without importing ``typing``.

``import typing`` (with the re and enum it loads) costs a launch about 5 ms, more
than idrun's own work. The launch modules annotate with these instead: the abstract
collections (subscriptable since Python 3.9), ``Any``/``NoReturn`` as plain markers,
and a ``NamedTuple`` that builds the same ``collections.namedtuple`` class from the
same class statement (fields from the annotations, defaults, methods, properties,
docstring). Type checkers see typing's own names (``TYPE_CHECKING``).
"""
import sys
from collections import namedtuple
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, NamedTuple, NoReturn
elif sys.version_info >= (3, 14):
    # Python 3.14 defers a class's annotations (PEP 649): the class statement no longer
    # hands its fields over as a dict, and evaluating them could fail on names imported for
    # type checkers only. typing's NamedTuple knows how; its import is what 3.14 pays.
    from typing import Any, NamedTuple, NoReturn
else:
    class _Marker:
        """A name that only annotates: ``Any`` and ``NoReturn``."""

        __slots__ = ("_name",)

        def __init__(self, name: str) -> None:
            self._name = name

        def __repr__(self) -> str:
            return f"idrun.hints.{self._name}"

    Any = _Marker("Any")
    NoReturn = _Marker("NoReturn")

    # What the class statement leaves in its namespace that is not the record's.
    _OWN = frozenset(("__module__", "__qualname__", "__annotations__", "__slots__",
                      "__orig_bases__", "__classcell__", "__static_attributes__", "__firstlineno__"))

    class _RecordMeta(type):
        def __new__(mcs, name, bases, ns):
            fields = ns.get("__annotations__", {})
            defaults = []
            for field in fields:
                if field in ns:
                    defaults.append(ns[field])
                elif defaults:
                    raise TypeError(f"non-default field {field!r} follows a default field "
                                    f"in {name}")
            cls = namedtuple(name, fields, defaults=defaults, module=ns.get("__module__"))
            for key, value in ns.items():
                if key not in _OWN and key not in fields:
                    setattr(cls, key, value)
            cls.__qualname__ = ns.get("__qualname__", name)
            cls.__annotations__ = dict(fields)
            return cls

    _Base = type.__new__(_RecordMeta, "NamedTuple", (), {})

    def NamedTuple(typename, fields=()):
        """``NamedTuple("Name", [("field", type), …])``, as typing's functional form."""
        return _RecordMeta(typename, (), {"__annotations__": dict(fields),
                                          "__module__": "idrun.hints"})

    # 'class Record(NamedTuple):' takes _Base as its base, whose metaclass builds it.
    NamedTuple.__mro_entries__ = lambda bases: (_Base,)

__all__ = ["Any", "Callable", "Collection", "Iterable", "Mapping", "NamedTuple", "NoReturn",
           "Sequence", "TYPE_CHECKING"]
