"""idrun.run on the real kernel, in a fresh interpreter of the test's Python (as root and
as the unprivileged caller through the real newuidmap/newgidmap): the maps and ids the
command sees, its exit status, and that the caller keeps no child and no descriptor.

The caller is a fresh ``sys.executable`` so its threads and fork hooks are known: the
engine forks through libc when the caller has one thread (none of CPython's after-fork
work, as subprocess's own vfork path), and through os.fork when it has more."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import testlib.integration as it

# Runs in the caller's interpreter; argv[1] is a JSON list of map lines.
CALLER = r"""
import json, os, sys, threading
import idrun

uidmap = json.loads(sys.argv[1])
threaded = sys.argv[2] == "threads"
hooks = []
os.register_at_fork(after_in_child=lambda: hooks.append(os.write(hook_w, b"h")))
hook_r, hook_w = os.pipe()
stop = threading.Event()
if threaded:
    t = threading.Thread(target=stop.wait)
    t.start()


def fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


def children():
    return sorted(
        p for tid in os.listdir("/proc/self/task")
        for p in open(f"/proc/self/task/{tid}/children").read().split())


before = (fds(), children())
out = {}
r = idrun.run(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map"],
              uidmap=uidmap, capture_output=True, text=True)
out["ok"] = [r.returncode, r.stdout, r.stderr]
out["status"] = idrun.run(["sh", "-c", "exit 7"], uidmap=uidmap).returncode
out["signal"] = idrun.run(["sh", "-c", "kill -KILL $$"], uidmap=uidmap).returncode
try:
    idrun.run(["no-such-command-h23c"], uidmap=uidmap)
except idrun.IdrunError as e:
    out["missing"] = [type(e).__name__, e.exit_status]
out["left"] = [before, (fds(), children())]
os.close(hook_w)
out["hooks"] = len(os.read(hook_r, 100))
os.close(hook_r)
stop.set()
print(json.dumps(out))
"""


def _call(uidmap: list[str], threads: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CALLER, json.dumps(uidmap), threads],
                       capture_output=True, text=True, timeout=it.TIMEOUT, cwd="/",
                       stdin=subprocess.DEVNULL)
    if p.returncode and "No module named 'idrun'" in p.stderr:
        it.env_missing(f"{sys.executable} cannot import idrun")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return json.loads(p.stdout)


def _check(out: dict, uid_lines: list[list[int]], threads: str) -> None:
    rc, stdout, stderr = out["ok"]
    assert (rc, stderr) == (0, "")
    ids, maps = stdout.split("\n")[:2], stdout.split("\n", 2)[2]
    assert ids == ["0", "0"]
    parsed = it.parse_map(maps)
    assert parsed[:len(uid_lines)] == uid_lines
    assert out["status"] == 7
    assert out["signal"] == -9
    assert out["missing"] == ["CommandNotFound", 127]
    before, after = out["left"]
    assert before == after, "a descriptor or a child of the caller was left behind"
    # One thread: no after-fork hook runs in idrun's child (CPython's after-fork work
    # is skipped, as for subprocess); with threads, os.fork runs it in each child.
    assert out["hooks"] == (0 if threads == "one" else 3)


@pytest.mark.root
@pytest.mark.parametrize("threads", ["one", "threads"])
def test_api_run_as_root(threads):
    uidmap = ["0:300000:10"]
    out = _call(uidmap, threads)
    _check(out, [[0, 300000, 10]], threads)


@pytest.mark.rootless
@pytest.mark.parametrize("threads", ["one", "threads"])
def test_api_run_rootless(subids, caller, threads):
    """Through the real newuidmap/newgidmap, run by the caller itself."""
    start = subids.uid[0][0]
    out = _call(["0:0:1", "1:1:100"], threads)
    _check(out, [[0, caller.uid, 1], [1, start, 100]], threads)
