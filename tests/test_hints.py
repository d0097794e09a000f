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
