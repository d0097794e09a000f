"""Volumes, id-mapped mounts, --tmpfs, --rootfs and --workdir on the real kernel.

Ownership is checked from both sides: `stat` inside the namespace and os.stat()
on the host, for files made before the run and during it. Every test also checks
that no mount is left in the host's mount namespace.

Every test runs twice (the ``idrun`` fixture below): once with / private and once with
/ rshared, as systemd leaves it, each in a mount namespace of the test's own made by
integration/propagation.py, which plays the host and records any mount that appears
in it. The VM guests' / is rshared already (guest/init.sh), and they run the rshared
case only (the private one is a ``permutation``).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile

import pytest
import testlib.integration as it

NS = ["--uidmap", "0:100000:65536"]          # root pass: the namespace of the spec's examples
STAT = 'for f in "$@"; do stat -c "%u" "$f"; done'


# Every test here checks that nothing it mounted stays in the host's mount namespace.
pytestmark = pytest.mark.usefixtures("no_mount_left")


PROPAGATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "propagation.py")


def root_propagation(path: str = "/proc/self/mountinfo") -> str:
    """'shared', 'slave' or 'private': how / propagates in a mount namespace."""
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                tags = fields[6:fields.index("-")]
                for tag, name in (("shared:", "rshared"), ("master:", "rslave")):
                    if any(t.startswith(tag) for t in tags):
                        return name
                return "private"
    return "private"


@pytest.fixture(params=["rshared", pytest.param("private", marks=pytest.mark.permutation)])
def host_propagation(request) -> str:
    return request.param


@pytest.fixture
def idrun(idrun, host_propagation):
    """The idrun under test, run (as root) in a mount namespace of the test's own whose /
    has ``host_propagation``; a mount that appears there during the launch fails the test.
    Rootless, such a namespace cannot be made without a user namespace of its own (which
    would change what idrun does), so the test runs where the caller's / already has that
    propagation (private on a developer host, rshared in the VM guests) and is skipped
    in the other case."""
    if not it.CALLER.privileged:
        if root_propagation() != host_propagation:
            pytest.skip(f"the caller's / is {root_propagation()}; only root can make a "
                        f"{host_propagation} one of its own")
        yield idrun
        return
    fd, leaks = tempfile.mkstemp(prefix="idrun-leaks-")
    os.close(fd)
    try:
        yield it.Idrun([sys.executable, PROPAGATION, host_propagation, leaks, "--",
                        *idrun.prefix])
        with open(leaks) as f:
            leaked = f.read()
        assert not leaked, f"mounts appeared in the host's namespace:\n{leaked}"
    finally:
        os.unlink(leaks)


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (longest mount point)."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mnt = fields[4]
            fstype = fields[fields.index("-") + 1]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, fstype
    return kind


def idmap_capable(path: str) -> bool:
    kind = fs_type(path)
    return kind in ("ext4", "xfs", "btrfs", "f2fs") or (kind == "tmpfs" and _kernel() >= (6, 3))


def _scratch_base(root: bool) -> tuple[str, bool]:
    """Where a test that covers plain and id-mapped mounts makes its tree, and whether the
    id-mapped cases can run there: the plain cases run whatever the filesystem (a guest
    whose /tmp cannot be id-mapped still tests propagation and ro on them)."""
    if root:
        for base in ("/tmp", "/var/tmp", "/root"):
            if os.path.isdir(base) and idmap_capable(base):
                return base, True
    return "/tmp", False


def _idmap_dir() -> str:
    """A scratch place on a filesystem this kernel can id-map: the VM guests run from an
    initramfs with tmpfs /tmp, which Linux before 6.3 cannot id-map (the tmpfs test
    covers that error)."""
    for base in ("/tmp", "/var/tmp", "/root"):
        if os.path.isdir(base) and idmap_capable(base):
            return base
    pytest.skip(f"no scratch directory on an id-mappable filesystem (/tmp is {fs_type('/tmp')} "
                f"on Linux {platform.release()})")


def _no_idmap_kernel() -> None:
    """Before Linux 5.12 there are no id-mapped mounts: idrun refuses them before anything
    starts, which test_kernel_features.py checks on the 5.10 guest."""
    if _kernel() < (5, 12):
        pytest.skip(f"Linux {platform.release()} has no id-mapped mounts "
                    "(test_kernel_features.py tests the refusal)")


@pytest.fixture
def tree():
    """Files on the host's filesystem owned by 0, 501, 1000, 100000; a 501-owned
    subdirectory; the top directory owned by 0 and mode 0777."""
    _no_idmap_kernel()
    d = tempfile.mkdtemp(prefix="idrun-vol-", dir=_idmap_dir() if os.geteuid() == 0 else "/tmp")
    os.chmod(d, 0o777)
    if os.geteuid() == 0:
        for uid in (0, 501, 502, 1000, 100000):
            p = os.path.join(d, f"f{uid}")
            open(p, "w").close()
            os.chown(p, uid, uid)
        sub = os.path.join(d, "d501")
        os.mkdir(sub, 0o755)
        os.chown(sub, 501, 501)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _stat_inside(idrun, opts, names, user=()):
    out = idrun.ok([*NS, *user, *opts], ["sh", "-c", STAT, "sh", *[f"/mnt/{n}" for n in names]])
    return [int(x) for x in out.split()]


def _refused(p, *words):
    assert p.returncode == 125, (p.returncode, p.stderr)
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("idrun: error:") and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in line, (w, line)


FILES = ["f0", "f501", "f1000", "f100000"]


@pytest.mark.root
@pytest.mark.kernel
def test_root_idmap_volume_ownership_both_sides(idrun, tree):
    # podman's default: files keep their on-disk numbers inside (100000: unmapped).
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt:idmap"], FILES) == [0, 501, 1000, 65534]
    # Without idmap the same files show through the namespace's map only.
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt"], FILES) == [65534, 65534, 65534, 0]
    # Created inside by root: on disk as real host root (the documented note: said by
    # --verbose, idrun map and --dry-run, not by a plain launch, issue 20.2).
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:idmap"], ["sh", "-c", STAT + "; touch /mnt/new",
                                                       "sh"])
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    os.unlink(os.path.join(tree, "new"))
    p = idrun.run([*NS, "--verbose", "-v", f"{tree}:/mnt:idmap"],
                  ["sh", "-c", STAT + "; touch /mnt/new", "sh"])
    assert p.returncode == 0, p.stderr
    assert "note: " in p.stderr and "real host root" in p.stderr
    assert os.stat(os.path.join(tree, "new")).st_uid == 0


@pytest.mark.root
@pytest.mark.kernel
def test_root_multipass_examples(idrun, tree):
    # 1. `multipass mount … -u 501:1000`: host 501 appears as 1000.
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt:uid=501:1000"], ["f501"]) == [1000]
    # 2. `-u 501:1000 -u 502:1000`: two host ids on one instance id, refused.
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:uid=501:1000,uid=502:1000"], ["true"])
    _refused(p, "uid=501:1000", "uid=502:1000", "one-to-one")
    # 3. `-u 501:1000 -u 502:1001`: valid.
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt:uid=501:1000,uid=502:1001"],
                        ["f501", "f502"]) == [1000, 1001]
    # And one instance id for two host ids, the other direction.
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:uid=501:1000,uid=501:1001"], ["true"])
    _refused(p, "uid=501:1000", "uid=501:1001", "on-disk")


@pytest.mark.root
@pytest.mark.kernel
def test_root_podman_idmap_syntax(idrun, tree):
    full = "idmap=uids=0-100000-65536;gids=0-100000-65536"
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt:{full}"], FILES) == [0, 501, 1000, 65534]
    # '@': the second number is an id inside the launched namespace.
    assert _stat_inside(idrun, ["-v", f"{tree}:/mnt:idmap=uids=@501-1000-1"],
                        ["f501", "f0"]) == [1000, 65534]
    plan = idrun.plan([*NS, "-v", f"{tree}:/mnt:idmap=uids=@501-1000-1"])
    vol = plan["mounts"][0]
    assert vol["idmap"]["uid_map"] == [[501, 101000, 1]]
    assert vol["idmap"]["gid_map"] == [[0, 100000, 65536]]
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:idmap=uids=@0-70000-1"], ["true"])
    _refused(p, "70000", "not mapped")


@pytest.mark.root
@pytest.mark.kernel
def test_root_eacces_and_eoverflow_observed(idrun, tree):
    opts = [*NS, "-v", f"{tree}:/mnt:uid=501:1000"]
    # uid 1000 writes into the 501-owned directory: stored as 501 on disk.
    out = idrun.ok([*opts, "--user", "1000:1000"],
                   ["sh", "-c", "touch /mnt/d501/mine && stat -c %u /mnt/d501/mine"])
    assert out.split() == ["1000"]
    assert os.stat(os.path.join(tree, "d501", "mine")).st_uid == 501
    # The mount root's owner (0) is unmapped: EACCES although its mode is 0777.
    p = idrun.run([*opts, "--user", "1000:1000"], ["touch", "/mnt/nope"])
    assert p.returncode != 0 and "Permission denied" in p.stderr, p.stderr
    # Root inside cannot be mapped back to an on-disk id: EOVERFLOW, warned about before
    # anything runs (issue 20.3); running as a mapped uid:gid is not (only the top
    # directory's owner is still warned about).
    p = idrun.run(opts, ["touch", "/mnt/d501/root-file"])
    assert p.returncode != 0 and "Value too large" in p.stderr, p.stderr
    assert p.stderr.startswith("idrun: warning: ") and "EOVERFLOW" in p.stderr, p.stderr
    p = idrun.run([*opts, "--user", "1000:1000"], ["true"])
    assert p.returncode == 0 and "EOVERFLOW" not in p.stderr and "gid 0" not in p.stderr
    # --user 1000 alone runs as gid 0, which the uid= pair leaves on disk as gid 0.
    p = idrun.run([*opts, "--user", "1000"], ["touch", "/mnt/d501/gid0"])
    assert p.returncode == 0, p.stderr
    assert "owned on disk by uid 501 and gid 0" in p.stderr, p.stderr
    st = os.stat(os.path.join(tree, "d501", "gid0"))
    assert (st.st_uid, st.st_gid) == (501, 0)
    # A host target the namespace does not map is refused like the pair's (issue 20.6).
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:idmap=uids=501-1000-1"], ["true"])
    _refused(p, "host uid 1000 is not mapped by the launched namespace")


def _preview_agrees(idrun, opts, ns=NS, user=(), min_owners=3):
    """``idrun map … --files`` says how each on-disk owner shows inside; a real launch
    stats one entry of every owner and must see exactly that (65534 for the overflow id)."""
    vol = idrun.plan([*ns, *user, *opts, "--files"])["mounts"][0]["files"]
    assert vol["entries"] >= 2
    owners = vol["owners"]
    assert len({o["on_disk"] for o in owners if o["kind"] == "uid"}) >= min_owners, owners
    paths = ["/mnt/" + o["example"] if o["example"] else "/mnt" for o in owners]
    fmt = 'for f in "$@"; do stat -c "%u %g" "$f"; done'
    out = idrun.ok([*ns, *user, *opts], ["sh", "-c", fmt, "sh", *paths]).split("\n")
    seen = [int(line.split()[o["kind"] == "gid"]) for line, o in zip(out, owners)]
    assert seen == [65534 if o["inside"] is None else o["inside"] for o in owners], \
        (opts, owners, seen)
    return vol


@pytest.mark.root
@pytest.mark.kernel
def test_root_files_preview_agrees_with_a_launch(idrun, tree):
    for opts in (["-v", f"{tree}:/mnt"], ["-v", f"{tree}:/mnt:idmap"],
                 ["-v", f"{tree}:/mnt:uid=501:1000,uid=502:1001"],
                 ["-v", f"{tree}:/mnt:idmap=uids=@501-1000-1"]):
        _preview_agrees(idrun, opts)
    # Who can create files: root inside gets EOVERFLOW through uid=501:1000, uid 1000
    # creates files owned by on-disk 501, as the preview says.
    opts = ["-v", f"{tree}:/mnt:uid=501:1000"]
    root = _preview_agrees(idrun, opts)["create"]["uid"]
    assert root["runs_as"] == 0 and root["runs_as_on_disk"] is None
    assert root["can"] == [[1000, 1]]
    p = idrun.run([*NS, *opts], ["touch", "/mnt/d501/root-file"])
    assert p.returncode != 0 and "Value too large" in p.stderr, p.stderr
    user = _preview_agrees(idrun, opts, user=["--user", "1000:1000"])["create"]["uid"]
    assert user["runs_as"] == 1000 and user["runs_as_on_disk"] == 501
    idrun.ok([*NS, "--user", "1000:1000", *opts], ["touch", "/mnt/d501/by-1000"])
    assert os.stat(os.path.join(tree, "d501", "by-1000")).st_uid == 501


@pytest.mark.root
@pytest.mark.kernel
def test_root_tmpfs_idmap_depends_on_kernel(idrun):
    p = idrun.run([*NS, "--tmpfs", "/mnt:idmap,size=1m,mode=1777"],
                  ["sh", "-c", "touch /mnt/x && stat -c %u /mnt/x"])
    if _kernel() >= (6, 3):
        assert p.returncode == 0 and p.stdout.split() == ["0"], p.stderr
    elif _kernel() < (5, 12):
        _refused(p, "tmpfs", "cannot make id-mapped mounts", "lacks mount_setattr(2)")
    else:
        _refused(p, "tmpfs", "EINVAL", "MOUNT_ATTR_IDMAP")


@pytest.mark.kernel
def test_tmpfs_and_workdir(idrun, basic_opts):
    out = idrun.ok([*basic_opts, "--tmpfs", "/mnt:size=1m,mode=1777", "-w", "/mnt"],
                   ["sh", "-c", "pwd; touch x; stat -c %a /mnt"])
    assert out.split() == ["/mnt", "1777"]


@pytest.fixture
def scratch(shared_dir):
    return shared_dir


ROOTFS_SCRIPT = ("id -u; ls -ln / | grep -c bin; ls /proc | grep -c '^[0-9]'; "
                 "echo x > /dev/null && echo devnull-ok")


@pytest.mark.kernel
def test_rootfs_busybox(idrun, basic_opts, scratch):
    root = it.busybox_root(scratch)
    out = idrun.ok([*basic_opts, "--rootfs", root, "--pid"], ["/bin/sh", "-c", ROOTFS_SCRIPT])
    uid, bins, procs, devnull = out.split()
    assert (uid, bins, devnull) == ("0", "1", "devnull-ok")
    assert int(procs) <= 6, out     # init, the command and its pipeline: the new PID namespace only
    assert os.listdir(os.path.join(root, "dev")) == []      # /dev was a mount inside


@pytest.mark.kernel
@pytest.mark.parametrize("wait", [["--fork"], ["--json-status-fd", "1"]],
                         ids=["fork", "json-status-fd"])
def test_rootfs_with_a_waiting_launcher(idrun, basic_opts, scratch, wait):
    """A launcher that stays to wait for the command runs its wrapper after the pivot:
    nothing it needs may be loaded from the host's tree by then (idrun's modules are
    not inside the root)."""
    root = it.busybox_root(scratch)
    p = idrun.run([*basic_opts, "--rootfs", root, *wait], ["/bin/sh", "-c", "exit 7"])
    assert p.returncode == 7, p.stderr
    assert "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr


@pytest.mark.root
@pytest.mark.kernel
def test_root_rootfs_idmap_shows_root_owned_files(idrun):
    _no_idmap_kernel()
    scratch = tempfile.mkdtemp(prefix="idrun-rootfs-", dir=_idmap_dir())
    root = it.busybox_root(scratch)
    plain = idrun.ok([*NS, "--rootfs", root], ["stat", "-c", "%u", "/bin/busybox"])
    assert plain.split() == ["65534"]
    try:
        mapped = idrun.ok([*NS, "--rootfs", f"{root}:idmap"],
                          ["stat", "-c", "%u", "/bin/busybox"])
        assert mapped.split() == ["0"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.rootless
@pytest.mark.kernel
def test_rootless_plain_volume(idrun, scratch):
    open(os.path.join(scratch, "mine"), "w").close()
    out = idrun.ok(["-r", "-v", f"{scratch}:/mnt:ro"],
                   ["sh", "-c", "stat -c %u /mnt/mine; touch /mnt/x 2>&1 || echo refused"])
    assert out.split()[0] == "0" and "refused" in out


@pytest.mark.rootless
@pytest.mark.kernel
def test_rootless_files_preview_agrees_with_a_launch(idrun, scratch):
    """Rootless, plain volumes: your files show as 0 under -r, root's (in /etc) as 65534."""
    open(os.path.join(scratch, "mine"), "w").close()
    mine = _preview_agrees(idrun, ["-v", f"{scratch}:/mnt"], ns=["-r"], min_owners=1)
    assert {o["inside"] for o in mine["owners"]} == {0}
    assert mine["create"]["uid"]["runs_as_on_disk"] == os.getuid()
    etc = _preview_agrees(idrun, ["-v", "/etc:/mnt"], ns=["-r"], min_owners=1)
    assert any(o["on_disk"] == 0 and o["inside"] is None for o in etc["owners"])


@pytest.mark.rootless
@pytest.mark.kernel
def test_rootless_idmap_refused_before_start(idrun, scratch):
    marker = os.path.join(scratch, "ran")
    for opts in (["-v", f"{scratch}:/mnt:idmap"], ["-v", f"{scratch}:/mnt:uid=1000:0"],
                 ["--rootfs", f"{scratch}:idmap"], ["--tmpfs", "/mnt:idmap"]):
        p = idrun.run(["-r", *opts], ["touch", marker])
        _refused(p, "CAP_SYS_ADMIN", "keep-id")
        assert not os.path.exists(marker)


def test_volume_errors_are_one_line(idrun, basic_opts, scratch):
    cases = [
        (["-v", f"{scratch}"], "no DST"),
        (["-v", f"{scratch}:mnt"], "not an absolute path"),
        (["-v", f"{scratch}:/mnt:rox"], "column"),
        (["-v", f"{scratch}/missing:/mnt"], "SRC"),
        (["-v", f"{scratch}:/no/such/dir"], "--rootfs"),
        (["--rootfs", f"{scratch}/missing"], "--rootfs"),
    ]
    for opts, word in cases:
        _refused(idrun.run([*basic_opts, *opts], ["true"]), word)


@pytest.mark.root
@pytest.mark.kernel
def test_root_unsupported_filesystem_is_one_line_and_verify_checks_mounts(idrun, tree):
    """procfs cannot be id-mapped: the kernel's EINVAL comes back naming the filesystem
    type, the mount and the errno, from a launch and from `idrun map --verify`."""
    marker = os.path.join(tree, "ran")
    p = idrun.run([*NS, "-v", "/proc:/mnt:idmap"], ["touch", marker])
    _refused(p, "/proc", "(proc)", "EINVAL")
    assert not os.path.exists(marker)
    p = idrun.run(["map", "--verify", *NS, "-v", "/proc:/mnt:idmap"], None)
    _refused(p, "(proc)", "EINVAL")
    out = idrun.ok(["map", "--verify", *NS, "-v", f"{tree}:/mnt:idmap"], None)
    assert "id-mapped mounts: 1 built detached and dropped again" in out


@pytest.mark.rootless
def test_rootless_own_id_pair_hint(idrun, caller, tree):
    """Issue 20.5: the caller's own uid in a pair gets the exact command that works."""
    p = idrun.run(["-r", "-v", f"{tree}:/mnt:uid={caller.uid}:1000"], ["true"])
    _refused(p, f"--userns keep-id:uid=1000 -v {tree}:/mnt")
    p = idrun.run(["--userns", "keep-id:uid=1000", "-v", f"{tree}:/mnt"],
                  ["stat", "-c", "%u", "/mnt"])
    assert p.returncode == 0 and p.stdout.split() == ["1000"] and p.stderr == "", p.stderr
LEAK_SCRIPT = ("mkdir -p /mnt/sub /mnt/b 2>/dev/null; mount -t tmpfs idrun-leak /mnt/sub && mount --bind /mnt/sub /mnt/b "
               "&& echo ready && read x; exit 0")


def _launch_and_look(idrun, opts, outer_dirs):
    """Run LEAK_SCRIPT (a tmpfs and a bind made inside, through /mnt) and look at the
    host's namespace while it waits and after it ended: neither may show them."""
    before = _mounts_full("/proc/self/mountinfo")
    p = idrun.popen(opts, ["sh", "-c", LEAK_SCRIPT], stdin=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        assert line == "ready\n", (line, p.stderr.read() if not line else "")
        # The wrapper (propagation.py, as root) is the host here; rootless, this process.
        where = (f"/proc/{p.pid}/mountinfo" if idrun.prefix[1:2] == [PROPAGATION]
                 else "/proc/self/mountinfo")
        during = [m for m in _mounts_full(where) - before
                  if "idrun-leak" in m or any(f" {d}/" in m for d in outer_dirs)]
        assert during == [], f"mounts made inside reached the host's namespace: {during}"
    finally:
        p.stdin.close()
        err = p.stderr.read()
        p.wait(60)
    # The documented owner warning of :idmap volumes may be there; nothing else.
    other = [ln for ln in err.splitlines() if not ln.startswith("idrun: warning:")]
    assert p.returncode == 0 and other == [], (opts, p.returncode, err)


def _mounts_full(path: str) -> set[str]:
    """'root mountpoint fstype source' per mount: a copied namespace compares equal."""
    out = set()
    with open(path) as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            out.add(" ".join(fields[3:5] + fields[dash + 1:dash + 3]))
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("host_propagation", [
    "rshared", pytest.param("rslave", marks=pytest.mark.permutation),
    pytest.param("private", marks=pytest.mark.permutation)])
def test_mounts_made_inside_never_reach_the_host(idrun, basic_opts, host_propagation):
    """Finding 1 of issue 18: through an :idmap volume, a tmpfs and a bind made inside
    appeared in the host's namespace (shared /) and stayed after the run. Each kind of
    mount idrun attaches, rootful and rootless: nothing made inside reaches outside."""
    root = os.geteuid() == 0
    where, idmap_ok = _scratch_base(root)
    base = tempfile.mkdtemp(prefix="idrun-prop-", dir=where)
    try:
        src = os.path.join(base, "src")
        rootfs = it.busybox_root(base)
        for d in (src, rootfs):
            for sub in ("mnt/sub", "mnt/b") if d == rootfs else ("sub", "b"):
                os.makedirs(os.path.join(d, sub))
        opts = basic_opts if not root else NS
        # Rootless, a read-only mount takes CAP_SYS_ADMIN from the command (ro holds only
        # so): mounting inside then needs it back, with the warning that ro is advisory.
        ro_mounting = [] if root else ["--cap-add", "SYS_ADMIN"]
        cases = [["-v", f"{src}:/mnt"], ["-v", f"{src}:/mnt:ro", *ro_mounting],
                 ["--tmpfs", "/mnt"], ["--rootfs", rootfs],
                 ["--rootfs", rootfs, "-v", f"{src}:/mnt"]]
        if idmap_ok:
            cases += [["-v", f"{src}:/mnt:idmap"], ["-v", f"{src}:/mnt:ro,idmap"],
                      ["--rootfs", f"{rootfs}:idmap"],
                      ["--rootfs", f"{rootfs}:idmap", "-v", f"{src}:/mnt:idmap"]]
            if _kernel() >= (6, 3):
                cases.append(["--tmpfs", "/mnt:idmap"])
        os.chmod(base, 0o755)
        for case in cases:
            _launch_and_look(idrun, [*opts, *case], (src, rootfs, "/mnt"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _swapper(a: str, b: str, uid: int) -> int:
    """A process of ``uid`` that swaps ``a`` and ``b`` (renameat2 RENAME_EXCHANGE) in a
    loop until killed: an unprivileged owner of a rootfs racing root's launches."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            ea, eb = os.fsencode(a), os.fsencode(b)
            while True:
                libc.renameat2(-100, ea, -100, eb, 2)      # AT_FDCWD, RENAME_EXCHANGE
        finally:
            os._exit(1)
    return pid


@pytest.mark.root
def test_root_hostile_rootfs_race_creates_nothing_outside(idrun, host_propagation):
    """Finding 2 of issue 18: root checked DIR/DST with realpath, then created the mount
    point by path; the rootfs's owner swapping a component for a symlink made root
    create directories outside the root. 200 launches against a racing swapper:
    nothing appears outside, and every failure is one line with exit 125."""
    if host_propagation != "rshared":
        pytest.skip("one propagation is enough: the race is in the path walk")
    nobody = 65534
    base = tempfile.mkdtemp(prefix="idrun-race-")
    try:
        os.chmod(base, 0o755)
        victim = os.path.join(base, "victim")          # root-only, outside the root
        os.mkdir(victim, 0o700)
        data = os.path.join(base, "data")
        os.mkdir(data)
        root = it.busybox_root(base)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), nobody, nobody)
        os.chown(root, nobody, nobody)
        a, link = os.path.join(root, "a"), os.path.join(root, "link")
        os.mkdir(a)
        os.symlink("../victim", link)
        for p in (a, link):
            os.lchown(p, nobody, nobody)
        swapper = _swapper(a, link, nobody)
        results = []
        try:
            for n in range(int(os.environ.get("IDRUN_RACE_LAUNCHES", "200"))):
                p = idrun.run(["--uidmap", "0:100000:65536", "--rootfs", root,
                               "-v", f"{data}:/a/d{n}/x"], ["/bin/true"])
                results.append(p.returncode)
                assert "Traceback" not in p.stderr, p.stderr
                assert p.returncode in (0, 125), (p.returncode, p.stderr)
                if p.returncode == 125:
                    assert p.stderr.startswith("idrun: error:"), p.stderr
                    assert len(p.stderr.splitlines()) <= 2, p.stderr   # the line, a hint
        finally:
            os.kill(swapper, 9)
            os.waitpid(swapper, 0)
        print(f"race: {results.count(0)} launched, {results.count(125)} refused (125)")
        assert os.listdir(victim) == [], f"created outside the root: {os.listdir(victim)}"
        assert sorted(os.listdir(base)) == ["data", "root", "victim"], os.listdir(base)
        assert 0 in results, "no launch got through: the test did not race anything"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.kernel
def test_rootfs_symlinks_resolve_inside_the_root(idrun, basic_opts, scratch):
    """Finding 2 of issue 18, without a race: a --rootfs that is a symlink to / made root
    create the mount point on the host. A symlink --rootfs is resolved once (to / it is
    refused); a symlink in DST resolves with the root as "/", as runc's securejoin."""
    root = it.busybox_root(scratch)
    outside = os.path.join(scratch, "outside")
    os.mkdir(outside)
    to_slash = os.path.join(scratch, "to-slash")
    os.symlink("/", to_slash)
    mark = f"idrun-test-{os.getpid()}"
    p = idrun.run([*basic_opts, "--rootfs", to_slash, "-v", f"{scratch}:/tmp/{mark}/x"],
                  ["true"])
    _refused(p, "resolves to /")
    assert not os.path.exists(f"/tmp/{mark}")
    # ../outside and /abs escape the root if followed by path: inside, they stay in it.
    # (Their targets exist inside the root: a dangling one is refused in one line.)
    os.makedirs(os.path.join(root, "outside"))
    os.makedirs(os.path.join(root, outside.lstrip("/")))
    os.symlink("../outside", os.path.join(root, "up"))
    os.symlink(outside, os.path.join(root, "abs"))
    link = os.path.join(scratch, "link-to-root")
    os.symlink(root, link)
    src = os.path.join(scratch, "src")
    os.mkdir(src)
    open(os.path.join(src, "marker"), "w").close()
    out = idrun.ok([*basic_opts, "--rootfs", link, "-v", f"{src}:/up/m1",
                    "-v", f"{src}:/abs/m2"], ["sh", "-c", "ls /outside/m1 /" + outside.lstrip("/")
                                              + "/m2"])
    assert out.split().count("marker") == 2, out
    assert os.listdir(outside) == [], "a mount point was created outside the root"


# Run in this order in one launch, each followed by a write: an attack that fails changes
# nothing, so the next one meets the mount as idrun left it; the bind over /mnt (which may
# succeed: it stacks a copy that keeps the lock) comes last.
RO_ATTACKS = {
    "remount,rw": "mount -o remount,rw /mnt",
    "remount,bind,rw": "mount -o remount,bind,rw /mnt",
    "umount": "umount /mnt && echo UNMOUNTED",
    "umount -l": "umount -l /mnt && echo UNMOUNTED",
    "bind over, then rw": "mount --bind /mnt /mnt && mount -o remount,bind,rw /mnt",
}


@pytest.mark.kernel
def test_ro_holds_against_container_root(idrun, basic_opts):
    """Finding 3 of issue 18: `-v SRC:DST:ro` then `mount -o remount,bind,rw DST` inside
    succeeded and the command wrote. Container root (all capabilities in its namespace)
    tries each way to undo ro, for plain, idmap and tmpfs mounts: none may let it write
    or uncover what is beneath."""
    root = os.geteuid() == 0
    where, idmap_ok = _scratch_base(root)
    base = tempfile.mkdtemp(prefix="idrun-ro-", dir=where)
    try:
        os.chmod(base, 0o777)
        opts = NS if root else basic_opts
        cases = {"plain": ["-v", f"{base}:/mnt:ro"], "tmpfs": ["--tmpfs", "/mnt:ro"]}
        if idmap_ok:
            cases["idmap"] = ["-v", f"{base}:/mnt:ro,idmap"]
        # one launch a kind (launches take seconds in a TCG guest); each attack's line says
        # whether it ran, so a shell that stopped early cannot pass for attacks that failed
        script = "".join(f"{cmd}; touch /mnt/w 2>/dev/null && echo WROTE; echo 'tried {name}'; "
                         for name, cmd in RO_ATTACKS.items()) + "exit 0"
        for kind, case in cases.items():
            p = idrun.run([*opts, *case], ["sh", "-c", script])
            assert p.returncode == 0, (kind, p.stderr)
            assert "WROTE" not in p.stdout and "UNMOUNTED" not in p.stdout, \
                (kind, p.stdout, p.stderr)
            assert [line for line in p.stdout.splitlines() if line.startswith("tried ")] == \
                [f"tried {name}" for name in RO_ATTACKS], (kind, p.stdout)
            assert os.listdir(base) == [], kind
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.rootless
@pytest.mark.kernel
def test_rootless_rootfs_without_own_uid(idrun, scratch, subids):
    """Finding 5 of issue 18: rootless `--uidmap 0:1:N --rootfs DIR` failed to build /dev
    (EOVERFLOW: the caller's own ids are unmapped inside, so it could not create the
    tmpfs's entries). podman runs it; so does idrun now, /dev/null and all."""
    root = it.busybox_root(scratch)
    out = idrun.ok(["--uidmap", "0:1:2048", "--gidmap", "0:1:2048", "--rootfs", root],
                   ["/bin/sh", "-c", "id -u; echo x > /dev/null && echo devnull-ok; "
                                     "ls /dev | wc -l"])
    uid, ok, n = out.split()
    assert (uid, ok) == ("0", "devnull-ok") and int(n) >= 10, out
