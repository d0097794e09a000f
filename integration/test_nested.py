"""idrun inside idrun.

Inside an outer namespace, root (with all capabilities there) runs idrun again:
it is privileged in that namespace, its from ids are the outer namespace's ids,
and lines are split where they cross the outer map's extents (the kernel refuses
a line spanning two parent extents). The inner /proc/self/uid_map is read
inside the inner namespace (outside ids relative to the outer one) and compared
with `idrun map --json` run in the outer namespace; a file made in the inner
namespace shows the composed host owner.
"""
from __future__ import annotations

import os

import pytest

from testlib import idrun_json
import testlib.integration as it

ROOT_OUTER = ["--uidmap", "0:0:1", "--uidmap", "1:100000:65535"]


def nested_plan(idrun, outer, inner) -> dict:
    out = idrun.ok(outer, idrun.argv(["map", *inner, "--json"]))
    return idrun_json(out)


def nested_inside(idrun, outer, inner, path):
    script = it.INSIDE_REPORT + '; touch "$1"'
    out = idrun.ok(outer, idrun.argv(inner, ["sh", "-c", script, "sh", path]))
    return it.InsideView.parse(out)


def check_nested(idrun, outer, inner, shared_dir, exp_lines=None):
    plan = nested_plan(idrun, outer, inner)
    if exp_lines is not None:
        assert plan["uid_map"] == exp_lines and plan["gid_map"] == exp_lines, plan
    path = os.path.join(shared_dir, "nested")
    view = nested_inside(idrun, outer, inner, path)
    assert view.uid_map == plan["uid_map"]
    assert view.gid_map == plan["gid_map"]
    assert view.setgroups == plan["setgroups"]
    assert (view.uid, view.gid) == (plan["user"]["uid"], plan["user"]["gid"])
    return plan, os.stat(path)


@pytest.mark.root
def test_root_nested_subset(idrun, shared_dir):
    plan, st = check_nested(idrun, ROOT_OUTER, ["--uidmap", "0:1000:10"], shared_dir,
                            [[0, 1000, 10]])
    assert plan["mode"] != "rootless", "root inside the outer namespace is privileged there"
    # inner 0 -> outer 1000 -> host 100000 + 999
    assert (st.st_uid, st.st_gid) == (100999, 100999)


@pytest.mark.root
def test_root_nested_identity_outer(idrun, shared_dir):
    plan, st = check_nested(idrun, ["--uidmap", "0:0:100000"],
                            ["--uidmap", "0:1000:10", "--user", "3:4"], shared_dir,
                            [[0, 1000, 10]])
    assert (st.st_uid, st.st_gid) == (1003, 1004)


@pytest.mark.kernel
@pytest.mark.root
def test_root_nested_line_split_at_outer_extents(idrun, shared_dir):
    """Inner 0:0:2 spans the outer extents 0->0 and 1->100000: written as two lines."""
    plan, st = check_nested(idrun, ROOT_OUTER, ["--uidmap", "0:0:2", "--user", "1:1"],
                            shared_dir, [[0, 0, 1], [1, 1, 1]])
    assert (st.st_uid, st.st_gid) == (100000, 100000)


@pytest.mark.root
def test_root_nested_unmapped_outer_id_refused(idrun, shared_dir):
    """Ids the outer namespace does not have cannot be mapped by the inner idrun."""
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["--uidmap", "0:0:1000"],
                  idrun.argv(["--uidmap", "0:5000:1"], ["touch", marker]))
    it.assert_refused(p, marker)


@pytest.mark.root
def test_root_three_levels(idrun, shared_dir):
    middle = idrun.argv(["--uidmap", "0:0:1", "--uidmap", "1:1000:1000"])
    inner = ["--uidmap", "0:5:1"]
    path = os.path.join(shared_dir, "level3")
    out = idrun.ok(ROOT_OUTER, middle + ["--"] + idrun.argv(
        inner, ["sh", "-c", 'cat /proc/self/uid_map; touch "$1"', "sh", path]))
    assert it.parse_map(out) == [[0, 5, 1]]
    # level3 0 -> level2 5 -> level1 1004 -> host 100000 + 1003
    assert os.stat(path).st_uid == 101003


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_nested(idrun, subids, shared_dir):
    plan, st = check_nested(idrun, ["--userns", "host"], ["--uidmap", "0:1000:10"],
                            shared_dir, [[0, 1000, 10]])
    host_uid = subids.compose("uid", [[0, 1000, 1]])[0][1]
    host_gid = subids.compose("gid", [[0, 1000, 1]])[0][1]
    assert (st.st_uid, st.st_gid) == (host_uid, host_gid)


@pytest.mark.rootless
def test_rootless_nested_in_self_map(idrun, caller, shared_dir):
    """Inside `-r` only the caller exists: an inner idrun may map it, nothing else.
    (-r denies setgroups, and a child namespace inherits that, hence the option.)"""
    path = os.path.join(shared_dir, "nested")
    inner = ["--uidmap", "0:0:1", "--setgroups", "deny"]
    out = idrun.ok(["-r"], idrun.argv(inner, ["sh", "-c", 'cat /proc/self/uid_map; touch "$1"',
                                              "sh", path]))
    assert it.parse_map(out) == [[0, 0, 1]]
    assert os.stat(path).st_uid == caller.uid
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(["-r"], idrun.argv(["--uidmap", "0:1:1", "--setgroups", "deny"],
                                     ["touch", marker]))
    it.assert_refused(p, marker)


def test_nested_under_denied_setgroups_predicted(idrun, shared_dir):
    """Under a parent whose setgroups is `deny` (inherited by every child namespace),
    what `idrun map` resolves inside must be what the launch does: either it resolves
    `deny` and the run works, or `idrun map` refuses too."""
    outer = ["-r"]
    mp = idrun.run(outer, idrun.argv(["map", "--uidmap", "0:0:1", "--json"]))
    marker = os.path.join(shared_dir, "ran")
    run = idrun.run(outer, idrun.argv(["--uidmap", "0:0:1"],
                                      ["sh", "-c", 'cat /proc/self/setgroups; touch "$1"',
                                       "sh", marker]))
    if mp.returncode == 0:
        plan = idrun_json(mp.stdout)
        assert run.returncode == 0, (f"`idrun map` inside resolved setgroups "
                                     f"{plan['setgroups']!r} and exit 0, the launch failed: "
                                     f"{run.stderr.strip()}")
        assert run.stdout.strip() == plan["setgroups"] == "deny"
    else:
        it.assert_refused(run, marker)
