"""Faults on the real kernel (hardening issue): no_new_privs, an exhausted
max_user_namespaces, the launcher killed at any step, many launches at once,
and an environment that tries to mislead the sub-id lookup or the helper path.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid

import pytest
import testlib.integration as it


def _setpriv() -> str:
    path = shutil.which("setpriv") or ("/usr/bin/setpriv" if os.path.exists("/usr/bin/setpriv")
                                       else None)
    if path is None:
        pytest.skip("setpriv(1) (util-linux) is not installed")
    return path


# ----------------------------------------------------------------------------- no_new_privs

@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_no_new_privs_refused_with_reason(idrun, subids, shared_dir):
    """With no_new_privs set, setuid newuidmap cannot work: refused and explained."""
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["--userns", "host"], ["touch", marker], wrap=[_setpriv(), "--no-new-privs"])
    it.assert_refused(p, marker)
    assert "no_new_privs" in p.stderr.lower().replace("nonewprivs", "no_new_privs"), p.stderr


@pytest.mark.rootless
def test_rootless_no_new_privs_own_id_still_works(idrun, caller):
    out = idrun.ok(["-r"], ["id", "-u"], wrap=[_setpriv(), "--no-new-privs"])
    assert out.strip() == "0"


@pytest.mark.root
def test_root_no_new_privs_direct_writes_work(idrun):
    view = idrun.inside(["--uidmap", "0:100000:65536"], wrap=[_setpriv(), "--no-new-privs"])
    assert view.uid_map == [[0, 100000, 65536]]


# ----------------------------------------------------------------------------- max_user_namespaces

@pytest.mark.kernel
@pytest.mark.parametrize("limit,expect", [(0, "disabled"), (1, "limit on user namespaces")],
                         ids=["limit-0", "limit-1"])
def test_max_user_namespaces_exhausted(idrun, shared_dir, limit, expect):
    """Inside a namespace whose user.max_user_namespaces is 0, a new one fails with
    ENOSPC; with 1, the second level below it does. idrun says which (exit 125, one
    line), and the command does not run. (The outer namespaces are `-r`, so idrun
    itself stays reachable for the caller's ids.)"""
    marker = os.path.join(shared_dir, "ran")
    inner = idrun.argv(["-r"], ["touch", marker])
    if limit == 1:
        inner = idrun.argv(["-r"], inner)
    script = (f'echo {limit} > /proc/sys/user/max_user_namespaces || exit 99; exec "$@"')
    p = idrun.run(["-r"], ["sh", "-c", script, "sh", *inner])
    if p.returncode == 99:
        pytest.skip(f"this kernel does not let a namespace lower its own limit: {p.stderr}")
    it.assert_refused(p, marker)
    assert "max_user_namespaces" in p.stderr, p.stderr
    assert "No space left on device" in p.stderr and expect in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr


@pytest.mark.kernel
@pytest.mark.root
def test_root_kernel_refusal_fails_closed(idrun, shared_dir):
    """Mapping host uid 0 needs CAP_SETFCAP (Linux 5.12 and later): without it the map
    write fails, the command never runs, the message names the file, and no process
    remains."""
    capsh = shutil.which("capsh") or ("/usr/sbin/capsh" if os.path.exists("/usr/sbin/capsh")
                                      else None)
    if capsh is None:
        it.env_missing("capsh (libcap2-bin) is not installed")
    marker = os.path.join(shared_dir, "must-not-exist")
    tag = f"idrun-failclosed-{uuid.uuid4().hex}"
    inner = shlex.join(idrun.argv(["--uidmap", "0:0:1"], ["touch", marker]))
    p = subprocess.run([capsh, "--drop=cap_setfcap", "--", "-c", f"{inner} # {tag}"],
                       capture_output=True, text=True, timeout=it.TIMEOUT,
                       stdin=subprocess.DEVNULL, cwd="/")
    it.assert_refused(p, marker)
    assert "uid_map" in p.stderr and "Operation not permitted" in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert it.procs_with(tag) == []


# ----------------------------------------------------------------------------- killed at any step

@pytest.mark.parametrize("mode", [
    pytest.param([], id="exec"), pytest.param(["--fork"], id="fork"),
    pytest.param(["--pid"], id="pid", marks=pytest.mark.permutation)])
def test_sigkill_at_any_step_leaves_nothing(idrun, basic_opts, mode):
    """SIGKILL the launcher after 0 … 800 ms, i.e. before unshare, while the maps are
    written, and after the exec: nothing with this run's token survives it."""
    delays = [0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8]
    leftovers = []
    for delay in delays:
        token = f"idrun-it-{uuid.uuid4().hex}"
        proc = idrun.popen(basic_opts + mode,
                           ["sh", "-c", 'exec sleep 60', token],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)

        def survivors():
            return it.procs_with(token)
        if not it.wait_for(lambda: not survivors(), 10):
            left = survivors()
            leftovers.append((delay, left))
            for pid in left:
                it.kill_quietly(pid)
    assert not leftovers, f"processes outlived a SIGKILLed launcher (delay, pids): {leftovers}"


def test_sigkill_leaves_no_sleep_child(idrun, basic_opts, shared_dir):
    """After the exec the command has the launcher's pid: SIGKILL ends it, and a
    --fork child does not survive its wrapper either (PDEATHSIG)."""
    ready = os.path.join(shared_dir, "ready")
    proc = idrun.popen(basic_opts + ["--fork"], ["sh", "-c", f'echo $$ > "{ready}"; exec sleep 60'])
    try:
        assert it.wait_for(lambda: os.path.exists(ready) and os.path.getsize(ready) > 0, 60)
        with open(ready) as f:
            child = int(f.read())
        start = it.proc_stat(child)[2]
        proc.kill()
        proc.wait(timeout=30)
        assert it.wait_for(lambda: not it.alive(child, start), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


# ----------------------------------------------------------------------------- concurrency

N_PARALLEL = int(os.environ.get("IDRUN_IT_PARALLEL", "100"))


def _parallel(idrun, opts_list):
    procs = [idrun.popen(opts, ["cat", "/proc/self/uid_map"]) for opts in opts_list]
    results = []
    deadline = time.monotonic() + it.TIMEOUT * 2
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a parallel launch hung")
        results.append((p.returncode, out, err))
    # no zombie and no child of ours is left behind
    assert it.children_of(os.getpid()) == [], "children left after the parallel launches"
    return results


@pytest.mark.root
def test_root_parallel_launches_see_their_own_maps(idrun):
    opts_list = [["--uidmap", f"0:{100000 + 1000 * i}:1000"] for i in range(N_PARALLEL)]
    for i, (rc, out, err) in enumerate(_parallel(idrun, opts_list)):
        assert rc == 0, err
        assert it.parse_map(out) == [[0, 100000 + 1000 * i, 1000]]


@pytest.mark.rootless
def test_rootless_parallel_launches_see_their_own_maps(idrun, subids):
    n = min(N_PARALLEL, subids.common_total // 50)
    opts_list = []
    for i in range(n):
        opts_list.append(["--uidmap", f"0:{1 + 50 * i}:50"] if i % 3 else ["-r"])
    for i, (rc, out, err) in enumerate(_parallel(idrun, opts_list)):
        assert rc == 0, err
        exp = subids.compose("uid", [[0, 1 + 50 * i, 50]]) if i % 3 else [[0, os.geteuid(), 1]]
        assert it.parse_map(out) == exp


# ----------------------------------------------------------------------------- misleading environment

@pytest.mark.rootless
def test_rootless_user_variable_not_trusted(idrun, subids):
    env = dict(os.environ, USER="root", LOGNAME="root")
    honest = idrun.plan(["--userns", "host"])
    assert idrun.plan(["--userns", "host"], env=env)["uid_map"] == honest["uid_map"]
    view = idrun.inside(["--userns", "host"], env=env)
    assert view.uid_map == honest["uid_map"]


@pytest.mark.rootless
def test_rootless_helper_not_taken_from_path(idrun, subids, shared_dir):
    """A newuidmap/newgidmap early in $PATH is never run: the helpers come from the
    system directories."""
    fake = os.path.join(shared_dir, "bin")
    os.mkdir(fake)
    marker = os.path.join(shared_dir, "fake-helper-ran")
    for name in ("newuidmap", "newgidmap"):
        path = os.path.join(fake, name)
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\ntouch "{marker}"\nexit 1\n')
        os.chmod(path, 0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ.get('PATH', it.SYSTEM_PATH)}")
    view = idrun.inside(["--userns", "host"], env=env)
    assert not os.path.exists(marker), "idrun ran a helper found through $PATH"
    assert view.uid_map == idrun.plan(["--userns", "host"])["uid_map"]
