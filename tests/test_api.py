"""idrun.run / idrun.spawn on the real kernel (as root; the rootless API is exercised in
integration/test_maps.py, test_rootless_api_run)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

import idrun

pytestmark = pytest.mark.privileged


def maps(text: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in text.strip().splitlines()]


@pytest.mark.parametrize("uidmap", ["0:0:1", "0:1000:1", "0:100000:10"])
def test_caller_stays_dumpable(root, uidmap):
    """The kernel's dumpable flag lives in the memory map: a launch must never leave
    the caller non-dumpable (its /proc entry would become root-owned)."""
    from idrun.system import syscalls
    assert syscalls.get_dumpable() == 1
    assert idrun.run(["id", "-u"], uidmap=uidmap, capture_output=True).stdout == b"0\n"
    if uidmap.endswith(":10"):
        assert idrun.run(["true"], uidmap=uidmap, user="5:5").returncode == 0
    assert syscalls.get_dumpable() == 1


def test_run_returns_completed_process(root):
    r = idrun.run(["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map"],
                  uidmap=["0:1000:1"], capture_output=True, text=True)
    assert isinstance(r, subprocess.CompletedProcess)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert maps("\n".join(lines[1:])) == [[0, 1000, 1], [0, 1000, 1]]
    assert r.args == ["sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map"]


def test_run_string_map_and_gidmap(root):
    r = idrun.run(["sh", "-c", "id -u; id -g"], uidmap="0:100000:10", gidmap="0:200000:10",
                  user="3:4", capture_output=True)
    assert r.stdout.split() == [b"3", b"4"]


def test_returncode_and_check(root):
    assert idrun.run(["sh", "-c", "exit 7"], uidmap="0:0:1").returncode == 7
    with pytest.raises(subprocess.CalledProcessError) as exc:
        idrun.run(["sh", "-c", "echo out; exit 3"], uidmap="0:0:1", check=True,
                  capture_output=True)
    assert exc.value.returncode == 3 and exc.value.output == b"out\n"


def test_signal_death_is_negative_like_subprocess(root):
    r = idrun.run(["sh", "-c", "kill -TERM $$"], uidmap="0:0:1")
    assert r.returncode == -signal.SIGTERM
    # with a wrapper (fork) the wrapper dies of the same signal
    r = idrun.run(["sh", "-c", "kill -TERM $$"], uidmap="0:0:1", fork=True)
    assert r.returncode == -signal.SIGTERM


def test_input_and_stderr_to_stdout(root):
    r = idrun.run(["sh", "-c", "cat; echo err >&2"], uidmap="0:0:1", input="hi\n",
                  stdout=idrun.api.PIPE, stderr=idrun.api.STDOUT, text=True)
    assert r.stdout == "hi\nerr\n"


def test_large_output_and_input(root):
    data = os.urandom(1 << 20)
    r = idrun.run(["cat"], uidmap="0:0:1", input=data, capture_output=True)
    assert r.stdout == data


def test_env_and_cwd(root, shared_dir):
    r = idrun.run(["sh", "-c", "echo $FOO; pwd"], uidmap="0:0:1", env={"FOO": "bar",
                  "PATH": "/usr/bin:/bin"}, cwd=shared_dir, capture_output=True, text=True)
    assert r.stdout.split() == ["bar", shared_dir]


def test_os_environ_changes_reach_the_command(root, monkeypatch):
    monkeypatch.setenv("API_TEST_ADDED", "yes")
    monkeypatch.delenv("API_TEST_GONE", raising=False)
    r = idrun.run(["sh", "-c", "echo $API_TEST_ADDED ${API_TEST_GONE:-unset}"],
                  uidmap="0:0:1", capture_output=True, text=True)
    assert r.stdout.split() == ["yes", "unset"]


def test_not_found_raises_before_anything(no_new_children, root):
    with pytest.raises(idrun.IdrunError) as exc:
        idrun.run(["no-such-cmd-q"], uidmap="0:0:1")
    assert exc.value.exit_status == 127


def test_bad_mapping_raises(root):
    with pytest.raises(idrun.IdrunError) as exc:
        idrun.run(["true"], uidmap=["0:0:0"])
    assert exc.value.exit_status == 125


def test_timeout_kills_and_raises(no_new_children, root):
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        idrun.run(["sleep", "30"], uidmap="0:0:1", timeout=0.5)
    assert time.monotonic() - t0 < 10


def test_spawn_popen_like(root):
    p = idrun.spawn(["sleep", "30"], uidmap="0:1000:1")
    assert p.pid > 0 and p.poll() is None
    with open(f"/proc/{p.pid}/uid_map") as f:
        assert maps(f.read()) == [[0, 1000, 1]]
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.1)
    p.terminate()
    assert p.wait(timeout=10) == -signal.SIGTERM
    assert p.returncode == -signal.SIGTERM
    p.kill()        # harmless after reaping


def test_spawn_send_signal_and_pipes(root):
    with idrun.spawn(["sh", "-c", 'trap "echo usr1; exit 3" USR1; echo ready; '
                     "while :; do sleep 0.05; done"], uidmap="0:0:1",
                     stdout=idrun.api.PIPE) as p:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGUSR1)
        out, _ = p.communicate(timeout=10)
    assert out == b"usr1\n" and p.returncode == 3


def test_pass_fds_and_fd_hygiene(root):
    r, w = os.pipe()
    other = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(other, True)         # inheritable, but not passed: must not leak
    try:
        res = idrun.run(["sh", "-c", "ls /proc/$$/fd"], uidmap="0:0:1", pass_fds=[w],
                        capture_output=True, text=True)
    finally:
        os.close(r)
        os.close(w)
        os.close(other)
    assert sorted(int(x) for x in res.stdout.split()) == [0, 1, 2, w]


def test_namespaces_through_the_api(root):
    r = idrun.run(["sh", "-c", "echo $$; hostname; cat /sys/class/net/lo/operstate"],
                  uidmap="0:100000:1000", pid=True, mount_proc=True, net=True,
                  hostname="api-box", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["2", "api-box"]


def test_works_from_a_threaded_caller(root):
    """Only the forked child unshares, so threads in the caller do not matter."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        r = idrun.run(["id", "-u"], uidmap="0:1000:1", capture_output=True)
    finally:
        stop.set()
        t.join()
    assert r.stdout == b"0\n"


def test_many_sequential_launches_leave_nothing(no_new_children, root):
    fds_before = len(os.listdir("/proc/self/fd"))
    for i in range(50):
        assert idrun.run(["true"], uidmap=["0:0:1"]).returncode == 0
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_child_that_cannot_be_mapped_is_reaped(root):
    """A kernel refusal (host uid 0 without CAP_SETFCAP) in the API: exception, nothing left.
    Dropping the capability needs its own process."""
    code = ("import prctl, idrun, os, sys\n"
            "prctl.capbset.setfcap = False\n"
            "prctl.cap_effective.setfcap = False\n"
            "prctl.cap_permitted.setfcap = False\n"
            "try:\n"
            "    idrun.run(['touch', '/tmp/idrun-api-must-not'], uidmap='0:0:1')\n"
            "except idrun.IdrunError as e:\n"
            "    print(e.exit_status, e)\n"
            "print(open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().strip()"
            " or 'none')\n")
    import sys
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = res.stdout.splitlines()
    assert lines[0].startswith("125 ") and "uid_map" in lines[0], (res.stdout, res.stderr, open("/proc/self/status").read())
    assert lines[1] == "none"
    assert not os.path.exists("/tmp/idrun-api-must-not")


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_api_volumes_rootfs_tmpfs_workdir(root, tmp_path):
    """volumes=, tmpfs=, workdir= as the CLI's options; the caller keeps no tree fd."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").touch()
    os.chown(src / "f", 501, 501)
    before = _open_fds()
    r = idrun.run(["sh", "-c", "stat -c %u /mnt/f; pwd"], uidmap="0:100000:65536",
                  volumes=[f"{src}:/mnt:uid=501:1000"], tmpfs=["/tmp:size=1m"], workdir="/tmp",
                  capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000", "/tmp"]
    assert _open_fds() == before
    with pytest.raises(idrun.IdrunError, match="both show files as inside uid 1000"):
        idrun.run(["true"], uidmap="0:100000:65536",
                  volumes=[f"{src}:/mnt:uid=501:1000,uid=502:1000"])


def test_api_cwd_is_applied_after_the_mounts(root, tmp_path):
    """cwd= with mounts names a directory of the new tree (issue 19): a tmpfs on the cwd
    shows its own (empty) content, not the host directory it covers."""
    host_dir = tmp_path / "covered"
    host_dir.mkdir()
    (host_dir / "host-file").touch()
    r = idrun.run(["sh", "-c", "pwd; ls -A"], uidmap="0:100000:65536",
                  tmpfs=[f"{host_dir}:size=1m"], cwd=str(host_dir),
                  capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(host_dir)]
    with pytest.raises(ValueError, match="cwd and workdir"):
        idrun.run(["true"], uidmap="0:100000:65536", tmpfs=["/tmp"], cwd="/", workdir="/tmp")


def test_api_empty_rootfs_and_workdir_are_refused(root):
    """rootfs="" and workdir="" are refused like volumes=[""], not taken as "not given"."""
    for kw in ({"rootfs": ""}, {"workdir": ""}, {"volumes": [""]}):
        with pytest.raises(idrun.IdrunError, match="is empty|has no DST"):
            idrun.run(["true"], uidmap="0:100000:65536", **kw)
