"""Exit statuses and signals (podman's convention).

The command's own status; 126 not executable; 127 not found; 128+N when signal
N killed it; 125 for idrun's own errors. Without a wrapper idrun *becomes* the
command, so a death by signal reaches the caller as such (a shell shows 128+N);
with --fork or --pid the wrapper exits 128+N. The wrapper forwards SIGINT,
SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to the command.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import testlib.integration as it

WRAPPERS = {"exec": [], "fork": ["--fork"], "pid": ["--pid"], "pid-fork": ["--pid", "--fork"]}


STATUS_CASES = [(m, s) for s in (0, 7, 255) for m in WRAPPERS]
STATUS_CORE = {("exec", 0), ("exec", 7), ("fork", 7), ("pid", 7), ("pid-fork", 255)}


@pytest.mark.parametrize("mode,status", [
    pytest.param(m, s, id=f"{m}-{s}",
                 marks=() if (m, s) in STATUS_CORE else pytest.mark.permutation)
    for m, s in STATUS_CASES])
def test_command_status(idrun, basic_opts, mode, status):
    p = idrun.run(basic_opts + WRAPPERS[mode], ["sh", "-c", f"exit {status}"])
    assert p.returncode == status, p.stderr


@pytest.mark.parametrize("mode", ["exec", "pid",
                                  pytest.param("fork", marks=pytest.mark.permutation),
                                  pytest.param("pid-fork", marks=pytest.mark.permutation)])
def test_not_executable_126(idrun, basic_opts, shared_dir, mode):
    path = os.path.join(shared_dir, "not-executable")
    with open(path, "w") as f:
        f.write("#!/bin/sh\ntouch ran\n")
    os.chmod(path, 0o644)
    p = idrun.run(basic_opts + WRAPPERS[mode], [path])
    assert p.returncode == 126, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.strip()
    assert "not executable" in p.stderr, p.stderr


def test_directory_is_not_executable_126(idrun, basic_opts, shared_dir):
    p = idrun.run(basic_opts, [shared_dir])
    assert p.returncode == 126, p.stderr


@pytest.mark.parametrize("mode,command", [
    pytest.param(m, c, id=f"{m}-{'path' if c.startswith('/') else 'name'}",
                 marks=() if (m, c[0]) in {("exec", "i"), ("fork", "/"), ("pid", "i")}
                 else pytest.mark.permutation)
    for m in WRAPPERS for c in ("idrun-no-such-command-x", "/nonexistent/idrun-x")])
def test_not_found_127(idrun, basic_opts, mode, command):
    p = idrun.run(basic_opts + WRAPPERS[mode], [command])
    assert p.returncode == 127, p.stderr
    assert "Traceback" not in p.stderr and command in p.stderr
    assert p.stderr.count("\n") == 1, p.stderr   # one line
    if not command.startswith("/"):
        assert "not found" in p.stderr, p.stderr    # (a path: "no such file")


@pytest.mark.root
def test_root_exec_refused_inside_126(idrun, shared_dir):
    """Found and executable for root outside, but not for the container root it runs
    as (host uid 100000), behind a directory only the host's root may enter."""
    d = os.path.join(shared_dir, "private")
    os.mkdir(d, 0o700)
    path = os.path.join(d, "tool")
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(path, 0o755)
    p = idrun.run(["--uidmap", "0:100000:1000"], [path])
    assert p.returncode == 126, p.stderr
    assert "cannot execute" in p.stderr, p.stderr


def test_bad_input_125(idrun, shared_dir):
    marker = os.path.join(shared_dir, "ran")
    it.assert_refused(idrun.run(["--uidmap", "0:x:1"], ["touch", marker]), marker)


@pytest.mark.kernel
@pytest.mark.parametrize("mode,sig", [
    pytest.param(m, s, id=f"{m}-{s.name}",
                 marks=() if (m, s) in {("exec", signal.SIGTERM), ("fork", signal.SIGTERM),
                                        ("fork", signal.SIGKILL)} else pytest.mark.permutation)
    for m in ("exec", "fork") for s in (signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1)])
def test_killed_by_signal(idrun, basic_opts, mode, sig):
    """`sh -c 'kill -SIG $$'` gives 128+SIG; the wrapper (--fork) exits with it."""
    p = idrun.run(basic_opts + WRAPPERS[mode], ["sh", "-c", f"kill -{int(sig)} $$; sleep 5"])
    assert it.status_of(p.returncode) == 128 + sig, (p.returncode, p.stderr)
    if mode == "exec":
        assert p.returncode == -sig, "idrun became the command, so the death is its own"
    if mode == "fork":
        assert p.returncode == 128 + sig, "the wrapper should exit with 128+N"


@pytest.mark.parametrize("mode,sig", [
    pytest.param(m, s, id=f"{m}-{s.name}",
                 marks=() if m == "pid" else pytest.mark.permutation)
    for m in ("pid", "pid-fork") for s in (signal.SIGKILL, signal.SIGTERM)])
def test_pid_command_killed_from_outside(idrun, basic_opts, shared_dir, mode, sig):
    """With --pid the command is PID 2 under idrun's init, so it dies of any signal it
    has no handler for, as outside a PID namespace; the init exits with the
    command's status and the wrapper reports 128+N."""
    ready = os.path.join(shared_dir, "ready")
    proc = idrun.popen(basic_opts + WRAPPERS[mode],
                       ["sh", "-c", f'touch "{ready}"; exec sleep 60'])
    try:
        assert it.wait_for(lambda: os.path.exists(ready), 60), proc.stderr.read() \
            if proc.poll() is not None else "command never started"
        def sleeper():
            return [p for p in it.descendants_of(proc.pid) if _comm(p) == "sleep"]
        assert it.wait_for(lambda: sleeper(), 30), "no sleep process under idrun"
        target = sleeper()[0]
        os.kill(target, sig)
        rc = proc.wait(timeout=30)
        assert rc == 128 + sig, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


TRAP_SCRIPT = ('trap \'echo "$1" > "$2"; exit 42\' {sig}; touch "$3"; '
               'while :; do sleep 0.1; done')


FORWARDED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH]
FORWARD_CASES = ([("fork", s) for s in FORWARDED]
                 + [(m, s) for m in ("pid", "pid-fork") for s in (signal.SIGTERM, signal.SIGUSR1)])


FORWARD_CORE = {("fork", signal.SIGTERM), ("fork", signal.SIGINT), ("fork", signal.SIGUSR1),
                ("pid", signal.SIGTERM), ("pid-fork", signal.SIGUSR1)}


@pytest.mark.parametrize("mode,sig", [
    pytest.param(m, s, id=f"{m}-{signal.Signals(s).name}",
                 marks=() if (m, s) in FORWARD_CORE else pytest.mark.permutation)
    for m, s in FORWARD_CASES])
def test_signal_forwarded(idrun, basic_opts, shared_dir, mode, sig):
    """idrun (the wrapper) receives a signal; the command's trap runs and exits 42."""
    name = signal.Signals(sig).name[3:]
    got, ready = os.path.join(shared_dir, "got"), os.path.join(shared_dir, "ready")
    proc = idrun.popen(basic_opts + WRAPPERS[mode],
                       ["sh", "-c", TRAP_SCRIPT.format(sig=name), "sh", name, got, ready])
    try:
        if not it.wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, 60):
            pytest.fail("the command did not start within 60 s")
        assert proc.poll() is None, proc.communicate(timeout=10)
        time.sleep(0.2)  # let the shell reach its loop
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=30)
        out, err = proc.communicate(timeout=10)
        assert os.path.exists(got), f"{name} not delivered to the command (exit {rc}): {err}"
        with open(got) as f:
            assert f.read().strip() == name
        assert rc == 42, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_forwarded_term_kills_untrapped_child(idrun, basic_opts, shared_dir):
    """SIGTERM to the --fork wrapper of an untrapped `sleep`: the child dies of it and
    the wrapper reports 143 (with --pid too: see test_pid_command_killed_from_outside)."""
    ready = os.path.join(shared_dir, "ready")
    proc = idrun.popen(basic_opts + ["--fork"], ["sh", "-c", f'touch "{ready}"; exec sleep 60'])
    try:
        assert it.wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, 60)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=30)
        assert rc == 143, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
