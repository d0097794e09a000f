"""The Python API as users import it: __all__, py.typed, docstrings, and keyword
errors that name the function the caller called."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import idrun


def test_all_names_resolve_and_are_documented():
    for name in idrun.__all__:
        obj = getattr(idrun, name)
        if callable(obj):
            assert obj.__doc__, f"idrun.{name} has no docstring"
    assert {"run", "spawn", "plan_for", "IdrunError", "Process"} <= set(idrun.__all__)
    assert issubclass(idrun.CommandNotFound, idrun.IdrunError)
    with pytest.raises(AttributeError):
        idrun.no_such_name  # noqa: B018


def test_process_methods_are_documented():
    for name in ("poll", "wait", "communicate", "send_signal", "terminate", "kill"):
        assert getattr(idrun.Process, name).__doc__, name


def test_py_typed_marker():
    assert (Path(idrun.__file__).parent / "py.typed").is_file()


def test_import_is_lazy():
    res = subprocess.run([sys.executable, "-c", "import sys, idrun; "
                          "print(sorted(m for m in sys.modules if m.startswith('idrun')))"],
                         capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "['idrun']", res.stdout + res.stderr


def test_only_the_command_turns_the_garbage_collector_off():
    """console.py disables the cyclic GC for the idrun process; the library and the CLI
    module used as a library (man pages, completion, tests) leave it on."""
    code = ("import gc, idrun, idrun.cli.launcher, idrun.api; a = gc.isenabled(); "
            "import idrun.console; print(a, gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False"]


@pytest.mark.parametrize("func", ["spawn", "run"])
def test_mistyped_keyword_names_the_public_function(func, no_new_children):
    with pytest.raises(TypeError) as info:
        getattr(idrun, func)(["true"], uidmap=["0:0:1"], nett=True)
    assert str(info.value) == f"{func}() got an unexpected keyword argument 'nett'"


def test_plan_for_keyword_error_is_its_own():
    with pytest.raises(TypeError, match=r"^plan_for\(\) got an unexpected keyword argument 'net'"):
        idrun.plan_for(["0:0:1"], net=True)
