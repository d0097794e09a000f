"""The map side's helper runs (engine.steps._run_helpers): newuidmap and newgidmap run at
once, failures are reported uid first, and an exception on the way leaves no helper
process and no descriptor behind.

The helpers here are real processes (small sh scripts standing in for newuidmap and
newgidmap, which as unprivileged setuid programs cannot be replaced by a script): what is
tested is how the engine starts, collects and ends them, not what they write."""
from __future__ import annotations

import os
import signal
import stat

import pytest

from idrun.errors import LaunchError
from idrun.engine import steps
from idrun.system import newidmap


def _helper(tmp_path, kind: str, body: str) -> newidmap.Helper:
    path = tmp_path / f"fake-new{kind}map"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    st = os.stat(path)
    return newidmap.Helper(kind, str(path), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                           None, False)


def _children() -> list[str]:
    return sorted(p for tid in os.listdir("/proc/self/task")
                  for p in open(f"/proc/self/task/{tid}/children").read().split())


def _fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


def test_both_helpers_run_at_once(tmp_path):
    """The uid helper waits (up to 10 s) for the gid helper to have started: run one after
    the other, it would give up and fail the launch."""
    mark = tmp_path / "gid-started"
    uid = _helper(tmp_path, "uid", f"i=0; while [ ! -e {mark} ]; do i=$((i+1)); "
                                   f"[ $i -gt 1000 ] && {{ echo gid helper not started; exit 1; }}; "
                                   "sleep 0.01; done; exit 0")
    gid = _helper(tmp_path, "gid", f": > {mark}; exit 0")
    before = (_fds(), _children())
    steps._run_helpers([(uid, "1", ["0", "0", "1"], None),
                        (gid, "1", ["0", "0", "1"], None)], False)
    assert (_fds(), _children()) == before


def test_a_failure_is_reported_uid_first(tmp_path):
    uid = _helper(tmp_path, "uid", "echo newuidmap: uid range not allowed; exit 1")
    gid = _helper(tmp_path, "gid", "echo newgidmap: gid range not allowed; exit 1")
    before = (_fds(), _children())
    with pytest.raises(LaunchError) as exc:
        steps._run_helpers([(uid, "1", ["0", "0", "1"], None),
                            (gid, "1", ["0", "0", "1"], None)], False)
    assert "uid range not allowed" in str(exc.value)
    assert (_fds(), _children()) == before


def test_a_raising_signal_handler_leaves_no_helper(tmp_path):
    """A handler raising while the helpers run: both are killed and reaped, their pipes
    closed, and the exception reaches the caller."""
    uid = _helper(tmp_path, "uid", "exec sleep 30")
    gid = _helper(tmp_path, "gid", "exec sleep 30")

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    before = (_fds(), _children())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Interrupted):
            steps._run_helpers([(uid, "1", [], None), (gid, "1", [], None)], False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert (_fds(), _children()) == before
