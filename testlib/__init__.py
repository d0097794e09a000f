"""The helper package of both test trees, tests/ and integration/.

pytest puts the top of the tree on sys.path (``pythonpath`` in pyproject.toml), so
every test and conftest reaches it the same way: ``from testlib import ...``. No test
imports a conftest.py.

This module: when a missing piece of the environment fails rather than skips, the
process-leak checks, a scratch directory every id may write, and the --json reader.
``testlib.unit`` holds what tests/ adds (running this checkout, the test user),
``testlib.integration`` what integration/ adds (the caller, its sub-ids, ``Idrun``).
Only the standard library and pytest, because the VM guests have nothing else.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile

import pytest


def strict() -> bool:
    """True when a skip for a missing capability of the environment must fail."""
    return os.environ.get("CI", "").lower() == "true"


def env_missing(reason: str) -> None:
    """The environment lacks something a test needs: skip, or fail under CI."""
    if strict():
        pytest.fail(f"environment: {reason} (a skip is a failure under CI=true)", pytrace=False)
    pytest.skip(reason)


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of a process, None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def children_of(pid: int) -> list[int]:
    """Every process whose parent is ``pid`` (of any of its threads), zombies included.
    Scans /proc rather than reading .../children, which needs CONFIG_PROC_CHILDREN and
    lists only one thread's children."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[1] == pid:
                out.append(int(name))
    return out


def descendants_of(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        out += kids
        todo += kids
    return out


def procs_with(token: str, program: str | None = None) -> list[int]:
    """Live pids whose command line contains ``token`` (and, with ``program``, whose
    argv[0] ends with it: a launcher's command line carries its command's words too)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        st = proc_stat(int(name))
        if st is None or st[0] in ("Z", "X") or not any(token.encode() in a for a in args):
            continue
        if program is None or args[0].endswith(program.encode()):
            out.append(int(name))
    return out


def alive(pid: int, starttime: int) -> bool:
    """The same process (pid and start time) exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[2] == starttime and st[0] not in ("Z", "X")


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture
def no_new_children():
    """Fails the test if it leaves a child process of this worker behind. Compares with
    the children that existed before (other tests' processes may still be reaped
    later), so it is exact for this test only."""
    before = set(children_of(os.getpid()))
    yield
    left = set(children_of(os.getpid())) - before
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture
def shared_dir():
    """A fresh directory under /tmp that every id may write (mode 1777)."""
    d = tempfile.mkdtemp(prefix="idrun-it-", dir="/tmp")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def idrun_json(text: str) -> dict:
    """One --json document of idrun, validated against its shipped schema when the
    jsonschema package is there (the unit venv has it; Debian's python3-jsonschema,
    which `make deps` installs, for the integration passes)."""
    doc = json.loads(text)
    try:
        import jsonschema  # noqa: F401
        from idrun.jsonout import validate
    except ImportError:
        return doc
    return validate(doc)
