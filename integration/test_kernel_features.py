"""What idrun says and does on kernels with and without the mount features (issue 22).

Every test here runs in every VM guest (marked ``kernel``), from Debian 11's 5.10, which
has the new mount API (5.2) and close_range (5.9) but neither mount_setattr nor
id-mapped mounts (5.12), to the newest. idrun asks the kernel (a refused probe call);
these tests take the kernel's version as their independent oracle, so a wrong probe
fails here. On kernels with the features they assert the positive lines.
"""
from __future__ import annotations

import os
import platform
import subprocess
import tempfile

import pytest
import testlib.integration as it

RELEASE = platform.release()
NS = ["--uidmap", "0:100000:65536"]


def _version() -> tuple[int, int]:
    major, minor = RELEASE.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


# mount_setattr(2) and MOUNT_ATTR_IDMAP came in Linux 5.12 (no Debian kernel backports them)
OLD = _version() < (5, 12)


# Every test here checks that nothing it mounted stays in the host's mount namespace.
pytestmark = pytest.mark.usefixtures("no_mount_left")


@pytest.fixture
def scratch(shared_dir):
    return shared_dir


def _one_line_refusal(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 125, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "ENOSYS" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("idrun: error:")]
    assert len(errors) == 1, p.stderr
    return errors[0]


# --- idrun check ------------------------------------------------------------------

@pytest.mark.kernel
def test_check_lists_what_the_kernel_can_do(idrun, caller):
    p = idrun.run(["check", "--json"], None)
    assert p.returncode == 0, p.stderr      # own-id launches work on every kernel here
    checks = {c["id"]: c for c in it.idrun_json(p.stdout)["checks"]}
    assert checks["user_namespaces"]["status"] == "OK"
    assert checks["new_mount_api"]["status"] == "OK"                     # 5.2
    assert checks["close_range"]["status"] == "OK"
    assert "lacks" not in checks["close_range"]["detail"]                # 5.9
    setattr_, idmap = checks["mount_setattr"], checks["id_mapped_mounts"]
    if OLD:
        assert setattr_["status"] == "WARN", setattr_
        assert f"Linux {RELEASE} lacks mount_setattr" in setattr_["detail"], setattr_
        assert idmap["status"] == "WARN", idmap
        assert idmap["detail"].startswith(f"no: Linux {RELEASE} lacks mount_setattr(2)"), idmap
        assert "are refused" in idmap["detail"], idmap
    else:
        assert setattr_["status"] == "OK" and setattr_["detail"].startswith("yes"), setattr_
        if caller.privileged:
            # each mounted type was asked; tmpfs is among them (/dev/shm, /run). A guest
            # runs from its initramfs: before 6.3 none of its types (rootfs, tmpfs, 9p)
            # takes an id-mapped mount, which is a WARN saying so.
            detail = idmap["detail"]
            if detail.startswith("yes, for "):
                assert idmap["status"] == "OK", idmap
                tmpfs_ok = "tmpfs" in detail.split(";")[0]
            else:
                assert idmap["status"] == "WARN", idmap
                assert detail.startswith("the kernel has them, but no filesystem type "
                                         "mounted here takes them: refused for "), idmap
                tmpfs_ok = False
            assert "tmpfs" in detail, idmap
            assert tmpfs_ok == (_version() >= (6, 3)), idmap       # tmpfs: Linux 6.3
        else:
            assert idmap["status"] == "OK", idmap
            assert "need root" in idmap["detail"], idmap
    text = idrun.run(["check"], None).stdout
    for name in ("new mount API", "mount_setattr", "id-mapped mounts", "close_range"):
        assert name in text, text


# --- idrun map --verify -------------------------------------------------------------

@pytest.mark.kernel
def test_verify_says_how_this_kernel_builds_each_mount(idrun, basic_opts, scratch):
    opts = [*basic_opts, "-v", f"{scratch}:/mnt:ro", "--tmpfs", "/opt"]
    p = idrun.run(["map", "--verify", *opts], None)
    assert p.returncode == 0, p.stderr
    kernel = [ln.strip() for ln in p.stdout.splitlines() if ln.strip().startswith("kernel:")]
    assert len(kernel) == 1, p.stdout
    assert kernel[0].startswith(f"kernel: Linux {RELEASE}: new mount API yes"), kernel
    if OLD:
        assert "mount_setattr no" in kernel[0] and "id-mapped mounts no" in kernel[0], kernel
        assert "read-only by a mount(2) remount of each mount" in p.stdout, p.stdout
    else:
        assert "mount_setattr yes" in kernel[0] and "id-mapped mounts yes" in kernel[0], kernel
        assert "read-only by mount_setattr" in p.stdout, p.stdout
    d = it.idrun_json(idrun.run(["map", "--verify", "--json", *opts], None).stdout)
    assert d["verified"]["kernel_features"] == {
        "new_mount_api": True, "mount_setattr": not OLD, "idmapped_mounts": not OLD,
        "close_range": True}
    assert len(d["verified"]["mount_calls"]) == 2


# --- id-mapped mounts: refused before anything starts where the kernel lacks them -----

def _idmap_case(kind: str, scratch: str) -> tuple[list[str], str | None]:
    """(options, a mount point inside --rootfs that must not be created)."""
    if kind == "volume":
        return ["-v", f"{scratch}:/mnt:idmap"], None
    if kind == "tmpfs":
        return ["--tmpfs", "/mnt:idmap,size=1m"], None
    root = it.busybox_root(scratch)
    # a plain volume onto a new mount point inside DIR: a half-built launch makes it
    return ["--rootfs", f"{root}:idmap", "-v", f"{scratch}:/newpoint"], \
        os.path.join(root, "newpoint")


@pytest.mark.root
@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["volume", "rootfs", "tmpfs"])
def test_root_idmap_refused_before_anything_starts(idrun, scratch, kind,
                                                  no_new_children):
    opts, point = _idmap_case(kind, scratch)
    marker = os.path.join(scratch, "ran")
    p = idrun.run([*NS, *opts], ["/bin/sh", "-c", f"echo > {marker}"])
    if not OLD:
        # the kernel has the calls: whatever the filesystem says, it is not this refusal
        assert "cannot make id-mapped mounts" not in p.stderr, p.stderr
        return
    line = _one_line_refusal(p)
    assert f"this kernel (Linux {RELEASE}) cannot make id-mapped mounts" in line, line
    assert "lacks mount_setattr(2) (Linux 5.12+)" in line, line
    assert not os.path.exists(marker), "the command ran although idrun refused"
    if point is not None:
        assert not os.path.exists(point), "a mount point was made before the refusal"
    v = idrun.run(["map", "--verify", *NS, *opts], None)
    assert _one_line_refusal(v) == line


# --- what works without mount_setattr: plain volumes, --tmpfs, --rootfs ---------------

@pytest.mark.kernel
def test_readonly_volume_is_readonly_on_every_kernel(idrun, basic_opts, scratch, caller):
    src = os.path.join(scratch, "src")
    os.makedirs(os.path.join(src, "sub"))
    os.chmod(src, 0o777)
    os.chmod(os.path.join(src, "sub"), 0o777)
    with open(os.path.join(src, "file"), "w") as f:
        f.write("content\n")
    submount = caller.privileged   # a submount proves the read-only is recursive
    if submount:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1m", "tmpfs",
                        os.path.join(src, "sub")], check=True)
    try:
        out = idrun.ok([*basic_opts, "-v", f"{src}:/mnt:ro"], [
            "sh", "-c", "cat /mnt/file; touch /mnt/x 2>/dev/null || echo top-ro; "
                        "touch /mnt/sub/x 2>/dev/null || echo sub-ro"])
    finally:
        if submount:
            subprocess.run(["umount", os.path.join(src, "sub")], check=True)
    assert out.split() == ["content", "top-ro", "sub-ro"], out


@pytest.mark.kernel
def test_tmpfs_and_rootfs_without_pid_namespace(idrun, basic_opts, scratch):
    out = idrun.ok([*basic_opts, "--tmpfs", "/mnt:size=1m,mode=1777"],
                   ["sh", "-c", "touch /mnt/x && echo tmpfs-ok"])
    assert out.split() == ["tmpfs-ok"]
    root = it.busybox_root(scratch)
    # without --pid, /proc is the host's bound read-only (a read-only bind)
    out = idrun.ok([*basic_opts, "--rootfs", root], [
        "/bin/sh", "-c", "grep -c ^Uid: /proc/self/status; "
                         "touch /proc/x 2>/dev/null || echo proc-ro; echo > /dev/null && echo dev-ok"])
    assert out.split() == ["1", "proc-ro", "dev-ok"], out
