"""--cap-add / --cap-drop on the real kernel: the five sets as /proc/self/status shows
them inside, as container root and as a non-root --user, root and rootless."""
from __future__ import annotations

import pytest
import testlib.integration as it

SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


ALL = (1 << (_last_cap() + 1)) - 1


def _caps(idrun, opts) -> dict[str, int]:
    out = idrun.ok(opts, ["grep", "^Cap", "/proc/self/status"])
    return {k.rstrip(":"): int(v, 16) for k, v in (ln.split() for ln in out.splitlines())}


@pytest.mark.kernel
def test_default_is_every_capability(idrun, basic_opts):
    caps = _caps(idrun, basic_opts)
    assert caps["CapEff"] == caps["CapBnd"] == ALL and caps["CapAmb"] == 0, caps


@pytest.mark.kernel
def test_cap_drop_all_and_cap_add(idrun, basic_opts):
    assert set(_caps(idrun, [*basic_opts, "--cap-drop", "ALL"]).values()) == {0}
    caps = _caps(idrun, [*basic_opts, "--cap-drop", "all", "--cap-add", "net_admin"])
    assert caps == {k: 1 << CAP_NET_ADMIN for k in SETS}, caps
    caps = _caps(idrun, [*basic_opts, "--cap-drop", "CAP_SYS_ADMIN"])
    assert caps == {k: ALL & ~(1 << CAP_SYS_ADMIN) for k in SETS}, caps


@pytest.mark.kernel
def test_cap_add_reaches_a_non_root_user(idrun, basic_opts):
    """A non-root --user has no capabilities by default; an explicit set is kept across
    the id switch and the exec (ambient), as podman does."""
    assert _caps(idrun, [*basic_opts, "--user", "0:0"])["CapEff"] == ALL
    opts = [*basic_opts, "--user", "1000:1000"] if "-r" not in basic_opts else None
    if opts is None:
        pytest.skip("-r maps one id only")
    assert _caps(idrun, opts)["CapEff"] == 0
    caps = _caps(idrun, [*opts, "--cap-drop", "ALL", "--cap-add", "CAP_NET_ADMIN"])
    assert caps == {k: 1 << CAP_NET_ADMIN for k in SETS}, caps


def test_unknown_capability_is_one_line(idrun, basic_opts, tmp_path):
    marker = tmp_path / "ran"
    for opt in (["--cap-drop", "CAP_BOGUS"], ["--cap-add", "sys_bogus"], ["--cap-add", ""]):
        p = idrun.run([*basic_opts, *opt], ["touch", str(marker)])
        it.assert_refused(p, str(marker))
        assert len(p.stderr.strip().splitlines()) == 1 and "capability" in p.stderr, p.stderr


def test_dry_run_shows_the_set(idrun, basic_opts):
    out = idrun.ok([*basic_opts, "--cap-drop", "ALL", "--cap-add", "sys_chroot", "--dry-run"],
                   None)
    assert "capabilities of the command: CAP_SYS_CHROOT" in out, out
    p = idrun.run([*basic_opts, "--cap-drop", "net_raw", "--dry-run", "--json"], None)
    assert p.returncode == 0, p.stderr
    doc = __import__("json").loads(p.stdout)
    assert "CAP_NET_RAW" not in doc["capabilities"] and "CAP_SYS_ADMIN" in doc["capabilities"]


@pytest.mark.rootless
@pytest.mark.kernel
def test_rootless_read_only_mount_takes_sys_admin(idrun, shared_dir):
    """Rootless, the kernel does not lock the mounts (their namespace belongs to the
    command's user namespace): idrun leaves CAP_SYS_ADMIN out so ro holds, unless
    --cap-add SYS_ADMIN asks for it, which is warned about once."""
    opts = ["-r", "-v", f"{shared_dir}:/mnt:ro"]
    caps = _caps(idrun, opts)
    assert caps["CapEff"] == caps["CapBnd"] == ALL & ~(1 << CAP_SYS_ADMIN), caps
    assert _caps(idrun, ["-r"])["CapEff"] == ALL          # without ro: the default
    p = idrun.run([*opts, "--cap-add", "SYS_ADMIN"], ["grep", "^CapEff", "/proc/self/status"])
    assert p.returncode == 0 and int(p.stdout.split()[1], 16) == ALL, p.stdout
    assert p.stderr.count("advisory") == 1 and len(p.stderr.splitlines()) == 1, p.stderr
