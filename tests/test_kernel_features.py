"""Kernel feature detection (kernelfeatures) and the VM matrix's configuration (issue 22).

The probes run for real on this host's kernel, which has every call; what idrun says
on a kernel that lacks them is tested for real on the 5.10 guest
(integration/test_kernel_features.py). Here that kernel can only be simulated: the
tests marked "simulated" preset the probe cache with ENOSYS, since no call on this
kernel returns it.
"""
from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idrun.cli import check
from idrun.system import kernelfeatures as kf
from idrun.errors import LaunchError

ROOT = Path(__file__).resolve().parents[1]


def _load_runner():
    spec = importlib.util.spec_from_file_location("vm_run_kf", ROOT / "integration" / "vm" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


run = _load_runner()


def test_probes_on_this_kernel_find_every_call():
    """Real: the host kernel (5.12 or later) has all of them; a probe that always said
    ENOSYS, or that passed its arguments wrongly (EFAULT, success), fails here."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    assert release >= (5, 12)
    for name in ("open_tree", "move_mount", "fsopen", "mount_setattr", "close_range"):
        kf._cache.pop(name, None)
        assert kf.probe(name) in (errno.EINVAL, errno.EPERM), name
        assert kf.has(name)
    assert kf.lacking_for_idmap() is None
    assert kf.features() == {"new_mount_api": True, "mount_setattr": True,
                             "idmapped_mounts": True, "close_range": True}


def test_idmap_flag_probe_as_root():
    if os.geteuid() != 0:
        pytest.skip("the MOUNT_ATTR_IDMAP probe needs the right to mount")
    kf._cache.pop("idmap", None)
    assert kf.idmap_flag() is True


@pytest.fixture
def old_kernel(monkeypatch):
    """Simulated: a 5.10 kernel (mount_setattr refused with ENOSYS, the rest present)."""
    cache = {"open_tree": errno.EINVAL, "move_mount": errno.EINVAL, "fsopen": errno.EINVAL,
             "mount_setattr": errno.ENOSYS, "close_range": errno.EINVAL}
    monkeypatch.setattr(kf, "_cache", cache)
    monkeypatch.setattr(kf, "release", lambda: "5.10.0-46-amd64")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        ("Linux", "h", "5.10.0-46-amd64", "#1", "x86_64")))
    return cache


def test_simulated_old_kernel_refusal_names_kernel_and_lack(old_kernel):
    assert kf.lacking_for_idmap() == "mount_setattr(2) (Linux 5.12+)"
    assert kf.idmap_flag() is False
    with pytest.raises(LaunchError) as e:
        kf.require_idmap('--volume "/a:/b:idmap"')
    assert e.value.message == ('--volume "/a:/b:idmap": this kernel (Linux 5.10.0-46-amd64) '
                               "cannot make id-mapped mounts: it lacks mount_setattr(2) "
                               "(Linux 5.12+)")
    assert kf.features() == {"new_mount_api": True, "mount_setattr": False,
                             "idmapped_mounts": False, "close_range": True}
    assert "mount_setattr no" in kf.summary() and "id-mapped mounts no" in kf.summary()


def test_simulated_old_kernel_check_lines(old_kernel):
    lines = {c.name: c for c in check._kernel_features(root=True)}
    assert lines["new mount API"].status == check.OK
    assert lines["mount_setattr"].status == check.WARN
    assert "Linux 5.10.0-46-amd64 lacks mount_setattr" in lines["mount_setattr"].detail
    assert lines["id-mapped mounts"].status == check.WARN
    assert lines["id-mapped mounts"].detail.startswith("no: Linux 5.10.0-46-amd64 lacks")
    assert lines["close_range"].status == check.OK
    # WARN, not FAIL: own-id launches (and plain mounts) still work there
    assert check.own_ids_work(list(lines.values()))


def test_check_ids_are_in_the_schema():
    import json
    schema = json.loads((ROOT / "src" / "idrun" / "schema.json").read_text())
    ids = set(schema["$defs"]["check_id"]["enum"])
    for c in check._kernel_features(root=False):
        assert check.check_id(c.name) in ids


def test_mount_points_by_type_first_of_each_and_skips_pseudo():
    text = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            "23 22 0:5 / /proc rw - proc proc rw\n"
            "24 22 0:20 / /dev/shm rw shared:2 - tmpfs tmpfs rw\n"
            "25 22 0:21 / /tmp rw - tmpfs tmpfs rw\n"
            "26 22 0:22 / /mnt/my\\040dir rw - 9p share rw\n"
            "garbage line\n")
    assert kf.mount_points_by_type(text) == {"ext4": "/", "tmpfs": "/dev/shm",
                                             "9p": "/mnt/my dir"}


# --- integration/vm/run.py ----------------------------------------------------------

def test_mirrors_read_both_source_formats(tmp_path, monkeypatch):
    """Both VM harnesses take the mirrors from scripts/debian-rootfs.sh: the host's apt
    sources (one-line and deb822), or IDRUN_DEBIAN_MIRROR; none found is an error."""
    monkeypatch.delenv("IDRUN_DEBIAN_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (tmp_path / "sources.list").write_text("# nothing\n")
    (d / "a.list").write_text("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian-security "
                              "bookworm-security main\n")
    (d / "b.sources").write_text("Types: deb\nURIs: http://other.example/x http://m.example/debian/\n"
                                 "Suites: bookworm\n")
    assert run.mirrors(str(tmp_path)) == ("http://m.example/debian",
                                          "http://m.example/debian-security")
    monkeypatch.setenv("IDRUN_DEBIAN_MIRROR", "http://o.example/debian")
    assert run.mirrors(str(tmp_path)) == ("http://o.example/debian",
                                          "http://o.example/debian-security")
    monkeypatch.setenv("IDRUN_DEBIAN_MIRROR", "http://o.example/debian http://s.example/sec/")
    assert run.mirrors(str(tmp_path)) == ("http://o.example/debian", "http://s.example/sec")
    monkeypatch.delenv("IDRUN_DEBIAN_MIRROR")
    (d / "b.sources").write_text("URIs: http://m.example/ubuntu\n")
    with pytest.raises(SystemExit, match=r"no \.\.\./debian URI .*IDRUN_DEBIAN_MIRROR"):
        run.mirrors(str(tmp_path))


def test_kernels_txt_kernel_suites_and_subsets():
    envs = run.load_environments()
    assert {"bookworm", "trixie", "sid", "bullseye", "trixie-bpo"} <= set(envs)
    old = envs["bullseye"]
    assert old.suite == "bookworm" and old.kernel_suites == ["bullseye", "bullseye-security"]
    assert "integration/test_kernel_features.py" in old.tests
    assert envs["bookworm"].kernel_suites == [] and envs["bookworm"].tests == []
    # the subset joins vm-test's -m, unless the arguments name test files themselves
    m = ["-m", "kernel and not permutation"]
    assert run.guest_pytest_args(old, m) == [*m, *old.tests]
    assert run.guest_pytest_args(old, ["integration/test_maps.py"]) == ["integration/test_maps.py"]
    assert run.guest_pytest_args(envs["sid"], m) == m


def test_kernels_txt_rejects_a_missing_test_file(tmp_path):
    f = tmp_path / "k.txt"
    f.write_text("x bookworm - linux-image-amd64 bullseye integration/no_such_test.py\n")
    with pytest.raises(SystemExit, match="no_such_test.py does not exist"):
        run.load_environments(f)


def test_no_mirror_host_in_the_tree():
    """Mirrors come from the host's apt sources or IDRUN_DEBIAN_MIRROR, never from a
    host name written in a harness."""
    out = subprocess.run(["git", "-C", str(ROOT), "grep", "-lE",
                          r"(deb|security|ftp[0-9.a-z]*)\.debian\.org|archive\.ubuntu\.com"],
                         capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    assert out.stdout.split() == [], out.stdout


def test_vm_accel_has_one_vocabulary(monkeypatch, tmp_path):
    """IDRUN_VM_ACCEL takes tcg|kvm in both harnesses; the Vagrantfile alone maps them
    to libvirt's domain types, and libvirt's words are refused here."""
    monkeypatch.delenv("IDRUN_VM_ACCEL", raising=False)
    cmd = run.qemu_cmd(tmp_path, tmp_path, tmp_path)
    assert cmd[cmd.index("-accel") + 1] == "tcg"
    monkeypatch.setenv("IDRUN_VM_ACCEL", "kvm")
    assert "host" in run.qemu_cmd(tmp_path, tmp_path, tmp_path)
    monkeypatch.setenv("IDRUN_VM_ACCEL", "qemu")
    with pytest.raises(SystemExit, match="IDRUN_VM_ACCEL='qemu': use one of tcg, kvm"):
        run.vm_accel()
    vagrantfile = (ROOT / "vagrant" / "Vagrantfile").read_text()
    assert 'LIBVIRT_DRIVER = { "tcg" => "qemu", "kvm" => "kvm" }' in vagrantfile
    assert 'ENV.fetch("IDRUN_VM_ACCEL", "tcg")' in vagrantfile


def test_superseded_images_are_only_the_environments_own(tmp_path):
    """trixie's rebuild removed trixie-bpo's image (a "trixie-*" glob): names that share
    a prefix are different environments."""
    for n in ("trixie-0123456789abcdef", "trixie-bpo-0123456789abcdef", "trixie-old",
              ".trixie-fedcba9876543210.partial", ".trixie-bpo-fedcba9876543210.partial"):
        (tmp_path / n).mkdir()
    assert [p.name for p in run.own_images(tmp_path, "trixie")] == ["trixie-0123456789abcdef"]
    assert [p.name for p in run.own_images(tmp_path, "trixie", partial=True)] == \
        [".trixie-fedcba9876543210.partial"]
    assert [p.name for p in run.own_images(tmp_path, "trixie-bpo")] == \
        ["trixie-bpo-0123456789abcdef"]


def test_child_waits_for_the_guest_up_line(tmp_path):
    """The early-boot watchdog's wait: real child processes, no QEMU."""
    import time
    up = run.Child(["sh", "-c", "echo SeaBIOS; echo 'Booting from ROM...GUEST-UP kernel=x'; "
                    "sleep 30"], "", tmp_path / "a.log")
    try:
        assert up.wait_for_text("GUEST-UP ", 20)
    finally:
        up.close()
    hung = run.Child(["sleep", "30"], "", tmp_path / "b.log", grace=1)
    try:
        t0 = time.monotonic()
        assert not hung.wait_for_text("GUEST-UP ", 1.5)
        assert 1.4 <= time.monotonic() - t0 < 10
    finally:
        hung.close()
    gone = run.Child(["true"], "", tmp_path / "c.log")
    try:
        t0 = time.monotonic()
        assert not gone.wait_for_text("GUEST-UP ", 20)
        assert time.monotonic() - t0 < 10
    finally:
        gone.close()
