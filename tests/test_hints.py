"""idrun.hints.NamedTuple builds, from the same class statement, what typing's does
(the launch modules use it so that a launch need not import typing)."""
import pickle
import sys
import typing

import pytest

from idrun import hints

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason="3.14 defers annotations (PEP 649): idrun.hints gives typing's own NamedTuple")


class Pickled(hints.NamedTuple):
    v: int


def define(base):
    class Rec(base):
        """A record."""
        x: int
        y: "str | None" = None
        z: tuple[int, ...] = ()

        @property
        def double(self) -> int:
            return self.x * 2

        def text(self) -> str:
            return f"{self.x}{self.y}"

        @classmethod
        def make(cls):
            return cls(1)
    return Rec


def test_same_record_as_typing():
    Mine, Theirs = define(hints.NamedTuple), define(typing.NamedTuple)
    a, b = Mine(1, "q"), Theirs(1, "q")
    assert a == b and repr(a) == repr(b) and hash(a) == hash(b)
    for attr in ("__doc__", "__qualname__", "__module__", "_fields", "_field_defaults"):
        assert getattr(Mine, attr) == getattr(Theirs, attr), attr
    assert Mine.__annotations__.keys() == Theirs.__annotations__.keys()
    assert a.double == 2 and a.text() == "1q" and Mine.make() == (1, None, ())
    assert Mine(2) == (2, None, ()) and a._replace(x=3).x == 3
    assert not hasattr(a, "__dict__")
    assert pickle.loads(pickle.dumps(Pickled(5))) == Pickled(5)
    with pytest.raises(AttributeError):
        a.x = 2


def test_defaults_must_come_last_as_with_typing():
    with pytest.raises(TypeError, match="non-default field 'y'"):
        class Bad(hints.NamedTuple):
            x: int = 1
            y: int


def test_record_behaves_as_namedtuple():
    import collections
    Mine = hints.record("P", ["a", "b", "c"], defaults=[3])
    Theirs = collections.namedtuple("P", ["a", "b", "c"], defaults=[3])
    for args, kw in [((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2, "c": 4}),
                     ((1, 2, 5), {})]:
        m, t = Mine(*args, **kw), Theirs(*args, **kw)
        assert m == t and repr(m) == repr(t) and hash(m) == hash(t)
        assert m._asdict() == t._asdict() and tuple(m._replace(b=9)) == tuple(t._replace(b=9))
    assert Mine._fields == Theirs._fields and Mine._field_defaults == Theirs._field_defaults
    assert Mine.__match_args__ == Theirs.__match_args__ and Mine.__doc__ == Theirs.__doc__
    assert Mine._make([1, 2, 3]) == (1, 2, 3) and type(Mine._make([1, 2, 3])) is Mine
    assert Mine(1, 2).b == 2 and not hasattr(Mine(1, 2), "__dict__")
    bad = [lambda cls: cls(1), lambda cls: cls(1, 2, 3, 4), lambda cls: cls(1, 2, d=1),
           lambda cls: cls(1, 2, a=1), lambda cls: cls._make([1])]
    for make in bad:             # refused by both, and with the same exception type
        with pytest.raises(TypeError):
            make(Theirs)
        with pytest.raises(TypeError):
            make(Mine)
    with pytest.raises(ValueError, match="unexpected field names"):
        Mine(1, 2)._replace(d=1)
    match Mine(1, 2):
        case Mine(x, y, z):
            assert (x, y, z) == (1, 2, 3)
