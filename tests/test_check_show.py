"""``idrun check``, ``idrun show`` and the low-level readers they rest on."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from testlib import idrun_json
from testlib.unit import idrun_argv, run
from idrun.system import newidmap, procfs, syscalls
from idrun.errors import LaunchError
from idrun.mapping.ranges import IdMap, Line


# --- pure parts (no kernel state needed) -------------------------------------------

def test_parse_map_padded_text():
    text = "         0       1000          1\n         1     100000      65536\n"
    assert IdMap.parse(text) == (Line(0, 1000, 1), Line(1, 100000, 65536))
    assert IdMap.parse("") == ()
    for bad in ("0 1\n", "0 1 " + "9" * 5000 + "\n", "0 -1 1\n"):
        with pytest.raises(ValueError):
            IdMap.parse(bad)


def test_parse_file_caps_v2_and_v3():
    # revision 2, effective, permitted = cap_setuid (bit 7)
    v2 = (0x02000001).to_bytes(4, "little") + (1 << 7).to_bytes(4, "little") + bytes(12)
    caps = newidmap.parse_file_caps(v2)
    assert caps is not None and caps.has(newidmap.CAP_SETUID) and not caps.has(newidmap.CAP_SETGID)
    assert caps.rootid is None and "cap_setuid+ep" in caps.describe()
    # revision 3 (namespaced), permitted only: not effective, so not usable
    v3 = ((0x03000000).to_bytes(4, "little") + (1 << 6).to_bytes(4, "little") + bytes(12)
          + (100000).to_bytes(4, "little"))
    caps = newidmap.parse_file_caps(v3)
    assert caps is not None and not caps.has(newidmap.CAP_SETGID) and caps.rootid == 100000
    assert newidmap.parse_file_caps(b"\x00") is None


def test_locate_only_in_system_dirs(monkeypatch, tmp_path):
    fake = tmp_path / "newuidmap"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))          # never consulted
    monkeypatch.delenv("IDRUN_NEWUIDMAP", raising=False)
    path = None
    try:
        path = newidmap.locate("uid")
    except LaunchError as e:
        assert "not found in /usr/bin" in str(e)
    if path is not None:
        assert os.path.dirname(path) in newidmap.SYSTEM_DIRS
    monkeypatch.setenv("IDRUN_NEWUIDMAP", str(fake))
    assert newidmap.locate("uid") == str(fake)
    monkeypatch.setenv("IDRUN_NEWUIDMAP", "relative/newuidmap")
    with pytest.raises(LaunchError, match="not absolute"):
        newidmap.locate("uid")


def test_unprivileged_helper_is_refused(tmp_path):
    copy = tmp_path / "newuidmap"
    copy.write_bytes(b"\x7fELF")
    copy.chmod(0o755)
    with pytest.raises(LaunchError, match="neither setuid root nor has cap_setuid"):
        newidmap.find("uid", str(copy))


# The xdist worker has threads; these forked children only make system calls.
_fork_ok = pytest.mark.filterwarnings("ignore:.*use of fork:DeprecationWarning")


@_fork_ok
def test_close_fds_except():
    r, w = os.pipe()
    extra = os.open("/dev/null", os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        syscalls.close_fds_except({extra})
        open_fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
        os._exit(0 if w not in open_fds and r not in open_fds and extra in open_fds else 1)
    _, status = os.waitpid(pid, 0)
    for fd in (r, w, extra):
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_procfs_status_and_sysctl():
    st = procfs.status()
    assert int(st["Threads"]) >= 1 and st["NoNewPrivs"] in ("0", "1")
    assert procfs.sysctl("user.max_user_namespaces") == procfs.sysctl("user/max_user_namespaces")
    assert procfs.sysctl("no/such/sysctl") is None
    assert procfs.read_setgroups() in ("allow", "deny")


# --- on the real kernel ----------------------------------------------------------

@_fork_ok
@pytest.mark.privileged
def test_unshare_errno_is_kept():
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(0x1)          # not a namespace flag: EINVAL
        except OSError as e:
            os._exit(e.errno)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    import errno
    assert os.waitstatus_to_exitcode(status) == errno.EINVAL


@_fork_ok
@pytest.mark.privileged
def test_unshare_user_namespace_in_a_child():
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            ok = procfs.read_map("uid") == () and not procfs.is_initial_userns()
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_check_as_root_json(root):
    res = run(idrun_argv() + ["check", "--json"])
    doc = idrun_json(res.stdout)
    assert res.returncode == (0 if doc["ok"] else 1)
    statuses = {c["status"] for c in doc["checks"]}
    assert statuses <= {"OK", "WARN", "FAIL"}
    names = [c["name"] for c in doc["checks"]]
    assert "kernel" in names and "user namespaces" in names


def test_check_for_a_user(testuser):
    res = run(idrun_argv() + ["check", "--user", testuser.name])
    assert res.returncode == 0, res.stdout
    lines = res.stdout.splitlines()
    assert all(line.split()[0] in ("OK", "WARN", "FAIL") for line in lines[1:-1]
               if not line.startswith(" "))
    assert "subuids" in res.stdout and str(testuser.subuid[0]) in res.stdout
    assert lines[-1].startswith("ready")


def test_check_for_a_user_without_sub_ids(root):
    """Issue 11: own-id launches work without sub-ids, so that is not 'not ready'; the
    proposed block is free in the file and the command names the real user."""
    from idrun.mapping.subids import all_entries, free_block
    res = run(idrun_argv() + ["check", "--user", "nobody"])
    assert res.returncode == 0, res.stdout
    assert "FAIL" not in res.stdout
    assert "ready: rootless launches work with your own ids only" in res.stdout
    with open("/etc/subuid") as f:
        lo, hi = free_block(all_entries(f.read(), "/etc/subuid"))
    assert f"usermod --add-subuids {lo}-{hi} nobody" in res.stdout
    doc = idrun_json(run(idrun_argv() + ["check", "--user", "nobody", "--json"]).stdout)
    assert doc["ok"] is True and doc["sub_ids"] is False


def test_check_unknown_user(root):
    res = run(idrun_argv() + ["check", "--user", "no-such-user-zz"])
    assert res.returncode == 125
    assert "no such user" in res.stderr


def test_show_self_in_the_initial_namespace(root):
    res = run(idrun_argv() + ["show", "--json"])
    doc = idrun_json(res.stdout)
    assert doc["uid_map"] == [[0, 0, 4294967295]]
    assert doc["setgroups"] == "allow"


def test_show_a_launched_process_with_translate(root):
    proc = subprocess.Popen(idrun_argv() + ["--uidmap", "0:100000:1000", "--gidmap",
                                            "0:200000:1000", "--", "sleep", "30"])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(f"/proc/{proc.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            time.sleep(0.02)
        res = run(idrun_argv() + ["show", str(proc.pid), "--translate", "5"])
        assert res.returncode == 0, res.stderr
        assert "uid 5: inside 5 = outside 100005" in res.stdout
        assert "gid 5: inside 5 = outside 200005" in res.stdout
        assert "outside 5 is not mapped" in res.stdout
        res = run(idrun_argv() + ["show", str(proc.pid), "--translate", "100007", "--json"])
        doc = idrun_json(res.stdout)
        assert doc["uid_map"] == [[0, 100000, 1000]]
        assert doc["translate"]["uid"] == {"inside_to_outside": None, "outside_to_inside": 7}
    finally:
        proc.kill()
        proc.wait()


def test_show_errors(root):
    res = run(idrun_argv() + ["show", "999999999"])
    assert res.returncode == 125 and "no process" in res.stderr
    res = run(idrun_argv() + ["show", "abc"])
    assert res.returncode == 125


def test_check_without_the_uidmap_package(testuser, monkeypatch):
    """As if uidmap were not installed: the helpers are missing, check says how to fix it."""
    from idrun.cli import check
    monkeypatch.setattr(newidmap, "SYSTEM_DIRS", ("/nonexistent-dir",))
    monkeypatch.delenv("IDRUN_NEWUIDMAP", raising=False)
    monkeypatch.delenv("IDRUN_NEWGIDMAP", raising=False)
    checks, _ = check.run_checks(testuser.name)
    by_name = {c.name: c for c in checks}
    assert by_name["newuidmap"].status == "FAIL" and by_name["newgidmap"].status == "FAIL"
    assert "apt-get install uidmap" in by_name["newuidmap"].fix
    assert by_name["subuids"].status == "OK"


@pytest.fixture
def broken_helpers():
    """Real helper files that cannot work: newuidmap copied without its setuid bit, and
    a path where none exists (as after a half-removed uidmap package)."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="idrun-helper-", dir="/tmp")
    os.chmod(d, 0o755)
    plain = os.path.join(d, "newuidmap")
    shutil.copy("/usr/bin/newuidmap", plain)
    os.chmod(plain, 0o755)
    yield {"not setuid": (plain, "neither setuid root nor has cap_setuid"),
           "missing": (os.path.join(d, "gone", "newuidmap"), "not found at")}
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.privileged
@pytest.mark.parametrize("case", ["not setuid", "missing"])
def test_check_with_a_broken_helper_says_own_ids_work(testuser, broken_helpers, case):
    """Issue 11: a broken newuidmap blocks sub-id mappings only. check says exactly
    that, exits 0 as documented (own-id launches work), and both claims hold for real
    launches with the same helper."""
    path, why = broken_helpers[case]
    env = {"IDRUN_NEWUIDMAP": path}
    res = testuser.idrun_run("check", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAIL" in res.stdout
    verdict = res.stdout.splitlines()[-1]
    assert verdict.startswith("ready for own-id mappings (-r, -c, --userns keep-id); "
                              "sub-id mappings need newuidmap: "), verdict
    assert path in verdict and why in verdict and "IDRUN_NEWUIDMAP" in verdict, verdict
    doc = idrun_json(testuser.idrun_run("check", "--json", env=env).stdout)
    assert doc["ok"] is True and doc["sub_ids"] is False
    assert {c["id"]: c["status"] for c in doc["checks"]}["newuidmap"] == "FAIL"
    own = testuser.idrun_run("-r", "--", "id", "-u", env=env)
    assert own.returncode == 0 and own.stdout.strip() == "0", own.stderr
    sub = testuser.idrun_run("--uidmap", "0:1:10", "--", "true", env=env)
    assert sub.returncode == 125 and path in sub.stderr, sub.stderr


@pytest.mark.privileged
def test_check_as_the_user_tells_the_truth(testuser):
    res = testuser.idrun_run("check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ready" in res.stdout
    res = testuser.idrun_run("check", "--json")
    doc = idrun_json(res.stdout)
    assert doc["ok"] is True
    ids = {c["id"] for c in doc["checks"]}
    assert {"newuidmap", "newgidmap", "subuids", "subgids", "no_new_privs"} <= ids


@pytest.mark.privileged
def test_check_under_no_new_privs_says_own_ids_work(testuser):
    """NoNewPrivs blocks the setuid helpers, so sub-id mappings only."""
    res = testuser.idrun_run("check", setpriv=("--no-new-privs",))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sub-id mappings are refused: NoNewPrivs" in res.stdout


# Helper files written here stand in for other shadow versions (only 4.13 can
# be installed on this Debian 12 host); the real helper is checked too.
@pytest.mark.parametrize("body,expected", [
    ("echo 'usage: %s <pid> <uid> <loweruid> <count>' >&2", False),                # 4.13
    ("echo 'usage: %s [<pid>|fd:<pidfd>] <uid> <loweruid> <count>' >&2", True),     # 4.14+
    ("echo 'usage: %s [<pid>|fd:N] <uid>' >&2", True),          # no marker: it is run
    ("echo 'fd: only in a comment' >/dev/null; echo usage >&2", False),             # run: no
])
def test_fd_target_support_from_the_helper_binary(tmp_path, body, expected, monkeypatch):
    from idrun.system import newidmap
    monkeypatch.setenv("IDRUN_LEASE_DIR", str(tmp_path / "reg"))   # the answer's cache
    helper = tmp_path / "newuidmap"
    helper.write_text(f"#!/bin/sh\n{body}\nexit 1\n")
    helper.chmod(0o755)
    assert newidmap.supports_fd_target(str(helper)) is expected


def _counting_helper(tmp_path, usage="usage: %s [<pid>|fd:N] <uid>"):
    """A helper whose bytes leave fd: support open (so it must be run) and that counts
    its runs; it stands in for a shadow this host cannot install."""
    helper = tmp_path / "bin" / "newuidmap"
    helper.parent.mkdir(exist_ok=True)
    # "fd:" in the bytes always (in the comment), so only a run can tell
    helper.write_text(f"#!/bin/sh\n# fd:\necho run >>{tmp_path}/runs\necho '{usage}' >&2\n"
                      "exit 1\n")
    helper.chmod(0o755)
    return str(helper), lambda: (tmp_path / "runs").read_text().count("run")


def test_fd_target_answer_is_cached_across_launches(tmp_path, monkeypatch):
    """Issue 23: every rootless launch ran newuidmap and newgidmap without arguments
    (0.8 ms each) to learn an answer that never changes. A new process (the in-process
    memo cleared) now reads it from the caller's registry directory."""
    from idrun.system import newidmap
    reg = tmp_path / "reg"
    monkeypatch.setenv("IDRUN_LEASE_DIR", str(reg))
    path, runs = _counting_helper(tmp_path)
    assert newidmap.supports_fd_target(path) is True and runs() == 1
    for _ in range(3):
        newidmap._fd_support.clear()            # as a new launch starts
        assert newidmap.supports_fd_target(path) is True
    assert runs() == 1
    cache = reg / newidmap.CACHE_NAME
    assert cache.stat().st_mode & 0o777 == 0o600 and f"{path} " in cache.read_text()
    # The binary replaced (other size and mtime): asked again, and the answer follows it.
    os.unlink(path)
    path2, _ = _counting_helper(tmp_path, usage="usage: %s <pid> <uid> <loweruid> <count>")
    newidmap._fd_support.clear()
    assert newidmap.supports_fd_target(path2) is False and runs() == 2
    assert cache.read_text().count(f"{path} ") == 1


@pytest.mark.parametrize("attack", ["other-answer", "garbage", "two-lines", "group-writable",
                                    "symlink", "directory"])
def test_fd_target_cache_in_doubt_runs_the_helper_again(tmp_path, monkeypatch, attack):
    """A forged or broken cache never decides: the helper is run and its answer kept."""
    from idrun.system import newidmap
    reg = tmp_path / "reg"
    monkeypatch.setenv("IDRUN_LEASE_DIR", str(reg))
    path, runs = _counting_helper(tmp_path)
    assert newidmap.supports_fd_target(path) is True and runs() == 1
    cache = reg / newidmap.CACHE_NAME
    line = cache.read_text().strip()
    key = line.rsplit(" ", 1)[0]
    if attack == "other-answer":
        cache.write_text(f"{key} 2\n")
    elif attack == "garbage":
        cache.write_bytes(b"\xff" * 100)
    elif attack == "two-lines":
        cache.write_text(f"{key} 0\n{key} 1\n")
    elif attack == "group-writable":
        cache.write_text(f"{key} 0\n")
        cache.chmod(0o620)
    elif attack == "symlink":
        (tmp_path / "forged").write_text(f"{key} 0\n")
        cache.unlink()
        cache.symlink_to(tmp_path / "forged")
    else:
        cache.unlink()
        cache.mkdir()
    newidmap._fd_support.clear()
    assert newidmap.supports_fd_target(path) is True
    assert runs() == 2


def test_fd_target_support_of_the_real_helper_agrees_with_running_it():
    from idrun.system import newidmap
    for path in ("/usr/bin/newuidmap", "/usr/bin/newgidmap"):
        if not os.path.exists(path):
            pytest.skip(f"{path} is not installed")
        _, usage = newidmap.spawn_capture(path, [os.path.basename(path)])
        assert newidmap.supports_fd_target(path) is ("fd:" in usage)
