"""The launcher as root, on the real kernel: maps, ids, ownership, exit statuses, signals,
descriptors, fail-closed behaviour."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import children_of, idrun_argv, pids_with_marker, run

pytestmark = pytest.mark.kernel


def maps_inside(out: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in out.strip().splitlines()]


# One engine, one kind of map writer (a forked process in the parent namespace).
writers = pytest.mark.parametrize("writer_env", [{}], ids=["writer"])


def env_with(extra: dict) -> dict:
    return {**os.environ, **extra}


@writers
def test_single_id_is_root_inside(idrun, writer_env):
    res = idrun("--uidmap", "0:1000:1", "--", "sh", "-c",
                "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups",
                env=env_with(writer_env))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == ["0", "0"]
    assert maps_inside("\n".join(lines[2:4])) == [[0, 1000, 1], [0, 1000, 1]]
    assert lines[4] == "allow"          # root leaves setgroups alone by default


def test_id_output_says_uid_0(idrun):
    res = idrun("--uidmap", "0:1000:1", "--", "id")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("uid=0(root) gid=0(root)")


@writers
def test_range_map_and_user_switch(idrun, writer_env):
    res = idrun("--uidmap", "0:100000:65536", "--gidmap", "0:200000:65536", "--user", "1000:2000",
                "--", "sh", "-c", "id -u; id -g; id -G; cat /proc/self/uid_map /proc/self/gid_map",
                env=env_with(writer_env))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[:3] == ["1000", "2000", "2000"]      # supplementary groups reset to none
    assert maps_inside("\n".join(out[3:])) == [[0, 100000, 65536], [0, 200000, 65536]]


def test_multi_line_map(idrun):
    res = idrun("--uidmap", "0:1000:1", "--uidmap", "1:100000:1000", "--uidmap", "5000:300000:10",
                "--", "cat", "/proc/self/uid_map")
    assert res.returncode == 0, res.stderr
    assert maps_inside(res.stdout) == [[0, 1000, 1], [1, 100000, 1000], [5000, 300000, 10]]


def test_file_created_inside_is_owned_by_mapped_host_ids(idrun, world_dir):
    target = world_dir / "made-inside"
    res = idrun("--uidmap", "0:100000:65536", "--gidmap", "0:200000:65536", "--user", "7:8",
                "--", "touch", str(target))
    assert res.returncode == 0, res.stderr
    st = target.stat()
    assert (st.st_uid, st.st_gid) == (100007, 200008)


def test_file_owned_by_unmapped_host_id_shows_as_overflow(idrun, world_dir):
    f = world_dir / "owned-by-root"
    f.write_text("x")
    res = idrun("--uidmap", "0:1000:1", "--", "stat", "-c", "%u:%g", str(f))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "65534:65534"


def test_group_add_and_setgroups_deny(idrun):
    res = idrun("--uidmap", "0:100000:1000", "--group-add", "10", "--group-add", "20",
                "--", "id", "-G")
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == ["0", "10", "20"]
    res = idrun("--uidmap", "0:100000:1000", "--setgroups", "deny", "--", "cat",
                "/proc/self/setgroups")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "deny"


@pytest.mark.parametrize("script,status", [("exit 0", 0), ("exit 1", 1), ("exit 3", 3),
                                           ("exit 124", 124)])
def test_exit_status_is_the_commands(idrun, script, status):
    res = idrun("--uidmap", "0:1000:1", "--", "sh", "-c", script)
    assert res.returncode == status, res.stderr


def test_not_found_is_127_and_nothing_starts(idrun):
    res = idrun("--uidmap", "0:1000:1", "--", "no-such-command-xyz")
    assert res.returncode == 127
    assert "no-such-command-xyz" in res.stderr and "not found" in res.stderr
    assert res.stderr.count("\n") == 1      # one line


def test_not_executable_is_126(idrun, world_dir):
    f = world_dir / "script.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o644)
    res = idrun("--uidmap", "0:1000:1", "--", str(f))
    assert res.returncode == 126
    assert "not executable" in res.stderr


def test_exec_refused_inside_is_126(idrun, world_dir):
    """Found and executable for root, but not for the container user it runs as."""
    d = world_dir / "private"
    d.mkdir(mode=0o700)
    f = d / "tool"
    f.write_text("#!/bin/sh\necho hi\n")
    f.chmod(0o755)
    res = idrun("--uidmap", "0:100000:1000", "--", str(f))
    assert res.returncode == 126, res.stderr
    assert "cannot execute" in res.stderr


def test_killed_by_signal_without_wrapper(idrun):
    """idrun becomes the command, so the signal death is its own."""
    res = idrun("--uidmap", "0:1000:1", "--", "sh", "-c", "kill -TERM $$")
    assert res.returncode == -signal.SIGTERM


def test_no_wrapper_remains(root):
    """Without --fork/--pid the launcher *is* the command: same pid, no child left."""
    proc = subprocess.Popen(idrun_argv() + ["--uidmap", "0:1000:1", "--", "sleep", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            time.sleep(0.02)
        else:
            pytest.fail("idrun did not become the command")
        assert children_of(proc.pid) == []
        with open(f"/proc/{proc.pid}/uid_map") as f:
            assert maps_inside(f.read()) == [[0, 1000, 1]]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", ["INT", "TERM", "HUP", "QUIT", "USR1", "USR2", "WINCH"])
def test_wrapper_forwards_signals(root, sig):
    script = (f'trap "echo got-{sig}; exit 7" {sig}; echo ready; '
              'while :; do sleep 0.05; done')
    proc = subprocess.Popen(idrun_argv() + ["--uidmap", "0:1000:1", "--fork", "--", "sh", "-c",
                                            script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(getattr(signal, f"SIG{sig}"))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert f"got-{sig}" in out, err
    assert proc.returncode == 7


def test_wrapper_reports_signal_death_as_128_plus_n(idrun):
    res = idrun("--uidmap", "0:1000:1", "--fork", "--", "sh", "-c", "kill -KILL $$")
    assert res.returncode == 128 + signal.SIGKILL
    res = idrun("--uidmap", "0:1000:1", "--fork", "--", "sh", "-c", "exit 5")
    assert res.returncode == 5


def test_child_dies_with_killed_wrapper(root):
    """PDEATHSIG, re-armed after the id switch: killing the wrapper kills the command."""
    marker = f"idrun-orphan-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(idrun_argv() + ["--uidmap", "0:100000:1000", "--user", "5:5", "--fork",
                                            "--", "sh", "-c", f"sleep 60; : {marker}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    child: list[int] = []
    while time.time() < deadline:
        child = children_of(proc.pid)
        if child and _comm(child[0]) == "sh":
            break
        time.sleep(0.02)
    else:
        pytest.fail("the command did not start")
    with open(f"/proc/{child[0]}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["100005"] * 4          # the command's process switched ids
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and pids_with_marker(marker):
        time.sleep(0.05)
    assert pids_with_marker(marker) == []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_only_stdio_is_inherited(idrun):
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    try:
        res = idrun("--uidmap", "0:1000:1", "--", "sh", "-c", "ls /proc/$$/fd",
                    pass_fds=(r, w))
    finally:
        os.close(r)
        os.close(w)
    assert res.returncode == 0, res.stderr
    assert sorted(int(x) for x in res.stdout.split()) == [0, 1, 2]


def test_preserve_fds(root):
    # The shell opens 3..6 for idrun; --preserve-fds 2 passes 3 and 4 only.
    res = run(["sh", "-c", 'exec "$@" 3</dev/null 4</dev/null 5</dev/null 6</dev/null', "sh",
               *idrun_argv(), "--uidmap", "0:1000:1", "--preserve-fds", "2", "--", "sh", "-c",
               "ls /proc/$$/fd"])
    assert res.returncode == 0, res.stderr
    assert sorted(int(x) for x in res.stdout.split()) == [0, 1, 2, 3, 4]


def test_no_new_privs(idrun):
    res = idrun("--uidmap", "0:1000:1", "--no-new-privs", "--", "grep", "NoNewPrivs",
                "/proc/self/status")
    assert res.stdout.split() == ["NoNewPrivs:", "1"]
    res = idrun("--uidmap", "0:1000:1", "--", "grep", "NoNewPrivs", "/proc/self/status")
    assert res.stdout.split() == ["NoNewPrivs:", "0"]


def test_dry_run_starts_nothing(idrun, world_dir):
    marker = world_dir / "ran"
    res = idrun("--uidmap", "0:1000:1", "--dry-run", "--", "touch", str(marker))
    assert res.returncode == 0, res.stderr
    assert "1000" in res.stdout
    assert not marker.exists()


def test_userns_host_as_root_creates_no_namespace(idrun):
    res = idrun("--userns", "host", "--", "readlink", "/proc/self/ns/user")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == os.readlink("/proc/self/ns/user")


@writers
def test_kernel_refusal_fails_closed(root, world_dir, writer_env):
    """Mapping host uid 0 needs CAP_SETFCAP: without it the write fails, the command never
    runs, the message names the file, and no process remains."""
    if subprocess.run(["which", "capsh"], capture_output=True).returncode != 0:
        pytest.skip("capsh (libcap2-bin) is not installed")
    marker = world_dir / "must-not-exist"
    tag = f"idrun-failclosed-{time.monotonic_ns()}"
    inner = " ".join(idrun_argv() + ["--uidmap", "0:0:1", "--", "touch", str(marker)])
    res = run(["capsh", "--drop=cap_setfcap", "--", "-c", f"{inner} # {tag}"],
              env=env_with(writer_env))
    assert res.returncode == 125, (res.stdout, res.stderr)
    assert "uid_map" in res.stderr and "Operation not permitted" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert not marker.exists()
    assert pids_with_marker(tag) == []


def test_threads_are_refused_before_unshare(root):
    code = ("import sys, threading, time\n"
            "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
            "from idrun.cli import main\n"
            "sys.exit(main(['--uidmap', '0:1000:1', '--', 'true']))\n")
    res = run([sys.executable, "-c", code])
    assert res.returncode == 125
    assert "single-threaded" in res.stderr and "2 threads" in res.stderr


def test_parallel_launches_each_see_their_own_map(no_new_children, root):
    procs = []
    for i in range(100):
        host = 300000 + i * 10
        procs.append((host, subprocess.Popen(
            idrun_argv() + ["--uidmap", f"0:{host}:10", "--", "cat", "/proc/self/uid_map"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for host, p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert maps_inside(out) == [[0, host, 10]]
    # every launch reaped: no zombie children of ours


@pytest.mark.parametrize("limit,expect", [(0, "disabled"), (1, "limit on user namespaces")])
def test_max_user_namespaces_exhausted_is_diagnosed(idrun, limit, expect):
    """Lower the per-namespace limit inside a namespace, then launch inside it."""
    me = " ".join(idrun_argv())
    inner = (f"{me} --uidmap 0:0:1 -- true" if limit == 0 else
             f"{me} --uidmap 0:0:10 -- {me} --uidmap 0:0:1 -- true")
    res = idrun("--uidmap", "0:0:65536", "--", "sh", "-c",
                f"echo {limit} > /proc/sys/user/max_user_namespaces && {inner}")
    assert res.returncode == 125, res.stderr
    assert "No space left on device" in res.stderr and expect in res.stderr
    assert res.stderr.strip().count("\n") == 0
