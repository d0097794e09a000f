"""The launch engine's fault behaviour, through the Python API on the real kernel (root).

The review of the former native path found: a signal handler that raises right after
the child starts leaks or runs it; bad pass_fds, NUL bytes and '=' in env keys slip
through; threaded callers deadlock when launches fail together; an exception after
the go byte waits for the command instead of killing it. Each has a test here.
"""
from __future__ import annotations

import _signal
import subprocess
import os
import sys
import threading
import time

import pytest

import idrun
from testlib import children_of

pytestmark = pytest.mark.privileged


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


LAUNCH_MODULES = {"idrun.api", "idrun.engine.run", "idrun.engine.steps", "idrun.system.syscalls",
                  "idrun.system.procfs", "idrun.system.preconditions", "idrun.system.diagnose", "idrun.engine.mounts",
                  "idrun.engine.prelaunch", "idrun.engine.failure", "idrun.system.kernelfeatures"}


class Injector:
    """Raise KeyboardInterrupt at the n-th point where CPython could run a signal
    handler: a function entry ('call') or the return of a C function ('c_return'),
    and only while SIGINT is not blocked, as a real handler would."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.pid = os.getpid()
        self.went = False               # the go byte has been written

    def __call__(self, frame, event, arg) -> None:
        if os.getpid() != self.pid:     # a forked child: not what is tested here
            sys.setprofile(None)
            return
        if event not in ("call", "c_return"):
            return
        # Resolving the mapping is pure and owns nothing: count the launch itself.
        if frame.f_globals.get("__name__") not in LAUNCH_MODULES:
            return
        if _signal.SIGINT in _signal.pthread_sigmask(_signal.SIG_BLOCK, ()):
            return
        self.count += 1
        if event == "c_return" and arg is os.write and frame.f_code.co_name == "spawn":
            self.went = True            # engine.spawn writes nothing but the go byte
        if self.count == self.n:
            raise KeyboardInterrupt


def _launch(marker: str, injector: Injector, **kw):
    sys.setprofile(injector)
    try:
        return idrun.spawn(["sh", "-c", f"echo ran >> {marker}"], uidmap=["0:0:1"], **kw)
    except KeyboardInterrupt:
        return None
    finally:
        sys.setprofile(None)


@pytest.mark.parametrize("kw", [{}, {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL},
                                {"pid": True}, {"volumes": ["idmap"]}],
                         ids=["plain", "pipes", "pid", "idmap-volume"])
def test_a_raising_signal_handler_at_every_step_leaves_nothing(root, tmp_path, kw):
    """With an id-mapped volume (issue 19), the ns/user fd of the idmap's throwaway user
    namespace (engine.idmap_userns) was lost when the raise came right after its open."""
    if kw.get("volumes") == ["idmap"]:
        (tmp_path / "vol").mkdir()
        kw = {"volumes": [f"{tmp_path / 'vol'}:/mnt:idmap=uids=0-0-1;gids=0-0-1"]}
    me = os.getpid()
    base_children, base_fds = set(children_of(me)), _fds()
    marker = str(tmp_path / "ran")
    probe = Injector(0)
    proc = _launch(marker, probe, **kw)
    assert proc is not None
    if proc.stdout is not None:
        proc.stdout.close()
    assert proc.wait() == 0
    total = probe.count
    assert probe.went
    assert os.path.exists(marker)
    os.unlink(marker)
    assert total > 50, total
    for n in range(1, total + 1):
        injector = Injector(n)
        proc = _launch(marker, injector, **kw)
        if proc is not None:            # the raise was swallowed (a finalizer): it ran
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()
        left = set(children_of(me)) - base_children
        assert not left, f"raise at step {n}/{total}: processes left {left}"
        assert _fds() == base_fds, f"raise at step {n}/{total}: fds leaked"
        if proc is None and not injector.went:
            assert not os.path.exists(marker), f"raise at step {n}, before the go byte: " \
                                               "the command ran although spawn() raised"
        if os.path.exists(marker):
            os.unlink(marker)


@pytest.mark.parametrize("bad,exc,msg", [
    ({"pass_fds": [-1]}, ValueError, "bad value(s) in fds_to_keep"),
    ({"pass_fds": [2 ** 31]}, ValueError, "bad value(s) in fds_to_keep"),
    ({"pass_fds": [None]}, TypeError, None),
    ({"pass_fds": [987654]}, OSError, "Bad file descriptor"),
    ({"env": {"A=B": "1"}}, ValueError, "illegal environment variable name"),
    ({"env": {"A": "x\0y"}}, ValueError, "embedded null byte"),
    ({"env": {1: "x"}}, TypeError, None),
    ({"cwd": "/tmp\0/x"}, ValueError, "embedded null byte"),
    ({"argv": ["echo", "/srv/data\0/../../etc"]}, ValueError, "embedded null byte"),
    ({"argv": ["echo", 5]}, TypeError, None),
])
def test_bad_arguments_are_refused_as_subprocess_refuses_them(root, bad, exc, msg):
    import subprocess
    argv = bad.pop("argv", ["true"])
    with pytest.raises(exc) as theirs:
        subprocess.run(argv, **bad)
    before = set(children_of(os.getpid()))
    with pytest.raises(exc) as ours:
        idrun.run(argv, uidmap="0:1000:1", **bad)
    assert type(ours.value) is type(theirs.value)
    if msg is not None:
        assert msg in str(ours.value) and msg in str(theirs.value)
    assert set(children_of(os.getpid())) == before


def test_threaded_failing_launches_do_not_deadlock(root, tmp_path):
    """Launches failing in their child (a missing cwd) from many threads at once, beside a
    long-running --fork wrapper: no pipe end may leak into a sibling, or a failing
    launch would wait for an EOF that another child holds."""
    keeper = idrun.spawn(["sleep", "30"], uidmap="0:1000:1", fork=True)
    results: list[object] = []

    def fail_once() -> None:
        try:
            idrun.run(["true"], uidmap="0:1000:1", cwd=str(tmp_path / "missing"))
        except idrun.IdrunError as e:
            results.append(e)
        except BaseException as e:      # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=fail_once) for _ in range(16)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    keeper.kill()
    keeper.wait()
    assert not any(t.is_alive() for t in threads), "a launch hung"
    assert len(results) == 16
    assert all(isinstance(r, idrun.IdrunError) and "cannot change to directory" in str(r)
               for r in results), results
    assert time.monotonic() - t0 < 60


def test_cli_and_api_say_the_same_for_the_same_fault(root, idrun_argv_fixture=None):
    """One explanation table: a refused id switch reads the same from both."""
    import subprocess
    from testlib.unit import idrun_argv
    cli = subprocess.run(idrun_argv() + ["--uidmap", "0:1000:1", "--user", "0:5", "--",
                                         "true"], capture_output=True, text=True)
    with pytest.raises(idrun.IdrunError) as api:
        idrun.run(["true"], uidmap="0:1000:1", user="0:5")
    assert cli.returncode == api.value.exit_status == 125
    assert cli.stderr.strip() == f"idrun: error: {api.value}"


def test_threads_are_refused_before_unshare(root):
    """A threaded process cannot enter a new user namespace: the CLI's main() in one
    refuses with the reason, before anything is created."""
    from testlib.unit import run
    code = ("import sys, threading, time\n"
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "from idrun.cli.launcher import main\n"
            "sys.exit(main(['--uidmap', '0:1000:1', '--', 'true']))\n")
    res = run([sys.executable, "-c", code])
    assert res.returncode == 125
    assert "single-threaded" in res.stderr and "2 threads" in res.stderr


def _sleeping(marker: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if args[0].endswith(b"sleep") and marker.encode() in args:
                out.append(int(name))
    return out


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_api_pid_namespace_job_stops_with_everything_in_it(root, how):
    """spawn(pid=True).terminate() reaches the command (PID 2 under the init), and
    nothing of the namespace survives, even when the wrapper is SIGKILLed."""
    marker = f"{os.getpid() % 1000 + 7000}.{len(how)}"
    proc = idrun.spawn(["sh", "-c", f"sleep {marker} & sleep {marker} & wait"],
                       uidmap="0:0:1", pid=True)
    deadline = time.monotonic() + 20
    while len(_sleeping(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sleeping(marker)) == 2
    getattr(proc, how)()
    rc = proc.wait(timeout=20)
    assert rc == (-15 if how == "terminate" else -9)
    deadline = time.monotonic() + 10
    while _sleeping(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleeping(marker), "processes of the namespace survived"


def _raise_at_every_step(call, cleanup=lambda: None) -> int:
    """``call()`` once to count its steps, then with a KeyboardInterrupt raised at each
    of them in turn: no process and no descriptor may be left behind by any."""
    me = os.getpid()
    base_children, base_fds = set(children_of(me)), _fds()
    probe = Injector(0)
    sys.setprofile(probe)
    try:
        call()
    finally:
        sys.setprofile(None)
    cleanup()
    assert set(children_of(me)) == base_children and _fds() == base_fds
    for n in range(1, probe.count + 1):
        sys.setprofile(Injector(n))
        try:
            call()
        except KeyboardInterrupt:
            pass
        finally:
            sys.setprofile(None)
        cleanup()                       # what the call handed over, if it got so far
        left = set(children_of(me)) - base_children
        assert not left, f"raise at step {n}/{probe.count}: processes left {left}"
        assert _fds() == base_fds, f"raise at step {n}/{probe.count}: fds leaked"
    return probe.count


def test_a_raising_signal_handler_in_verify_leaves_nothing(root):
    """--verify's throwaway namespace (engine.throwaway_userns) under the same injector."""
    from idrun.engine import run as engine
    plan = idrun.plan_for(["0:100000:65536"], rootless=False)
    assert _raise_at_every_step(lambda: engine.verify(plan)) > 30


def test_a_raising_signal_handler_in_an_idmaps_namespace_leaves_nothing(root):
    """engine.idmap_userns hands its ns/user fd over to ``keep`` with signals blocked:
    after a raise at any step the fd is either handed over or closed."""
    from idrun.engine import run as engine
    from idrun.mapping.ranges import Line
    one = (Line(0, 0x10000, 1),)
    kept: list[int] = []

    def cleanup() -> None:
        for fd in kept:
            assert os.readlink(f"/proc/self/fd/{fd}").startswith("user:[")
            os.close(fd)
        kept.clear()
    assert _raise_at_every_step(lambda: engine.idmap_userns(one, one, kept.append),
                                cleanup) > 30


def test_a_raising_signal_handler_in_check_idmap_probe_leaves_nothing(root):
    """idrun check's id-mapped mount probe (kernelfeatures.idmap_by_fs) uses the same
    throwaway namespace and closes it whatever happens."""
    from idrun.engine import run as engine
    from idrun.system import kernelfeatures
    if kernelfeatures.lacking_for_idmap():
        pytest.skip("this kernel cannot make id-mapped mounts")
    assert _raise_at_every_step(lambda: kernelfeatures.idmap_by_fs(engine.idmap_userns)) > 30


@pytest.mark.parametrize("how", ["idmap", "verify"])
def test_a_throwaway_namespace_that_cannot_unshare_says_why(root, how):
    """The errno of a refused unshare reaches the user through the failure report: the
    former helper of id-mapped mounts said only "the helper process failed to unshare".
    Inside a user namespace (idrun -r) whose user.max_user_namespaces is 0, a real
    unshare(CLONE_NEWUSER) fails with ENOSPC."""
    from testlib.unit import run
    call = ("idmap_userns(one, one, print)" if how == "idmap" else
            "verify(idrun.plan_for(['0:0:1']))")
    code = ("import sys, idrun\n"
            "from idrun.engine.run import idmap_userns, verify\n"
            "from idrun.mapping.ranges import Line\n"
            "one = (Line(0, 0, 1),)\n"
            f"try:\n    {call}\n"
            "except idrun.IdrunError as e:\n    print(e); sys.exit(3)\n")
    res = run([sys.executable, "-m", "idrun", "-r", "--", "sh", "-c",
               'echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -c "$1"',
               sys.executable, code])
    assert res.returncode == 3, res
    assert "user namespaces are disabled (user.max_user_namespaces = 0)" in res.stdout, res
