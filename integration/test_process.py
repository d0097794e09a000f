"""The process the command runs in: pid, file descriptors, environment,
no_new_privs, and PR_SET_PDEATHSIG when a wrapper stays.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess

import pytest
import testlib.integration as it


def test_exec_mode_keeps_the_launchers_pid(idrun, basic_opts):
    """Without --fork/--pid no wrapper lingers: the command *is* the idrun process."""
    proc = idrun.popen(basic_opts, ["sh", "-c", "echo $$ $PPID"])
    out, err = proc.communicate(timeout=it.TIMEOUT)
    assert proc.returncode == 0, err
    pid, ppid = (int(x) for x in out.split())
    assert pid == proc.pid
    assert ppid == os.getpid()


def test_exec_mode_leaves_no_wrapper(idrun, basic_opts):
    """The launcher turns into a long-running command: no child of it remains (no
    map writer, no wrapper), and the command's namespace has the planned map."""
    proc = idrun.popen(basic_opts, ["sleep", "30"])
    try:
        def comm():
            try:
                with open(f"/proc/{proc.pid}/comm") as f:
                    return f.read().strip()
            except OSError:
                return ""
        assert it.wait_for(lambda: comm() == "sleep", 30), "idrun did not become the command"
        assert it.children_of(proc.pid) == []
        with open(f"/proc/{proc.pid}/uid_map") as f:
            assert it.parse_map(f.read()) == idrun.plan(basic_opts)["uid_map"]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_fork_mode_command_is_child_of_wrapper(idrun, basic_opts):
    proc = idrun.popen(basic_opts + ["--fork"], ["sh", "-c", "echo $$ $PPID"])
    out, err = proc.communicate(timeout=it.TIMEOUT)
    assert proc.returncode == 0, err
    pid, ppid = (int(x) for x in out.split())
    assert pid != proc.pid and ppid == proc.pid


def test_environment_preserved(idrun, basic_opts):
    env = dict(os.environ, IT_TEST_VALUE="a b\tc=d")
    out = idrun.ok(basic_opts, ["sh", "-c", 'printf "%s|%s|%s" "$IT_TEST_VALUE" "$HOME" "$PATH"'],
                   env=env)
    assert out == f"a b\tc=d|{env.get('HOME', '')}|{env.get('PATH', '')}"


def test_working_directory_kept(idrun, basic_opts, shared_dir):
    out = idrun.ok(basic_opts, ["pwd"], cwd=shared_dir)
    assert out.strip() == os.path.realpath(shared_dir)


def test_stdin_passed(idrun, basic_opts):
    assert idrun.ok(basic_opts, ["cat"], input="hello from stdin\n") == "hello from stdin\n"


# ----------------------------------------------------------------------------- fds

def _fds_inside(idrun, opts, open_fds: int) -> dict[int, str]:
    """Open fds 3..3+open_fds-1 on /dev/null in a shell, exec idrun OPTS -- ls -l
    /proc/self/fd, and return {fd: target} as the command sees them (without the
    directory fd ls itself opens)."""
    opens = " ".join(f"{3 + i}</dev/null" for i in range(open_fds))
    argv = idrun.argv(opts, ["ls", "-l", "/proc/self/fd"])
    script = f"exec {opens} {shlex.join(argv)}" if opens else f"exec {shlex.join(argv)}"
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                       timeout=it.TIMEOUT, stdin=subprocess.DEVNULL, cwd="/")
    assert p.returncode == 0, p.stderr
    fds = {}
    for line in p.stdout.splitlines():
        if " -> " not in line:
            continue
        left, target = line.split(" -> ", 1)
        fd = int(left.split()[-1])
        if target.startswith("/proc/") and target.endswith("/fd"):
            continue  # ls's own descriptor of the directory it lists
        fds[fd] = target
    return fds


@pytest.mark.parametrize("mode", [
    pytest.param([], id="exec"), pytest.param(["--fork"], id="fork", marks=pytest.mark.permutation),
    pytest.param(["--pid"], id="pid")])
def test_only_std_fds_inherited(idrun, basic_opts, mode):
    fds = _fds_inside(idrun, basic_opts + mode, open_fds=4)
    assert sorted(fds) == [0, 1, 2], fds


@pytest.mark.parametrize("mode", [
    pytest.param([], id="exec"), pytest.param(["--fork"], id="fork"),
    pytest.param(["--pid"], id="pid", marks=pytest.mark.permutation)])
def test_preserve_fds(idrun, basic_opts, mode):
    fds = _fds_inside(idrun, basic_opts + mode + ["--preserve-fds", "2"], open_fds=4)
    assert sorted(fds) == [0, 1, 2, 3, 4], fds
    assert fds[3] == fds[4] == "/dev/null"


def test_preserve_fds_beyond_open_ones(idrun, basic_opts):
    """--preserve-fds 3 while only fd 3 is open is refused before anything starts, as
    podman refuses it (issue 11): the caller's count and its descriptors disagree."""
    argv = idrun.argv(basic_opts + ["--preserve-fds", "3"], ["true"])
    p = subprocess.run(["sh", "-c", f"exec 3</dev/null {shlex.join(argv)}"],
                       capture_output=True, text=True, timeout=it.TIMEOUT,
                       stdin=subprocess.DEVNULL, cwd="/")
    assert p.returncode == 125, p.stderr
    assert "descriptor 4 is not open" in p.stderr


# ----------------------------------------------------------------------------- no_new_privs

def _no_new_privs(idrun, opts) -> str:
    out = idrun.ok(opts, ["grep", "NoNewPrivs", "/proc/self/status"])
    return out.split()[1]


def test_no_new_privs_option(idrun, basic_opts):
    assert _no_new_privs(idrun, basic_opts) == "0"
    assert _no_new_privs(idrun, basic_opts + ["--no-new-privs"]) == "1"


# ----------------------------------------------------------------------------- PDEATHSIG

def _await_child(proc, pidfile):
    """Host pid and start time of the command (pid written by itself, or found)."""
    def ready():
        return os.path.exists(pidfile) and os.path.getsize(pidfile) > 0 or proc.poll() is not None
    assert it.wait_for(ready, 60), "the command did not start"
    assert proc.poll() is None, proc.communicate(timeout=10)
    with open(pidfile) as f:
        pid = int(f.read().split()[0])
    return pid


@pytest.mark.kernel
@pytest.mark.parametrize("mode", [
    pytest.param(["--fork"], id="fork"), pytest.param(["--pid"], id="pid"),
    pytest.param(["--pid", "--fork"], id="pid-fork", marks=pytest.mark.permutation)])
def test_pdeathsig_kills_command_when_wrapper_is_killed(idrun, basic_opts, shared_dir,
                                                        mode):
    """SIGKILL to the wrapper of `sleep 100`: the command must be gone shortly after."""
    ready = os.path.join(shared_dir, "ready")
    proc = idrun.popen(basic_opts + mode, ["sh", "-c", f'echo $$ > "{ready}"; exec sleep 100'])
    victims: list[tuple[int, int]] = []
    try:
        _await_child(proc, ready)
        def sleepers():
            out = []
            for pid in it.descendants_of(proc.pid):
                st = it.proc_stat(pid)
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                except OSError:
                    continue
                if st and comm == "sleep":
                    out.append((pid, st[2]))
            return out
        assert it.wait_for(lambda: bool(sleepers()), 30), "no sleep under the wrapper"
        victims = sleepers()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        gone = it.wait_for(lambda: not any(it.alive(p, t) for p, t in victims), 10)
        assert gone, f"the command outlived its killed wrapper: {victims}"
    finally:
        for p, t in victims:
            if it.alive(p, t):
                it.kill_quietly(p)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_pdeathsig_survives_id_switch(idrun, shared_dir, caller):
    """The command switches to a non-root id inside (which clears PDEATHSIG unless
    idrun re-arms it): it must still die with its wrapper."""
    if caller.privileged:
        opts = ["--uidmap", "0:300000:65536", "--user", "1000:1000", "--fork"]
    elif it.read_subids("/etc/subuid") and it.read_subids("/etc/subgid"):
        opts = ["--userns", "host", "--user", "1000:1000", "--fork"]
    else:
        opts = ["-c", "--fork"]
    ready = os.path.join(shared_dir, "ready")
    proc = idrun.popen(opts, ["sh", "-c", f'echo $$ > "{ready}"; id -u >> "{ready}"; '
                                          'exec sleep 100'])
    pid = start = None
    try:
        pid = _await_child(proc, ready)
        st = it.proc_stat(pid)
        assert st is not None
        start = st[2]
        # the command's process really switched ids (real, effective, saved, fs)
        plan = idrun.plan([o for o in opts if o != "--fork"])
        host_uid = 301000 if caller.privileged else \
            it.translate_out(plan["uid_map"], plan["user"]["uid"])
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == [str(host_uid)] * 4, uids
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert it.wait_for(lambda: not it.alive(pid, start), 10), \
            "the command outlived its killed wrapper after switching ids"
    finally:
        if pid and start and it.alive(pid, start):
            it.kill_quietly(pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
