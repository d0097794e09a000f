"""The typing names the launch path uses, without importing ``typing`` or ``collections``.

``import typing`` (with the re and enum it loads) costs a launch about 5 ms, more
than idrun's own work, and ``collections`` (keyword, operator, reprlib) with one
``namedtuple`` class built by ``eval`` per record about 2 ms more. The launch modules
annotate with these instead: the abstract collections (subscriptable since Python
3.9, taken from ``_collections_abc``, which the interpreter has loaded before any
script), ``Any``/``NoReturn`` as plain markers, and a ``NamedTuple`` that builds,
from the same class statement, a tuple class that behaves as ``collections.namedtuple``'s
(fields from the annotations, defaults, methods, properties, docstring, repr, pickling,
``_replace``/``_make``/``_asdict``/``_fields``/``_field_defaults``). ``record()`` is
the same for a field list known only at run time. Type checkers see typing's own
names (``TYPE_CHECKING``).
"""
import sys
from _collections_abc import Callable, Collection, Iterable, Mapping, Sequence

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections import namedtuple as record
    from typing import Any, NamedTuple, NoReturn
elif sys.version_info >= (3, 14):
    # Python 3.14 defers a class's annotations (PEP 649): the class statement no longer
    # hands its fields over as a dict, and evaluating them could fail on names imported for
    # type checkers only. typing's NamedTuple knows how; its import is what 3.14 pays.
    from collections import namedtuple as record
    from typing import Any, NamedTuple, NoReturn
else:
    try:
        # The C field accessor namedtuple itself uses (CPython 3.8 and later).
        from _collections import _tuplegetter
    except ImportError:                                     # pragma: no cover
        from _operator import itemgetter as _itemgetter

        def _tuplegetter(index, doc):
            return property(_itemgetter(index), doc=doc)

    _tuple_new = tuple.__new__
    _MISSING = object()

    def record(typename, field_names, *, defaults=None, module=None):
        """A tuple class with named fields, as ``collections.namedtuple`` makes it
        (``field_names`` a sequence of names), built without ``eval``."""
        fields = tuple(field_names)
        for f in fields:
            if not f.isidentifier() or f.startswith("_"):
                raise ValueError(f"field name {f!r} is not a valid record field")
        n = len(fields)
        defaults = tuple(defaults or ())
        if len(defaults) > n:
            raise TypeError("got more default values than field names")
        first_default = n - len(defaults)
        index = {f: i for i, f in enumerate(fields)}

        # What a call without keywords leaves in each place: a default, or _MISSING.
        template = (_MISSING,) * first_default + defaults

        def __new__(cls, *args, **kwargs):
            given = len(args)
            if not kwargs:
                if given == n:
                    return _tuple_new(cls, args)
                if first_default <= given < n:
                    return _tuple_new(cls, args + defaults[given - first_default:])
            if given > n:
                raise TypeError(f"{typename}() takes {n} positional arguments but "
                                f"{given} were given")
            values = [*args, *template[given:]]
            for key, value in kwargs.items():
                i = index.get(key)
                if i is None:
                    raise TypeError(f"{typename}() got an unexpected keyword argument {key!r}")
                if i < given:
                    raise TypeError(f"{typename}() got multiple values for argument {key!r}")
                values[i] = value
            for i in range(given, first_default):
                if values[i] is _MISSING:
                    missing = [fields[j] for j in range(given, first_default)
                               if values[j] is _MISSING]
                    raise TypeError(f"{typename}() missing {len(missing)} required "
                                    f"argument{'s' if len(missing) > 1 else ''}: "
                                    + ", ".join(repr(m) for m in missing))
            return _tuple_new(cls, values)

        def _make(cls, iterable):
            result = _tuple_new(cls, iterable)
            if len(result) != n:
                raise TypeError(f"Expected {n} arguments, got {len(result)}")
            return result

        def _replace(self, /, **kwds):
            result = _make(type(self), map(kwds.pop, fields, self))
            if kwds:
                raise ValueError(f"Got unexpected field names: {list(kwds)!r}")
            return result

        def __repr__(self):
            return (f"{self.__class__.__name__}("
                    + ", ".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")")

        def _asdict(self):
            return dict(zip(fields, self))

        def __getnewargs__(self):
            return tuple(self)

        __new__.__qualname__ = f"{typename}.__new__"
        ns = {
            "__doc__": f"{typename}({', '.join(fields)})",
            "__slots__": (),
            "_fields": fields,
            "_field_defaults": dict(zip(fields[first_default:], defaults)),
            "__new__": __new__,
            "_make": classmethod(_make),
            "_replace": _replace,
            "__repr__": __repr__,
            "_asdict": _asdict,
            "__getnewargs__": __getnewargs__,
            "__match_args__": fields,
        }
        for i, f in enumerate(fields):
            ns[f] = _tuplegetter(i, f"Alias for field number {i}")
        cls = type(typename, (tuple,), ns)
        cls.__module__ = module if module is not None else sys._getframe(1).f_globals.get(
            "__name__", "__main__")
        return cls

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
            cls = record(name, fields, defaults=defaults, module=ns.get("__module__"))
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
           "Sequence", "TYPE_CHECKING", "record"]
