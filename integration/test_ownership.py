"""Files created inside belong, on the host, to the host ids the map predicts.

The command creates a file in a shared mode-1777 directory under /tmp; the test
checks the owner with os.stat() outside and `stat -c '%u %g'` inside, and the
reverse direction: a file made outside, seen from inside.
"""
from __future__ import annotations

import os

import pytest
import testlib.integration as it


def core_first(names, core):
    """Parametrize values: those in `core` plain, the rest marked `permutation`."""
    return [n if n in core else pytest.param(n, marks=pytest.mark.permutation) for n in names]

ROOT_OPTS = {
    "single-id": ["--uidmap", "0:1000:1"],
    "range": ["--uidmap", "0:100000:65536"],
    "range-user": ["--uidmap", "0:100000:65536", "--user", "1000:1001"],
    "split-gidmap": ["--uidmap", "0:100000:65536", "--gidmap", "0:200000:100",
                     "--gidmap", "100:300000:100"],
    "break-insert": ["--uidmap", "0:5000:100", "--uidmap", "+50:5010:10", "--user", "55:55"],
}

ROOTLESS_OPTS = {
    "map-root-user": ["-r"],
    "map-current-user": ["-c"],
    "subids-only": ["--uidmap", "0:1:2000"],
    "userns-host": ["--userns", "host"],
    "userns-keep-id": ["--userns", "keep-id"],
    "userns-nomap": ["--userns", "nomap"],
    "userns-auto": ["--userns", "auto"],
    "map-auto": ["--map-auto"],
    "user-option": ["--uidmap", "0:1:2000", "--user", "1000:1001"],
}


def check_file_owner(idrun, opts, shared_dir):
    plan = idrun.plan(opts)
    path = os.path.join(shared_dir, "made-inside")
    # The maps as the kernel has them: --userns auto may get another block than the
    # preview if ids were taken (or came into use) in between.
    out = idrun.ok(opts, ["sh", "-c", 'touch "$1" && stat -c "%u %g" "$1" && '
                          'cat /proc/self/uid_map && echo - && cat /proc/self/gid_map',
                          "sh", path])
    ids, _, maps = out.partition("\n")
    uid_text, _, gid_text = maps.partition("-\n")
    uid, gid = plan["user"]["uid"], plan["user"]["gid"]
    assert ids.split() == [str(uid), str(gid)], out
    host_uid = it.translate_out(it.parse_map(uid_text), uid)
    host_gid = it.translate_out(it.parse_map(gid_text), gid)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (host_uid, host_gid), plan
    return plan


def check_chown_inside(idrun, opts, shared_dir, cuid, cgid):
    """Root inside gives a file to other container ids: the host sees their host ids."""
    plan = idrun.plan(opts)
    hu, hg = it.translate_out(plan["uid_map"], cuid), it.translate_out(plan["gid_map"], cgid)
    assert hu is not None and hg is not None, plan
    path = os.path.join(shared_dir, "chowned")
    out = idrun.ok(opts, ["sh", "-c", 'touch "$1" && chown "$2:$3" "$1" && stat -c "%u %g" "$1"',
                          "sh", path, str(cuid), str(cgid)])
    assert out.split() == [str(cuid), str(cgid)]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (hu, hg), plan


def check_outside_file(idrun, opts, shared_dir, caller):
    """A file the caller makes outside is seen inside through the map (or as overflow)."""
    plan = idrun.plan(opts)
    path = os.path.join(shared_dir, "made-outside")
    with open(path, "w"):
        pass
    out = idrun.ok(opts, ["stat", "-c", "%u %g", path])
    exp = [it.translate_in(plan["uid_map"], caller.uid, "uid"),
           it.translate_in(plan["gid_map"], caller.gid, "gid")]
    assert [int(x) for x in out.split()] == exp, plan


@pytest.mark.kernel
@pytest.mark.root
@pytest.mark.parametrize("case", core_first(ROOT_OPTS, {"range-user", "split-gidmap"}))
def test_root_file_owner(idrun, shared_dir, case):
    check_file_owner(idrun, ROOT_OPTS[case], shared_dir)


@pytest.mark.root
@pytest.mark.parametrize("case", core_first(ROOT_OPTS, {"range"}))
def test_root_outside_file_seen_inside(idrun, shared_dir, caller, case):
    check_outside_file(idrun, ROOT_OPTS[case], shared_dir, caller)


@pytest.mark.root
def test_root_chown_inside(idrun, shared_dir):
    check_chown_inside(idrun, ["--uidmap", "0:100000:65536"], shared_dir, 1234, 4321)


@pytest.mark.kernel
@pytest.mark.rootless
@pytest.mark.parametrize("case", core_first(ROOTLESS_OPTS, {"map-root-user", "user-option",
                                                            "userns-keep-id", "userns-nomap"}))
def test_rootless_file_owner(idrun, subids, shared_dir, case):
    check_file_owner(idrun, ROOTLESS_OPTS[case], shared_dir)


@pytest.mark.rootless
@pytest.mark.parametrize("case", core_first(ROOTLESS_OPTS, {"userns-keep-id"}))
def test_rootless_outside_file_seen_inside(idrun, subids, shared_dir, caller, case):
    check_outside_file(idrun, ROOTLESS_OPTS[case], shared_dir, caller)


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_chown_inside_lands_on_subids(idrun, subids, shared_dir):
    check_chown_inside(idrun, ["--userns", "host"], shared_dir, 1234, 1500)
    st = os.stat(os.path.join(shared_dir, "chowned"))
    assert st.st_uid in subids.host_ids("uid") and st.st_gid in subids.host_ids("gid")


@pytest.mark.rootless
def test_rootless_cannot_chown_to_unmapped(idrun, shared_dir):
    """With only the caller mapped, root inside cannot give a file to another id."""
    path = os.path.join(shared_dir, "mine")
    p = idrun.run(["-r"], ["sh", "-c", 'touch "$1"; chown 1 "$1"; echo "rc=$?"', "sh", path])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("rc=1"), p.stdout + p.stderr
    assert os.stat(path).st_uid == os.geteuid()


# Expectations written here by hand, independent of the resolver `idrun map` runs (the
# kernel's part is test_*_file_owner's, so no `kernel` marker).

@pytest.mark.root
def test_root_file_owner_known_ids(idrun, shared_dir):
    path = os.path.join(shared_dir, "made-inside")
    idrun.ok(["--uidmap", "0:100000:65536", "--gidmap", "0:200000:65536", "--user", "7:8"],
             ["touch", path])
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (100007, 200008)


ROOTLESS_KNOWN = {
    # root inside makes one file, then setpriv(1) switches to 5:6 and makes another
    "setpriv-inside": (["--uidmap", "0:0:1", "--uidmap", "1:1:1000"],
                       'touch "$1/root-made" && '
                       'setpriv --reuid=5 --regid=6 --clear-groups touch "$1/made"',
                       (5, 6)),
    "user-option": (["--uidmap", "0:1:1000", "--user", "10:20"], 'touch "$1/made"', (11, 21)),
}


@pytest.mark.rootless
@pytest.mark.parametrize("case", list(ROOTLESS_KNOWN))
def test_rootless_file_owner_known_ids(idrun, subids, caller, shared_dir, case):
    """Container id n is intermediate id n (after the caller's own 0) or n+1 (sub-ids
    only), and intermediate id i >= 1 is host id start+i-1 of the first delegated range."""
    opts, script, (iu, ig) = ROOTLESS_KNOWN[case]
    idrun.ok(opts, ["sh", "-c", script, "sh", shared_dir])
    if case == "setpriv-inside":
        st = os.stat(os.path.join(shared_dir, "root-made"))
        assert (st.st_uid, st.st_gid) == (caller.uid, caller.gid)
    st = os.stat(os.path.join(shared_dir, "made"))
    assert (st.st_uid, st.st_gid) == (subids.uid[0][0] + iu - 1, subids.gid[0][0] + ig - 1)
