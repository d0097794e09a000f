"""``--userns auto``: concurrent launches get distinct blocks, leases outlive nothing.

Each test runs in both passes: as root the pool is the user ``containers``'s
sub-ids (run-suite.sh delegates 2147483647:2147483648 when none are there), as
the unprivileged user it is the caller's own sub-ids. Blocks are checked in the
kernel's own words: ``/proc/PID/uid_map`` of the running commands.

The ``kernel`` subset (what the VM guests run) is the concurrent launches with a
smaller count, exhaustion with SIGKILL reclaim, and the maps seen inside: under
QEMU's TCG a launch costs seconds, so the 50-launch case is a ``permutation``
(same kernel path, more of it) that only the host runs. The registry's refusals
and garbage leases exercise idrun's own file handling, not the kernel.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest
import testlib.integration as it

WAIT = ["sh", "-c", "read x; exit 0"]     # runs until its stdin closes, then succeeds


def _pool(kind: str) -> list[tuple[int, int]]:
    """The host ids auto may use in this pass, or env_missing()."""
    if it.CALLER.privileged:
        owner = it.Caller(-1, -1, "containers", (), True)
        ranges = it.read_subids(f"/etc/sub{kind}", owner)
        if not ranges:
            it.env_missing(f"no range of the user containers in /etc/sub{kind} "
                           "(run-suite.sh adds containers:2147483647:2147483648)")
    else:
        ranges = it.read_subids(f"/etc/sub{kind}")
        if not ranges:
            it.env_missing(f"{it.CALLER.name} has no range in /etc/sub{kind}")
    return sorted(ranges)


def _outside(pid: int, kind: str) -> set[tuple[int, int]]:
    """The host-id ranges of a running process's map, as half-open intervals."""
    with open(f"/proc/{pid}/{kind}_map") as f:
        lines = it.parse_map(f.read())
    return {(o, o + n) for _, o, n in lines}


def _started(proc: subprocess.Popen) -> bool:
    """True once the launcher became the command (its maps are then final)."""
    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            with open(f"/proc/{proc.pid}/comm") as f:
                return f.read().strip() == "sh"
        except OSError:
            return False
    return it.wait_for(ready, timeout=it.TIMEOUT) and proc.poll() is None


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """Close the command's stdin (it then exits 0) and collect its status."""
    if proc.stdin is not None:
        proc.stdin.close()
        proc.stdin = None
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _ids_running_in(block: tuple[int, int]) -> bool:
    """Whether a running process has a uid in [start, end) (its /proc status)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uids = next(ln for ln in f if ln.startswith("Uid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if any(block[0] <= int(u) < block[1] for u in uids):
            return True
    return False


def _overlap(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> bool:
    return any(lo1 < hi2 and lo2 < hi1 for lo1, hi1 in a for lo2, hi2 in b)


@pytest.mark.kernel
@pytest.mark.parametrize("n", [8, pytest.param(50, marks=pytest.mark.permutation)])
def test_concurrent_launches_get_distinct_blocks(idrun, n):
    _pool("uid"), _pool("gid")
    procs = [idrun.popen(["--userns", "auto"], WAIT, stdin=subprocess.PIPE) for _ in range(n)]
    try:
        for p in procs:
            assert _started(p), f"launch {p.pid} did not start: {p.communicate()}"
        blocks = {kind: [_outside(p.pid, kind) for p in procs] for kind in ("uid", "gid")}
        for kind, seen in blocks.items():
            for i in range(n):
                assert sum(hi - lo for lo, hi in seen[i]) == 1024, seen[i]
                for j in range(i):
                    assert not _overlap(seen[i], seen[j]), \
                        f"{kind} blocks of {procs[i].pid} and {procs[j].pid} overlap"
        shown = json.loads(idrun.ok(["show", "--leases", "--json"], None))
        assert {p.pid for p in procs} <= {item["pid"] for item in shown["leases"]}
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
                p.stdin = None
        results = [_finish(p, it.TIMEOUT) for p in procs]
    assert all(rc == 0 for rc, _ in results), [r for r in results if r[0] != 0][:3]


@pytest.mark.kernel
def test_exhaustion_sigkill_and_reclaim_with_two_blocks(idrun):
    """A pool of exactly two blocks: a third launch is refused with the free sizes;
    the lease of a SIGKILLed launcher is reclaimed by the next launch."""
    pools = {kind: _pool(kind) for kind in ("uid", "gid")}
    totals = {kind: sum(c for _, c in r) for kind, r in pools.items()}
    if len(set(totals.values())) != 1 or totals["uid"] % 2:
        it.env_missing(f"needs equal, even sub-uid and sub-gid totals (has {totals})")
    size = totals["uid"] // 2
    opts = ["--userns", f"auto:size={size}"]
    a = idrun.popen(opts, WAIT, stdin=subprocess.PIPE)
    b = c = None
    try:
        assert _started(a), a.communicate()
        b = idrun.popen(opts, WAIT, stdin=subprocess.PIPE)
        assert _started(b), b.communicate()
        block_a, block_b = _outside(a.pid, "uid"), _outside(b.pid, "uid")
        assert not _overlap(block_a, block_b)

        full = idrun.run(opts, ["true"])
        it.assert_refused(full)
        assert "no free block" in full.stderr and "nothing is free" in full.stderr, full.stderr

        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=it.TIMEOUT)
        c = idrun.popen(opts, WAIT, stdin=subprocess.PIPE)
        assert _started(c), c.communicate()
        assert _outside(c.pid, "uid") == block_a      # the killed launcher's block

        assert _finish(b, it.TIMEOUT)[0] == 0               # b ends normally
        bigger = idrun.run(["--userns", f"auto:size={size + 1}"], ["true"])
        it.assert_refused(bigger)
        # One block is free; ids other processes use (other jobs on the host) may
        # split it into runs, so the total is what is certain.
        assert "free sizes" in bigger.stderr and f"({size} in all)" in bigger.stderr, \
            bigger.stderr
    finally:
        for p in (a, b, c):
            if p is not None and p.returncode is None:
                _finish(p, it.TIMEOUT)
    assert c.returncode == 0


@pytest.fixture
def registry():
    """A fresh registry directory, named through IDRUN_LEASE_DIR."""
    base = tempfile.mkdtemp(prefix="idrun-reg-", dir="/tmp")
    path = os.path.join(base, "leases")
    env = dict(os.environ, IDRUN_LEASE_DIR=path)
    yield path, env
    subprocess.run(["rm", "-rf", base], check=False)


def test_registry_with_loose_mode_is_refused(idrun, registry, shared_dir):
    _pool("uid")
    path, env = registry
    os.mkdir(path, 0o700)
    os.chmod(path, 0o777)
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["--userns", "auto"], ["touch", marker], env=env)
    it.assert_refused(p, marker)
    assert "has mode 0777" in p.stderr and path in p.stderr, p.stderr


@pytest.mark.root
def test_registry_owned_by_someone_else_is_refused(idrun, registry, shared_dir):
    _pool("uid")
    path, env = registry
    os.mkdir(path, 0o755)
    os.chown(path, 12345, 12345)
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["--userns", "auto"], ["touch", marker], env=env)
    it.assert_refused(p, marker)
    assert "owned by uid 12345" in p.stderr, p.stderr


def test_registry_symlink_is_refused(idrun, registry, shared_dir):
    _pool("uid")
    path, env = registry
    os.symlink(tempfile.gettempdir(), path)
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["--userns", "auto"], ["touch", marker], env=env)
    it.assert_refused(p, marker)
    assert "symlink" in p.stderr, p.stderr


def _state_dir() -> str:
    import pwd
    return os.path.join(pwd.getpwuid(os.geteuid()).pw_dir, ".local", "state", "idrun")


@pytest.mark.rootless
def test_foreign_runtime_dir_falls_back_to_the_state_dir(idrun):
    """An $XDG_RUNTIME_DIR that is not the caller's private directory is not used; the
    fallback is in the caller's home, never under /tmp (issue 19)."""
    _pool("uid")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_STATE_HOME", "IDRUN_LEASE_DIR")}
    env["XDG_RUNTIME_DIR"] = "/tmp"
    plan = idrun.plan(["--userns", "auto"], env=env)
    assert any(f"registry {_state_dir()})" in n for n in plan["notes"]), plan


@pytest.mark.rootless
def test_a_planted_tmp_registry_blocks_nothing(idrun):
    """Issue 19: without $XDG_RUNTIME_DIR the registry was /tmp/idrun-UID, which another
    user could create first (here: a directory idrun must refuse, mode 0777, unless
    another user's is there already) and so block the caller's auto for good."""
    _pool("uid")
    planted = f"/tmp/idrun-{os.geteuid()}"
    made, mode = False, None
    if not os.path.lexists(planted):
        os.mkdir(planted)
        made = True
    if os.lstat(planted).st_uid == os.geteuid():
        mode = os.lstat(planted).st_mode & 0o7777
        os.chmod(planted, 0o777)        # what the old registry code refused to use
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "IDRUN_LEASE_DIR")}
        p = idrun.run(["--userns", "auto"], ["true"], env=env)
        assert p.returncode == 0 and "error" not in p.stderr, it.show_result(p)
        st = os.stat(_state_dir())
        assert st.st_uid == os.geteuid() and not st.st_mode & 0o077
    finally:
        if made:
            os.rmdir(planted)
        elif mode is not None:
            os.chmod(planted, mode)


def _leaves_job(idrun, opts: list[str], env: dict) -> tuple[int, set[tuple[int, int]]]:
    """Launch an auto namespace whose command leaves a background job running as its
    uid 1 (the issue's case: the job is root of the next launch on the host) and ends;
    returns the job's pid and its host uid block."""
    script = ("setpriv --reuid 1 --regid 1 --clear-groups sleep 300 </dev/null >/dev/null "
              "2>&1 & echo $!")
    p = idrun.run(["--userns", "auto", *opts], ["sh", "-c", script], env=env)
    assert p.returncode == 0, it.show_result(p)
    job = int(p.stdout.split()[0])
    assert it.wait_for(lambda: os.path.exists(f"/proc/{job}/uid_map"), 10)
    return job, _outside(job, "uid")


@pytest.mark.kernel
@pytest.mark.parametrize("mode", [[], ["--fork"]], ids=["plain", "fork"])
def test_lease_lives_as_long_as_its_ids(idrun, registry, mode):
    """Issue 19: the lease ended with the launcher; the next launch then got a block
    overlapping the ids a left-behind job still runs with. Now the lease is "held by
    processes" until the job ends, and only then reclaimed."""
    _pool("uid"), _pool("gid")
    if not shutil.which("setpriv"):
        it.env_missing("setpriv (util-linux) is not installed")
    path, env = registry
    job, block = _leaves_job(idrun, mode, env)
    try:
        shown = json.loads(idrun.ok(["show", "--leases", "--json"], None, env=env))
        held = [item for item in shown["leases"] if job in item["processes"]]
        assert held and held[0]["owner_alive"] is False, shown
        text = idrun.ok(["show", "--leases"], None, env=env)
        assert f"held by processes {job}" in text, text
        for _ in range(2):          # the next launches keep off the whole block
            out = idrun.ok(["--userns", "auto"], ["cat", "/proc/self/uid_map"], env=env)
            got = {(o, o + n) for _, o, n in it.parse_map(out)}
            assert not _overlap(got, block), (got, block)
    finally:
        it.kill_quietly(job)
    assert it.wait_for(lambda: not os.path.exists(f"/proc/{job}"), 10)
    shown = json.loads(idrun.ok(["show", "--leases", "--json"], None, env=env))
    assert not any(_overlap({(s, s + c) for s, c in item["uid"]}, block)
                   for item in shown["leases"]), shown


@pytest.mark.kernel
def test_pid_namespace_lease_ends_with_the_launch(idrun, registry):
    """--pid: the init's end ends the job too, so nothing holds the block afterwards."""
    _pool("uid")
    path, env = registry
    p = idrun.run(["--userns", "auto", "--pid"],
                  ["sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $!"], env=env)
    assert p.returncode == 0, it.show_result(p)
    shown = json.loads(idrun.ok(["show", "--leases", "--json"], None, env=env))
    assert shown["leases"] == [], shown


def test_garbage_and_hand_written_leases(idrun, registry):
    """Garbage is removed, a dead owner's lease is reclaimed, a live owner's lease
    (even hand-written) is honoured: never a crash, never a shared block."""
    pool = _pool("uid")
    gpool = _pool("gid")
    path, env = registry
    os.mkdir(path, 0o700 if not it.CALLER.privileged else 0o755)
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    me = it.proc_stat(os.getpid())[2]
    first, gfirst = pool[0][0], gpool[0][0]
    live = f"idrun-lease 1\nowner {os.getpid()} {me} {boot}\nuid {first} 1024\ngid {gfirst} 1024\n"
    dead = f"idrun-lease 1\nowner {os.getpid()} {me + 1} {boot}\nuid {first + 1024} 1024\n" \
           f"gid {gfirst + 1024} 1024\n"
    files = {"uid-live.lease": live, "uid-dead.lease": dead,
             "junk.lease": "\x00\xffnot a lease\n" * 50, "empty.lease": "",
             "truncated.lease": live[:30], "notes.txt": "not idrun's\n"}
    for name, text in files.items():
        with open(os.path.join(path, name), "w", encoding="latin-1") as f:
            f.write(text)
    os.mkdir(os.path.join(path, "adir.lease"))
    p = idrun.run(["--userns", "auto"], ["cat", "/proc/self/uid_map"], env=env)
    assert p.returncode == 0 and "Traceback" not in p.stderr, it.show_result(p)
    lines = it.parse_map(p.stdout)
    got = {(o, o + n) for _, o, n in lines}
    assert not _overlap(got, {(first, first + 1024)}), got       # the live lease holds
    reclaimed = (first + 1024, first + 2048)
    # The dead owner's block is handed out again, unless a process of another job on
    # this machine runs with those ids right now (the picker skips ids in use).
    assert got == {reclaimed} or pool[0][1] < 2048 or _ids_running_in(reclaimed), got
    left = set(os.listdir(path))
    assert "uid-live.lease" in left and "notes.txt" in left      # other names untouched
    assert not {"uid-dead.lease", "junk.lease", "empty.lease", "truncated.lease"} & left, left


@pytest.mark.kernel
@pytest.mark.parametrize("size", [None, pytest.param(2000, marks=pytest.mark.permutation)])
def test_auto_maps_inside(idrun, size):
    """Inside: container 0…size−1, all from the pool, running as 0:0."""
    pools = {kind: _pool(kind) for kind in ("uid", "gid")}
    n = size or 1024
    view = idrun.inside(["--userns", "auto" if size is None else f"auto:size={size}"])
    for kind, lines in (("uid", view.uid_map), ("gid", view.gid_map)):
        pos = 0
        for inside, outside, count in sorted(lines):
            assert inside == pos, lines                       # container ids 0… without gaps
            assert any(s <= outside and outside + count <= s + c for s, c in pools[kind]), \
                (kind, lines, pools[kind])
            pos += count
        assert pos == n, lines
    assert (view.uid, view.gid) == (0, 0)
