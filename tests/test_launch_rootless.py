"""The launcher as an unprivileged user, through the real setuid newuidmap/newgidmap.

The test user and its venv (Debian's Python 3.11, so the ctypes unshare path) come
from scripts/testenv.sh; see conftest.py.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import idrun_json, pids_with_marker

pytestmark = pytest.mark.kernel


def maps(text: str) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in text.strip().splitlines()]


MAPS = "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; cat /proc/self/setgroups"


def split3(out: str) -> tuple[list[list[int]], list[list[int]], str]:
    u, g, s = out.split("--\n")
    return maps(u), maps(g), s.strip()


def test_map_root_user_writes_own_maps(testuser):
    res = testuser.idrun_run("-r", "--", "sh", "-c", f"id -u; id -g; {MAPS}")
    assert res.returncode == 0, res.stderr
    first, rest = res.stdout.split("\n", 2)[:2], res.stdout.split("\n", 2)[2]
    assert first == ["0", "0"]
    uid_map, gid_map, sg = split3(rest)
    assert uid_map == [[0, testuser.uid, 1]]
    assert gid_map == [[0, testuser.gid, 1]]
    assert sg == "deny"                       # the kernel's rule for an own-gid map


def test_sub_ids_through_newuidmap(testuser):
    start, count = testuser.subuid
    gstart, gcount = testuser.subgid
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", f"1:1:{count}", "--", "sh", "-c",
                             f"id -u; {MAPS}")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "0"
    uid_map, gid_map, sg = split3(res.stdout.split("\n", 1)[1])
    assert uid_map == [[0, testuser.uid, 1], [1, start, count]]
    assert gid_map == [[0, testuser.gid, 1], [1, gstart, gcount]]
    assert sg == "allow"                      # sub-gids delegated: newgidmap leaves it


def test_id_inside_and_switch_to_sub_id(testuser):
    res = testuser.idrun_run("--uidmap", "0:1:1000", "--user", "33:33", "--", "id")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("uid=33(") and " gid=33(" in res.stdout


def test_keep_id(testuser):
    res = testuser.idrun_run("--userns", "keep-id", "--", "sh", "-c", "id -u; id -g")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(testuser.uid), str(testuser.gid)]


def test_file_ownership_on_the_host(testuser, shared_dir):
    start, _ = testuser.subuid
    gstart, _ = testuser.subgid
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:1000", "--", "sh", "-c",
                             f"touch {shared_dir}/root-made; "
                             f"setpriv --reuid=5 --regid=6 --clear-groups touch "
                             f"{shared_dir}/five-made")
    assert res.returncode == 0, res.stderr
    st = (shared_dir / "root-made").stat()
    assert (st.st_uid, st.st_gid) == (testuser.uid, testuser.gid)
    st = (shared_dir / "five-made").stat()
    assert (st.st_uid, st.st_gid) == (start + 4, gstart + 5)


def test_file_ownership_as_user_option(testuser, shared_dir):
    start, _ = testuser.subuid
    gstart, _ = testuser.subgid
    res = testuser.idrun_run("--uidmap", "0:1:1000", "--user", "10:20", "--", "touch",
                             f"{shared_dir}/ten")
    assert res.returncode == 0, res.stderr
    st = (shared_dir / "ten").stat()
    assert (st.st_uid, st.st_gid) == (start + 10, gstart + 20)   # container n -> intermediate n+1


def test_undelegated_host_id_is_refused(testuser, shared_dir):
    marker = shared_dir / "ran"
    res = testuser.idrun_run("--uidmap", "0:@1:1", "--", "touch", str(marker))
    assert res.returncode == 125
    assert "not delegated" in res.stderr or "delegat" in res.stderr, res.stderr
    assert not marker.exists()


def test_beyond_delegated_range_is_refused(testuser):
    _, count = testuser.subuid
    res = testuser.idrun_run("--uidmap", f"0:0:{count + 5}", "--", "true")
    assert res.returncode == 125
    assert res.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("script,status", [("exit 0", 0), ("exit 9", 9)])
def test_exit_statuses(testuser, script, status):
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:10", "--", "sh", "-c", script)
    assert res.returncode == status, res.stderr


def test_not_found_and_not_executable(testuser):
    res = testuser.idrun_run("-r", "--", "no-such-tool-abc")
    assert res.returncode == 127
    res = testuser.idrun_run("-r", "--", "/etc/passwd")
    assert res.returncode == 126


def test_signal_forwarding_rootless(testuser):
    proc = subprocess.Popen(testuser.argv(testuser.idrun, "--uidmap", "0:0:1", "--uidmap",
                                          "1:1:100", "--fork", "--", "sh", "-c",
                                          'trap "echo got; exit 4" TERM; echo ready; '
                                          "while :; do sleep 0.05; done"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stdout.readline().strip() == "ready"
        # setpriv execs, so proc.pid is idrun's wrapper.
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert "got" in out, err
    assert proc.returncode == 4


@pytest.fixture
def helper_copies(testuser):
    """Copies of newuidmap: one without the setuid bit, one setuid but always failing."""
    d = Path(tempfile.mkdtemp(prefix="idrun-helpers-", dir="/tmp"))
    os.chmod(d, 0o755)
    plain = d / "newuidmap-plain"
    shutil.copy("/usr/bin/newuidmap", plain)
    os.chmod(plain, 0o755)
    failing = d / "newuidmap-false"
    shutil.copy("/bin/false", failing)
    os.chmod(failing, 0o4755)
    yield plain, failing
    shutil.rmtree(d, ignore_errors=True)


def test_missing_helper(testuser, shared_dir):
    marker = shared_dir / "ran"
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:10", "--", "touch",
                             str(marker), env={"IDRUN_NEWUIDMAP": "/nonexistent/newuidmap"})
    assert res.returncode == 125
    assert "/nonexistent/newuidmap" in res.stderr
    assert not marker.exists()


def test_helper_without_setuid_bit(testuser, shared_dir, helper_copies):
    plain, _ = helper_copies
    marker = shared_dir / "ran"
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:10", "--", "touch",
                             str(marker), env={"IDRUN_NEWUIDMAP": str(plain)})
    assert res.returncode == 125
    assert "neither setuid root nor has cap_setuid" in res.stderr, res.stderr
    assert not marker.exists()


def test_failing_helper_fails_closed(testuser, shared_dir, helper_copies):
    _, failing = helper_copies
    marker = shared_dir / "ran"
    tag = f"idrun-fail-{time.monotonic_ns()}"
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:10", "--", "sh", "-c",
                             f"touch {marker}; : {tag}", env={"IDRUN_NEWUIDMAP": str(failing)})
    assert res.returncode == 125
    assert str(failing) in res.stderr and "exit 1" in res.stderr, res.stderr
    assert "argv: newuidmap" in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert not marker.exists()
    assert pids_with_marker(tag) == []


def test_no_new_privs_is_detected(testuser, shared_dir):
    marker = shared_dir / "ran"
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:10", "--", "touch",
                             str(marker), setpriv=("--no-new-privs",))
    assert res.returncode == 125
    assert "NoNewPrivs" in res.stderr, res.stderr
    assert not marker.exists()
    # Your own id needs no setuid helper, so it still works.
    res = testuser.idrun_run("-r", "--", "id", "-u", setpriv=("--no-new-privs",))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0"


def test_parallel_rootless_launches(no_new_children, testuser):
    procs = []
    for i in range(100):
        procs.append((i, subprocess.Popen(
            testuser.argv(testuser.idrun, "--uidmap", "0:0:1", "--uidmap", f"1:{i + 1}:1", "--",
                          "cat", "/proc/self/uid_map"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")))
    start, _ = testuser.subuid
    for i, p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert maps(out) == [[0, testuser.uid, 1], [1, start + i, 1]]


def test_api_rootless(testuser, shared_dir):
    code = ("import idrun, sys\n"
            "r = idrun.run(['sh', '-c', 'id -u; cat /proc/self/uid_map'], "
            "uidmap=['0:0:1', '1:1:100'], capture_output=True, text=True)\n"
            "sys.stdout.write(r.stdout); sys.exit(r.returncode)\n")
    res = testuser.run(testuser.python, "-c", code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "0"
    assert maps("\n".join(lines[1:])) == [[0, testuser.uid, 1], [1, testuser.subuid[0], 100]]


def test_check_tells_the_truth(testuser):
    res = testuser.idrun_run("check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ready" in res.stdout
    res = testuser.idrun_run("check", "--json")
    doc = idrun_json(res.stdout)
    assert doc["ok"] is True
    ids = {c["id"] for c in doc["checks"]}
    assert {"newuidmap", "newgidmap", "subuids", "subgids", "no_new_privs"} <= ids


def test_check_fails_without_working_helper(testuser, helper_copies):
    """The helper's FAIL blocks sub-id mappings only (test_check_show has the rest)."""
    plain, _ = helper_copies
    res = testuser.idrun_run("check", env={"IDRUN_NEWUIDMAP": str(plain)})
    assert res.returncode == 0
    assert "FAIL" in res.stdout and "sub-id mappings need newuidmap" in res.stdout
    res = testuser.idrun_run("check", setpriv=("--no-new-privs",))
    assert res.returncode == 0
    assert "sub-id mappings are refused: NoNewPrivs" in res.stdout


def test_show_inside(testuser):
    res = testuser.idrun_run("--uidmap", "0:0:1", "--uidmap", "1:1:100", "--",
                             testuser.idrun, "show", "--translate", "1")
    assert res.returncode == 0, res.stderr
    start, _ = testuser.subuid
    assert f"inside 1 = outside {start}" in res.stdout


def test_helper_stays_setuid(testuser):
    """Sanity: the system helper the rootless tests rely on is setuid root."""
    st = os.stat("/usr/bin/newuidmap")
    assert st.st_uid == 0 and st.st_mode & stat.S_ISUID
