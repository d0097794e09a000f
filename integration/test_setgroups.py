"""setgroups allow/deny as resolved, and --group-add, proven from inside.

/proc/self/setgroups must read what `idrun map` resolved, and the policy must
hold: under `deny` even root inside cannot call setgroups(2); under `allow` it
can. --group-add sets the supplementary groups (`id -G`).
"""
from __future__ import annotations

import os

import pytest
import testlib.integration as it

TRY_SETGROUPS = ("import os, sys\n"
                 "try:\n"
                 "    os.setgroups([int(sys.argv[1])])\n"
                 "    print('allowed', *os.getgroups())\n"
                 "except PermissionError:\n"
                 "    print('refused')\n")


def setgroups_probe(idrun, opts, python, gid):
    return idrun.ok(opts, [python, "-c", TRY_SETGROUPS, str(gid)]).split()


ROOT_POLICY = {
    "default-allow": (["--uidmap", "0:100000:65536"], "allow"),
    "explicit-allow": (["--uidmap", "0:100000:65536", "--setgroups", "allow"], "allow"),
    "explicit-deny": (["--uidmap", "0:100000:65536", "--setgroups", "deny"], "deny"),
    "map-root-user": (["-r"], "deny"),
}

ROOTLESS_POLICY = {
    "newgidmap-allow": (["--userns", "host"], "allow"),
    "explicit-deny": (["--userns", "host", "--setgroups", "deny"], "deny"),
    "map-root-user": (["-r"], "deny"),
    "map-current-user": (["-c"], "deny"),
}


def _check_policy(idrun, opts, policy, python):
    plan = idrun.plan(opts)
    assert plan["setgroups"] == policy, plan
    out = idrun.ok(opts, ["cat", "/proc/self/setgroups"])
    assert out.strip() == policy
    probe = setgroups_probe(idrun, opts, python, plan["user"]["gid"])
    if policy == "allow":
        assert probe == ["allowed", str(plan["user"]["gid"])], probe
    else:
        assert probe == ["refused"], probe


@pytest.mark.kernel
@pytest.mark.root
@pytest.mark.parametrize("case", list(ROOT_POLICY))
def test_root_setgroups_policy(idrun, inside_python, case):
    opts, policy = ROOT_POLICY[case]
    _check_policy(idrun, opts, policy, inside_python)


@pytest.mark.kernel
@pytest.mark.rootless
@pytest.mark.parametrize("case", list(ROOTLESS_POLICY))
def test_rootless_setgroups_policy(idrun, subids, inside_python, case):
    opts, policy = ROOTLESS_POLICY[case]
    _check_policy(idrun, opts, policy, inside_python)


@pytest.mark.rootless
def test_rootless_deny_keeps_callers_groups(idrun, caller):
    """Under deny, nothing can shed the caller's groups: id -G shows them mapped."""
    view = idrun.inside(["-r"])
    exp = {0} | {it.translate_in([[0, caller.gid, 1]], g, "gid") for g in caller.groups}
    assert view.groups == exp


@pytest.mark.root
def test_root_group_add(idrun, shared_dir):
    opts = ["--uidmap", "0:100000:65536", "--group-add", "5", "--group-add", "100"]
    plan = idrun.plan(opts)
    assert sorted(plan["groups"]) == [5, 100]
    view = idrun.inside(opts)
    assert view.groups == {0, 5, 100}
    assert view.setgroups == "allow"


@pytest.mark.root
def test_root_group_add_grants_access(idrun, shared_dir):
    """A supplementary group from --group-add opens a file of that group (host gid 100005)."""
    path = os.path.join(shared_dir, "group-only")
    with open(path, "w") as f:
        f.write("secret\n")
    os.chown(path, 0, 100005)
    os.chmod(path, 0o040)
    base = ["--uidmap", "0:100000:65536", "--user", "1000:1000"]
    p = idrun.run(base, ["cat", path])
    assert p.returncode != 0, "read without the group should fail"
    assert idrun.ok(base + ["--group-add", "5"], ["cat", path]) == "secret\n"


@pytest.mark.rootless
def test_rootless_group_add(idrun, subids):
    opts = ["--userns", "host", "--group-add", "100", "--group-add", "1000"]
    plan = idrun.plan(opts)
    assert sorted(plan["groups"]) == [100, 1000]
    view = idrun.inside(opts)
    assert view.groups == {0, 100, 1000}


@pytest.mark.parametrize("opts", [
    ["--uidmap", "0:100000:100", "--group-add", "5000"],        # unmapped group
    ["--uidmap", "0:100000:100", "--setgroups", "deny", "--group-add", "5"],
    ["-r", "--group-add", "5"],                                  # deny implied, 5 unmapped
], ids=["unmapped", "with-deny", "with-map-root-user"])
def test_group_add_refused(idrun, shared_dir, caller, opts):
    if not caller.privileged and opts[0] == "--uidmap":
        opts = ["--uidmap", "0:0:1", *opts[2:]]
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(opts, ["touch", marker])
    it.assert_refused(p, marker)
    assert idrun.map_run(opts).returncode == 125
