"""Every namespace option, proven from inside (root and rootless)."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest

from conftest import idrun_argv, run

pytestmark = pytest.mark.kernel

BASE = ("--uidmap", "0:100000:65536")


def ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def inside_ns(idrun, *opts: str, kind: str) -> str:
    res = idrun(*BASE, *opts, "--", "readlink", f"/proc/self/ns/{kind}")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.parametrize("opt,kind", [("--net", "net"), ("--pid", "pid_for_children"),
                                      ("--mount", "mnt"), ("--uts", "uts"), ("--ipc", "ipc"),
                                      ("--cgroup", "cgroup")])
def test_each_option_creates_its_namespace(idrun, opt, kind):
    inside = inside_ns(idrun, opt, kind="pid" if kind == "pid_for_children" else kind)
    assert inside != ns("pid" if kind == "pid_for_children" else kind)


def test_without_options_only_the_user_namespace_is_new(idrun):
    res = idrun(*BASE, "--", "sh", "-c",
                "for k in user net pid mnt uts ipc cgroup; do readlink /proc/self/ns/$k; done")
    assert res.returncode == 0, res.stderr
    got = res.stdout.split()
    assert got[0] != ns("user")
    assert got[1:] == [ns(k) for k in ("net", "pid", "mnt", "uts", "ipc", "cgroup")]


def test_net_has_only_lo_and_it_is_up(idrun):
    res = idrun(*BASE, "--net", "--", "cat", "/proc/net/dev")
    assert res.returncode == 0, res.stderr
    ifaces = [line.split(":")[0].strip() for line in res.stdout.splitlines()[2:]]
    assert ifaces == ["lo"]
    res = idrun(*BASE, "--net", "--", "cat", "/sys/class/net/lo/flags")
    flags = int(res.stdout.strip(), 16)
    assert flags & 0x1, "lo is not IFF_UP"
    # lo works: a TCP connection to 127.0.0.1 inside.
    code = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1); "
            "c = socket.create_connection(s.getsockname()); print('connected')")
    res = idrun(*BASE, "--net", "--", "/usr/bin/python3", "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "connected"


def test_pid_runs_the_command_as_pid_2_under_an_init(idrun):
    res = idrun(*BASE, "--pid", "--", "sh", "-c", "echo $$ $PPID")
    assert res.returncode == 0, res.stderr
    pid, ppid = res.stdout.split()
    assert pid == "2"
    assert ppid == "1"          # idrun's init; the wrapper is outside the namespace


def test_mount_proc_shows_only_the_new_pid_namespace(idrun):
    res = idrun(*BASE, "--pid", "--mount-proc", "--", "sh", "-c",
                "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; readlink /proc/self")
    assert res.returncode == 0, res.stderr
    words = res.stdout.split()
    assert words[0] == "1"
    # only the pipeline's own processes, numbered from 1 in the new namespace
    assert all(int(w) < 20 for w in words), words
    # the host's /proc is untouched
    assert os.path.exists(f"/proc/{os.getpid()}")


def test_mount_is_private(idrun, world_dir):
    mnt = world_dir / "mnt"
    mnt.mkdir()
    res = idrun(*BASE, "--mount", "--", "sh", "-c",
                f"mount -t tmpfs none {mnt} && touch {mnt}/inside && ls {mnt}; "
                "grep -c ' shared:' /proc/self/mountinfo || true")
    assert res.returncode == 0, res.stderr
    out = res.stdout.split()
    assert out[0] == "inside"
    assert out[1] == "0"        # no shared propagation left
    assert list(mnt.iterdir()) == []      # the tmpfs never reached the host


def test_hostname(idrun):
    res = idrun(*BASE, "--hostname", "in-the-box", "--", "hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "in-the-box"
    assert socket.gethostname() != "in-the-box"


def test_uts_without_hostname_keeps_the_name(idrun):
    res = idrun(*BASE, "--uts", "--", "sh", "-c", "hostname; hostname changed; hostname")
    assert res.returncode == 0, res.stderr
    before, after = res.stdout.split()
    assert before == socket.gethostname() and after == "changed"
    assert socket.gethostname() == before


def test_ipc_namespace_has_no_host_queues(idrun):
    res = idrun(*BASE, "--ipc", "--", "cat", "/proc/sysvipc/msg")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 1     # header only


def test_cgroup_namespace_root(idrun):
    res = idrun(*BASE, "--cgroup", "--", "cat", "/proc/self/cgroup")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("::/")


def test_fork_runs_the_command_as_a_child(idrun):
    res = idrun(*BASE, "--fork", "--", "sh", "-c", "cat /proc/$PPID/comm")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in ("python", "python3", "idrun") or \
        res.stdout.strip().startswith("python")


def test_all_together(idrun):
    res = idrun(*BASE, "--net", "--pid", "--mount-proc", "--uts", "--hostname", "all", "--ipc",
                "--cgroup", "--", "sh", "-c", "echo $$; hostname; id -u; cat /proc/self/uid_map")
    assert res.returncode == 0, res.stderr
    out = res.stdout.split()
    assert out[:3] == ["2", "all", "0"]
    assert out[3:] == ["0", "100000", "65536"]


def test_rootless_namespaces(testuser):
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:1000", "--net", "--pid",
                             "--mount-proc", "--hostname", "rl", "--ipc", "--cgroup", "--", "sh",
                             "-c", "echo $$; hostname; cat /sys/class/net/lo/operstate; "
                             "ls /proc | grep -cE '^[0-9]+$'")
    assert res.returncode == 0, res.stderr
    pid, host, lo_state, nprocs = res.stdout.split()
    assert (pid, host) == ("2", "rl")
    assert lo_state in ("unknown", "up")
    assert int(nprocs) <= 4


def test_rootless_mount_namespace(testuser, shared_dir):
    mnt = shared_dir / "m"
    mnt.mkdir()
    os.chmod(mnt, 0o777)
    res = testuser.idrun_run("-r", "--mount", "--", "sh", "-c",
                             f"mount -t tmpfs none {mnt} && touch {mnt}/x && ls {mnt}")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "x"
    assert list(mnt.iterdir()) == []


def test_pid_wrapper_exit_status(root):
    res = run(idrun_argv() + [*BASE, "--pid", "--", "sh", "-c", "exit 42"])
    assert res.returncode == 42


def test_pid_wrapper_forwards_to_a_handler(root):
    """The wrapper forwards to the init, the init to the command (PID 2)."""
    proc = subprocess.Popen(idrun_argv() + [*BASE, "--pid", "--", "sh", "-c",
                                            'trap "exit 11" USR1; echo ready; '
                                            "while :; do sleep 0.05; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(10)
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 11


def test_pid_with_a_subprocess_before_the_fork(root):
    """Debian 12's pyroute2 (0.7) runs `uname -p` through subprocess when imported. Were
    --net set up before the PID-namespace fork, that process would become PID 1 and, by
    exiting, make every later fork fail (ENOMEM). Set-up happens in the command's own
    process instead; this runs idrun under Debian's python3 and its pyroute2."""
    from conftest import ROOT
    if run(["/usr/bin/python3", "-c", "import pyroute2, click, _prctl"]).returncode:
        pytest.skip("Debian's python3-pyroute2, python3-click and python3-prctl are needed "
                    "(make deps installs them)")
    res = run(["/usr/bin/python3", "-m", "idrun", *BASE, "--pid", "--net", "--mount-proc",
               "--", "sh", "-c", "echo $$; cat /sys/class/net/lo/operstate"],
              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "2"
