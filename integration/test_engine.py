"""The launch engine on the real kernel: --pid that can be stopped (an init is PID 1, the
command PID 2), job control in a real pseudo-terminal, --die-with-parent, and
`idrun map --verify` / `--dry-run --verify` (maps taken by a throwaway namespace)."""
from __future__ import annotations

import os
import pty
import random
import select
import signal
import subprocess
import time

import pytest

from testlib import idrun_json
import testlib.integration as it


def _launch_seconds(idrun, basic_opts) -> float:
    t0 = time.monotonic()
    idrun.ok(basic_opts + ["--pid"], ["true"])
    return time.monotonic() - t0


def _marker() -> str:
    return f"{random.randint(100000, 999999)}.{random.randint(1, 9)}"


@pytest.mark.kernel
def test_timeout_stops_a_pid_namespace_job(idrun, basic_opts):
    """`timeout 2 idrun --pid -- sleep 30` returns 124 within 3 s (the init forwards
    SIGTERM to the command, which is not PID 1 and so dies of it). Under QEMU's TCG a
    launch alone takes seconds, so the bound adds twice this machine's launch time."""
    slack = 2 * _launch_seconds(idrun, basic_opts)
    t0 = time.monotonic()
    p = subprocess.run(["timeout", "2"] + idrun.argv(basic_opts + ["--pid"], ["sleep", "30"]),
                       capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 124, p.stderr
    assert took < 3.0 + slack, f"took {took:.1f} s (a launch takes {slack / 2:.1f} s here)"


@pytest.mark.kernel
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signal_to_idrun_leaves_nothing_in_the_namespace(idrun, basic_opts, sig):
    """`idrun --pid -- sh -c 'sleep & sleep & wait'`: after a signal to idrun itself
    (SIGKILL included) no process of the namespace survives."""
    m1, m2 = _marker(), _marker()

    def sleeping() -> list[int]:
        return it.procs_with(m1, "sleep") + it.procs_with(m2, "sleep")
    proc = idrun.popen(basic_opts + ["--pid"],
                       ["sh", "-c", f"sleep {m1} & sleep {m2} & echo started; wait"])
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
        assert it.wait_for(lambda: len(sleeping()) == 2, 20)
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=20)
        assert rc in (128 + sig, -sig), proc.stderr.read()
        assert it.wait_for(lambda: not sleeping(), 10), \
            "processes of the namespace survived"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in sleeping():
            it.kill_quietly(pid)


def test_init_reaps_orphans_and_exits_with_the_command(idrun, basic_opts):
    """An orphan reparented to the init is reaped (no zombie); the command's exit status
    is the launcher's, and when the command exits the rest of the namespace ends."""
    script = ("sleep 0.1 & exec sh -c 'sleep 0.5; "
              "ps -o stat= -p $(pgrep -d, sleep) 2>/dev/null; exit 9'")
    p = idrun.run(basic_opts + ["--pid", "--mount-proc"], ["sh", "-c", script])
    assert p.returncode == 9, p.stderr
    assert "Z" not in p.stdout


class Pty:
    """A command on a real pseudo-terminal: type into it, wait for what it prints.
    ``patience`` is added to every wait (a launch under QEMU's TCG takes seconds)."""

    def __init__(self, argv: list[str], patience: float = 0.0) -> None:
        self.patience = patience
        self.pid, self.fd = pty.fork()
        if self.pid == 0:       # pragma: no cover - the child execs at once
            try:
                os.execvp(argv[0], argv)   # IDRUN may be "python3 -m idrun"
            finally:
                os._exit(127)
        self.out = b""
        self.status: int | None = None

    def expect(self, pattern: bytes, timeout: float = 20.0) -> bool:
        start, end = len(self.out), time.monotonic() + timeout + self.patience
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    return pattern in self.out[start:]
                self.out += data
                if pattern in self.out[start:]:
                    return True
        return False

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20.0) -> int | None:
        """The exit code; None (after killing it) when it did not end in time."""
        if self.status is not None:
            return self.status
        end = time.monotonic() + timeout + (self.patience if timeout > 1 else 0)
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self.expect(b"\0\0never", 0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.status = -signal.SIGKILL
        return None


@pytest.mark.kernel
def test_ctrl_c_in_a_pty_gives_130_at_once(idrun, basic_opts):
    slack = 2 * _launch_seconds(idrun, basic_opts)
    term = Pty(idrun.argv(basic_opts + ["--pid"], ["sh", "-c", "echo ready; exec sleep 30"]),
               patience=10 * slack)
    assert term.expect(b"ready"), term.out
    t0 = time.monotonic()
    term.send(b"\x03")
    rc = term.wait()
    assert rc == 130, term.out
    assert time.monotonic() - t0 < 3 + slack


@pytest.mark.kernel
@pytest.mark.parametrize("pid", [False, True], ids=["plain", "pid"])
def test_job_control_of_an_interactive_shell(idrun, basic_opts, pid):
    """Ctrl-Z, jobs, fg and Ctrl-C in bash -i inside, on a real pty."""
    argv = idrun.argv(basic_opts + (["--pid"] if pid else []),
                      ["bash", "--norc", "--noprofile", "-i"])
    term = Pty(argv, patience=20 * _launch_seconds(idrun, basic_opts))
    try:
        term.send(b"PS1='P''> '\n")
        assert term.expect(b"P> "), term.out
        term.send(b"sleep 30\n")
        time.sleep(0.5)
        term.send(b"\x1a")
        assert term.expect(b"Stopped"), term.out
        term.send(b"fg\n")
        assert term.expect(b"sleep 30"), term.out
        time.sleep(0.3)
        term.send(b"\x03")
        assert term.expect(b"P> "), term.out
        term.send(b"echo status=$?\n")
        assert term.expect(b"status=130"), term.out
        term.send(b"exit 5\n")
        assert term.wait() == 5, term.out
    finally:
        term.wait(0.1)


def test_die_with_parent(idrun, basic_opts):
    """--die-with-parent: when the process that started idrun dies, the command dies."""
    m = _marker()
    parent = subprocess.Popen(["sh", "-c", " ".join(
        [*(f"'{a}'" for a in idrun.argv(basic_opts + ["--die-with-parent"], ["sleep", m])),
         "& wait"])])
    try:
        assert it.wait_for(lambda: bool(it.procs_with(m, "sleep")), 20), "command never started"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert it.wait_for(lambda: not it.procs_with(m, "sleep"), 10), \
            "the command outlived its parent"
    finally:
        for pid in it.procs_with(m, "sleep"):
            it.kill_quietly(pid)


@pytest.mark.kernel
def test_map_verify_reads_back_what_the_kernel_took(idrun, basic_opts, caller):
    before = set(it.children_of(os.getpid()))
    p = idrun.run(["map", "--verify", "--json", *basic_opts], None)
    assert p.returncode == 0, p.stderr
    plan = idrun_json(p.stdout)
    v = plan["verified"]
    assert v["uid_map"] == plan["uid_map"]
    assert v["gid_map"] == plan["gid_map"]
    assert v["kernel"] == os.uname().release
    assert v["setgroups"] == plan["setgroups"]
    text = idrun.run(["map", "--verify", *basic_opts], None)
    assert text.returncode == 0 and "verified on Linux" in text.stdout, text.stderr
    assert set(it.children_of(os.getpid())) <= before


@pytest.mark.kernel
def test_dry_run_verify_starts_nothing(idrun, basic_opts, shared_dir):
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(basic_opts + ["--dry-run", "--verify"], ["touch", marker])
    assert p.returncode == 0, p.stderr
    assert "verified on Linux" in p.stdout
    assert not os.path.exists(marker)


def test_verify_refuses_a_simulated_caller(idrun):
    p = idrun.run(["map", "--verify", "--rootless", "--caller", "1000:1000",
                   "--uidmap", "0:0:1"], None)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "--verify" in p.stderr


def test_verify_without_dry_run_is_refused(idrun, basic_opts, shared_dir):
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(basic_opts + ["--verify"], ["touch", marker])
    assert p.returncode == 125 and "--dry-run" in p.stderr
    assert not os.path.exists(marker)


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_map_verify_through_newuidmap(idrun, subids):
    """Rootless, the throwaway namespace gets its maps from the real newuidmap and
    newgidmap, exactly as a launch would; the kernel's read-back is the plan."""
    before = set(it.children_of(os.getpid()))
    p = idrun.run(["map", "--verify", "--json", "--uidmap", "0:0:1", "--uidmap", "1:1:1000"],
                  None)
    assert p.returncode == 0, p.stderr
    plan = idrun_json(p.stdout)
    assert plan["writer"]["uid"] == "helper"
    assert plan["verified"]["uid_map"] == plan["uid_map"]
    assert plan["verified"]["gid_map"] == plan["gid_map"]
    assert sum(n for _, _, n in plan["verified"]["uid_map"]) == 1001
    assert set(it.children_of(os.getpid())) <= before
