"""Volumes, id-mapped mounts, --tmpfs, --rootfs and --workdir on the real kernel.

Ownership is checked from both sides: `stat` inside the namespace and os.stat()
on the host, for files made before the run and during it. Every test also checks
that no mount is left in the host's mount namespace.
"""
from __future__ import annotations

import os
import platform
import shutil
import tempfile

import pytest

NS = ["--uidmap", "0:100000:65536"]          # root pass: the namespace of the spec's examples
STAT = 'for f in "$@"; do stat -c "%u" "$f"; done'


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


@pytest.fixture(autouse=True)
def no_mount_left():
    before = _mounts()
    yield
    assert _mounts() - before == set(), "a mount was left in the host's mount namespace"


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
    # Created inside by root: on disk as real host root (the documented warning).
    p = idrun.run([*NS, "-v", f"{tree}:/mnt:idmap"], ["sh", "-c", STAT + "; touch /mnt/new",
                                                       "sh"])
    assert p.returncode == 0, p.stderr
    assert "real host root" in p.stderr
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
    # Root inside cannot be mapped back to an on-disk id: EOVERFLOW.
    p = idrun.run(opts, ["touch", "/mnt/d501/root-file"])
    assert p.returncode != 0 and "Value too large" in p.stderr, p.stderr


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


def _busybox_root(base: str) -> str:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed (make deps installs it)")
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "id", "ls", "cat", "stat", "touch", "grep", "wc", "echo"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    return root


@pytest.fixture
def scratch(shared_dir):
    return shared_dir


ROOTFS_SCRIPT = ("id -u; ls -ln / | grep -c bin; ls /proc | grep -c '^[0-9]'; "
                 "echo x > /dev/null && echo devnull-ok")


@pytest.mark.kernel
def test_rootfs_busybox(idrun, basic_opts, scratch):
    root = _busybox_root(scratch)
    out = idrun.ok([*basic_opts, "--rootfs", root, "--pid"], ["/bin/sh", "-c", ROOTFS_SCRIPT])
    uid, bins, procs, devnull = out.split()
    assert (uid, bins, devnull) == ("0", "1", "devnull-ok")
    assert int(procs) <= 6, out     # init, the command and its pipeline: the new PID namespace only
    assert os.listdir(os.path.join(root, "dev")) == []      # /dev was a mount inside


@pytest.mark.root
@pytest.mark.kernel
def test_root_rootfs_idmap_shows_root_owned_files(idrun):
    _no_idmap_kernel()
    scratch = tempfile.mkdtemp(prefix="idrun-rootfs-", dir=_idmap_dir())
    root = _busybox_root(scratch)
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
