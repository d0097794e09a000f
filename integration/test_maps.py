"""The maps a command sees inside are exactly what `idrun map --json` predicts.

Each case runs `idrun OPTS -- sh -c 'cat /proc/self/uid_map ...; id -u; id -g; id -G'`
and compares it with `idrun map OPTS --json` (same options, same user), and,
where the result is simple enough to state, with an expectation written here
independently of the resolver.
"""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys

import pytest
import testlib.integration as it


def core_first(names, core):
    """Parametrize values: those in `core` plain, the rest marked `permutation`."""
    return [n if n in core else pytest.param(n, marks=pytest.mark.permutation) for n in names]


def check_inside(idrun, opts, uid_map=None, gid_map=None, setgroups=None, user=None) -> dict:
    plan = idrun.plan(opts)
    # The resolver agrees with what this test expects on its own.
    if uid_map is not None:
        assert plan["uid_map"] == uid_map, plan
    if gid_map is not None:
        assert plan["gid_map"] == gid_map, plan
    if setgroups is not None:
        assert plan["setgroups"] == setgroups, plan
    if user is not None:
        assert (plan["user"]["uid"], plan["user"]["gid"]) == user, plan
    view = idrun.inside(opts)
    assert view.uid_map == plan["uid_map"], f"uid_map inside differs from `idrun map`: {plan}"
    assert view.gid_map == plan["gid_map"], f"gid_map inside differs from `idrun map`: {plan}"
    assert view.setgroups == plan["setgroups"]
    assert view.uid == plan["user"]["uid"]
    assert view.gid == plan["user"]["gid"]
    assert view.groups == it.expected_groups(plan), f"id -G inside: {view.groups}; plan {plan}"
    return plan


# ----------------------------------------------------------------------------- root

ROOT_CASES = {
    "single-id": (["--uidmap", "0:1000:1"], [[0, 1000, 1]], [[0, 1000, 1]], "allow", (0, 0)),
    "range": (["--uidmap", "0:100000:65536"],
              [[0, 100000, 65536]], [[0, 100000, 65536]], "allow", (0, 0)),
    "several-values": (["--uidmap", "0:100000:1000", "--uidmap", "1000:1000:1",
                        "--uidmap", "1001:101001:1000"],
                       [[0, 100000, 1000], [1000, 1000, 1], [1001, 101001, 1000]],
                       [[0, 100000, 1000], [1000, 1000, 1], [1001, 101001, 1000]],
                       "allow", (0, 0)),
    "several-triples-in-one-value": (["--uidmap", "0:100000:10:10:200000:10"],
                                     [[0, 100000, 10], [10, 200000, 10]],
                                     [[0, 100000, 10], [10, 200000, 10]], "allow", (0, 0)),
    "adjacent-values-merge": (["--uidmap", "0:100000:10", "--uidmap", "10:100010:10"],
                              [[0, 100000, 20]], [[0, 100000, 20]], "allow", (0, 0)),
    "own-gidmap": (["--uidmap", "0:100000:65536", "--gidmap", "0:200000:1000"],
                   [[0, 100000, 65536]], [[0, 200000, 1000]], "allow", (0, 0)),
    "u-g-flags": (["--uidmap", "u0:1000:1", "--uidmap", "g0:2000:1"],
                  [[0, 1000, 1]], [[0, 2000, 1]], "allow", (0, 0)),
    "break-insert": (["--uidmap", "0:5000:100", "--uidmap", "+50:5010:10"],
                     [[0, 5000, 10], [20, 5020, 30], [50, 5010, 10], [60, 5060, 40]],
                     [[0, 5000, 10], [20, 5020, 30], [50, 5010, 10], [60, 5060, 40]],
                     "allow", (0, 0)),
    "at-host-id": (["--uidmap", "0:@1000:5"], [[0, 1000, 5]], [[0, 1000, 5]], "allow", (0, 0)),
    "user-option": (["--uidmap", "0:100000:100", "--user", "5:6"],
                    [[0, 100000, 100]], [[0, 100000, 100]], "allow", (5, 6)),
    "user-uid-only": (["--uidmap", "0:100000:100", "--user", "7"],
                      [[0, 100000, 100]], [[0, 100000, 100]], "allow", None),
    "setgroups-deny": (["--uidmap", "0:100000:100", "--setgroups", "deny"],
                       [[0, 100000, 100]], [[0, 100000, 100]], "deny", (0, 0)),
    "map-root-user": (["-r"], [[0, 0, 1]], [[0, 0, 1]], "deny", (0, 0)),
    "map-current-user": (["-c"], [[0, 0, 1]], [[0, 0, 1]], "deny", (0, 0)),
    "keep-id": (["--userns", "keep-id"], [[0, 0, 4294967295]], [[0, 0, 4294967295]],
                "allow", (0, 0)),
}


ROOT_CORE = {"single-id", "range", "break-insert", "at-host-id", "user-option",
             "map-root-user", "keep-id"}


@pytest.mark.kernel
@pytest.mark.root
@pytest.mark.parametrize("case", core_first(ROOT_CASES, ROOT_CORE))
def test_root_maps_inside(idrun, case):
    opts, uid_map, gid_map, setgroups, user = ROOT_CASES[case]
    check_inside(idrun, opts, uid_map, gid_map, setgroups, user)


ID_OUTPUT = {
    # The launcher issue's own acceptance line: `idrun --uidmap 0:1000:1 -- id`.
    "root": (["--uidmap", "0:1000:1"], 0),
    "rootless-user": (["--uidmap", "0:1:1000", "--user", "33:33"], 33),
}


@pytest.mark.kernel
@pytest.mark.parametrize("case", [pytest.param("root", marks=pytest.mark.root),
                                  pytest.param("rootless-user", marks=pytest.mark.rootless)])
def test_id_output_names_the_ids(request, idrun, case):
    opts, n = ID_OUTPUT[case]
    if case.startswith("rootless"):
        request.getfixturevalue("subids")
    out = idrun.ok(opts, ["id"])
    assert out.startswith(f"uid={n}(") or out.startswith(f"uid={n} "), out
    assert f" gid={n}" in out, out
    try:    # id(1) names the ids from the same /etc/passwd and /etc/group
        names = f"uid={n}({pwd.getpwuid(n).pw_name}) gid={n}({grp.getgrgid(n).gr_name})"
    except KeyError:
        names = f"uid={n} gid={n}"
    assert out.startswith(names), out


@pytest.mark.root
def test_root_userns_host_creates_no_namespace(idrun):
    plan = idrun.plan(["--userns", "host"])
    assert plan["userns"] is False
    out = idrun.ok(["--userns", "host"], ["sh", "-c", "readlink /proc/self/ns/user; "
                                                      "cat /proc/self/uid_map"])
    ns, rest = out.split("\n", 1)
    assert ns == os.readlink("/proc/self/ns/user")
    with open("/proc/self/uid_map") as f:
        assert it.parse_map(rest) == it.parse_map(f.read())


@pytest.mark.root
@pytest.mark.kernel
def test_root_userns_host_user_switches_ids(idrun):
    """Issue 19: `--userns host --user 1000:1000` ran the command as real root (the ids
    were dropped without a user namespace); podman runs it as 1000:1000, supplementary
    groups replaced by --group-add's."""
    out = idrun.ok(["--userns", "host", "--user", "1000:1000"],
                   ["sh", "-c", "id -u; id -g; id -G; grep ^Groups: /proc/self/status"])
    uid, gid, groups, status = out.split("\n")[:4]
    assert (uid, gid, groups) == ("1000", "1000", "1000"), out
    assert status.split() == ["Groups:"], out       # root's groups are gone
    out = idrun.ok(["--userns", "host", "--user", "1000:1000", "--group-add", "5"],
                   ["sh", "-c", "id -u; grep ^Groups: /proc/self/status"])
    assert out.split("\n")[:2] == ["1000", "Groups:\t5 "] or \
        out.split()[:3] == ["1000", "Groups:", "5"], out
    out = idrun.ok(["--userns", "host", "--user", "1000"], ["sh", "-c", "id -u; id -g"])
    assert out.split() == ["1000", "0"], out
    out = idrun.ok(["--userns", "host", "--user", "1000:1000", "--pid", "--fork"], ["id", "-u"])
    assert out == "1000\n", out


# ----------------------------------------------------------------------------- rootless

def _rootless_cases(ids, caller) -> dict:
    """name -> (opts, uid_map, gid_map, setgroups, user); None = compare with idrun map only."""
    uid, gid = caller.uid, caller.gid
    t = ids.common_total
    su, sg = ids.uid[0][0], ids.gid[0][0]
    first_u, first_g = ids.uid_file_order[0], ids.gid_file_order[0]
    tu, tg = ids.total("uid"), ids.total("gid")

    def keep_id(kind, x, total):
        lines = []
        if x != 0:
            lines.append([0, 1, min(x, total)])
        lines.append([x, 0, 1])
        if total > x:
            lines.append([x + 1, x + 1, total - x])
        return ids.compose(kind, lines)

    n = min(1000, ids.uid[0][1], ids.gid[0][1])
    return {
        "map-root-user": (["-r"], [[0, uid, 1]], [[0, gid, 1]], "deny", (0, 0)),
        "map-current-user": (["-c"], [[uid, uid, 1]], [[gid, gid, 1]], "deny", (uid, gid)),
        "map-auto": (["--map-auto"], [[0, first_u[0], first_u[1]]],
                     [[0, first_g[0], first_g[1]]], "allow", (0, 0)),
        "map-auto-and-root": (["--map-auto", "-r"], None, None, None, (0, 0)),
        "userns-host": (["--userns", "host"], ids.compose("uid", [[0, 0, 1 + tu]]),
                        ids.compose("gid", [[0, 0, 1 + tg]]), "allow", (0, 0)),
        "userns-keep-id": (["--userns", "keep-id"], keep_id("uid", uid, tu),
                           keep_id("gid", gid, tg), "allow", (uid, gid)),
        "userns-keep-id-uid-gid": (["--userns", "keep-id:uid=10,gid=20"],
                                   keep_id("uid", 10, tu), keep_id("gid", 20, tg),
                                   "allow", (10, 20)),
        "userns-keep-id-size": (["--userns", "keep-id:size=1025"],
                                keep_id("uid", uid, min(tu, 1024)),
                                keep_id("gid", gid, min(tg, 1024)), "allow", (uid, gid)),
        # --userns auto: test_auto.py (its block depends on the leases and on the ids
        # running processes use at launch time, so a preview need not match).
        "userns-nomap": (["--userns", "nomap"], ids.compose("uid", [[0, 1, tu]]),
                         ids.compose("gid", [[0, 1, tg]]), "allow", (0, 0)),
        "subids-only": (["--uidmap", f"0:1:{t}"], ids.compose("uid", [[0, 1, t]]),
                        ids.compose("gid", [[0, 1, t]]), "allow", (0, 0)),
        "own-and-subids": (["--uidmap", "0:0:1", "--uidmap", f"1:1:{t}"],
                           ids.compose("uid", [[0, 0, 1 + t]]),
                           ids.compose("gid", [[0, 0, 1 + t]]), "allow", (0, 0)),
        "several-triples": (["--uidmap", "0:1:10:100:11:10"],
                            ids.compose("uid", [[0, 1, 10], [100, 11, 10]]),
                            ids.compose("gid", [[0, 1, 10], [100, 11, 10]]), "allow", (0, 0)),
        "at-host-ids": (["--uidmap", f"0:@{su}:{n}", "--gidmap", f"0:@{sg}:{n}"],
                        [[0, su, n]], [[0, sg, n]], "allow", (0, 0)),
        "at-own-id": (["--uidmap", f"0:@{uid}:1", "--uidmap", f"1:@{su}:{n}",
                       "--gidmap", f"0:@{gid}:1", "--gidmap", f"1:@{sg}:{n}"],
                      [[0, uid, 1], [1, su, n]], [[0, gid, 1], [1, sg, n]], "allow", (0, 0)),
        "break-insert-gap-fill": (["--uidmap", f"+5:@{su + 10}:3",
                                   "--gidmap", f"+5:@{sg + 10}:3"],
                                  None, None, "allow", (0, 0)),
        "u-flag-only": (["--uidmap", "u0:1:1000"], ids.compose("uid", [[0, 1, 1000]]),
                        ids.compose("gid", [[0, 0, 1 + tg]]), "allow", (0, 0)),
        "user-option": (["--uidmap", "0:1:1000", "--user", "5:6"],
                        ids.compose("uid", [[0, 1, 1000]]), ids.compose("gid", [[0, 1, 1000]]),
                        "allow", (5, 6)),
        "setgroups-deny-with-subids": (["--uidmap", "0:1:1000", "--setgroups", "deny"],
                                       ids.compose("uid", [[0, 1, 1000]]),
                                       ids.compose("gid", [[0, 1, 1000]]), "deny", (0, 0)),
    }


ROOTLESS_CASE_NAMES = [
    "map-root-user", "map-current-user", "map-auto", "map-auto-and-root", "userns-host",
    "userns-keep-id", "userns-keep-id-uid-gid", "userns-keep-id-size",
    "userns-nomap", "subids-only", "own-and-subids", "several-triples",
    "at-host-ids", "at-own-id", "break-insert-gap-fill", "u-flag-only", "user-option",
    "setgroups-deny-with-subids",
]


ROOTLESS_CORE = {"map-root-user", "map-auto", "userns-host", "userns-keep-id",
                 "userns-nomap", "subids-only", "break-insert-gap-fill"}


@pytest.mark.kernel
@pytest.mark.rootless
@pytest.mark.parametrize("case", core_first(ROOTLESS_CASE_NAMES, ROOTLESS_CORE))
def test_rootless_maps_inside(idrun, subids, caller, case):
    opts, uid_map, gid_map, setgroups, user = _rootless_cases(subids, caller)[case]
    plan = check_inside(idrun, opts, uid_map, gid_map, setgroups, user)
    # Whatever the preset, only the caller's own id and its delegated ids appear.
    allowed_u = subids.host_ids("uid") | {caller.uid}
    allowed_g = subids.host_ids("gid") | {caller.gid}
    for inside, outside, count in plan["uid_map"]:
        assert outside in allowed_u and outside + count - 1 in allowed_u, plan
    for inside, outside, count in plan["gid_map"]:
        assert outside in allowed_g and outside + count - 1 in allowed_g, plan


@pytest.mark.rootless
def test_rootless_gap_fill_keeps_inserted_piece(idrun, subids):
    su, sg = subids.uid[0][0], subids.gid[0][0]
    opts = ["--uidmap", f"+5:@{su + 10}:3", "--gidmap", f"+5:@{sg + 10}:3"]
    view = idrun.inside(opts)
    assert [5, su + 10, 3] in view.uid_map, view.uid_map
    assert [5, sg + 10, 3] in view.gid_map, view.gid_map
    # Gap filling hands out every intermediate id: the caller plus all sub-ids.
    assert sum(c for _, _, c in view.uid_map) == 1 + subids.total("uid")
    assert sum(c for _, _, c in view.gid_map) == 1 + subids.total("gid")


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_self_map_needs_no_subids(idrun, caller):
    """-r and -c work for any user, with or without sub-ids or newuidmap."""
    view = idrun.inside(["-r"])
    assert view.uid_map == [[0, caller.uid, 1]]
    assert view.gid_map == [[0, caller.gid, 1]]
    assert view.setgroups == "deny"
    assert (view.uid, view.gid) == (0, 0)


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_many_lines_through_newuidmap(idrun, subids):
    """200 separate lines go through the real newuidmap in one write."""
    opts = []
    for i in range(200):
        opts += ["--uidmap", f"{2 * i}:{2 * i + 1}:1"]
    plan = idrun.plan(opts)
    assert len(plan["uid_map"]) == 200 and len(plan["gid_map"]) == 200
    view = idrun.inside(opts)
    assert view.uid_map == plan["uid_map"]
    assert view.gid_map == plan["gid_map"]


def test_dry_run_starts_nothing(idrun, basic_opts, shared_dir):
    """--dry-run prints the plan (its host ids among it) and runs nothing."""
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(basic_opts + ["--dry-run"], ["touch", marker])
    assert p.returncode == 0, p.stderr
    assert str(idrun.plan(basic_opts)["uid_map"][0][1]) in p.stdout, p.stdout
    assert not os.path.exists(marker)


API_RUN = ("import idrun, sys\n"
           "r = idrun.run(['sh', '-c', 'id -u; cat /proc/self/uid_map'], "
           "uidmap=['0:0:1', '1:1:100'], capture_output=True, text=True)\n"
           "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr); sys.exit(r.returncode)\n")


@pytest.mark.rootless
def test_rootless_api_run(subids, caller):
    """idrun.run() of the library, rootless through newuidmap: the same maps."""
    if subprocess.run([sys.executable, "-c", "import idrun"], capture_output=True,
                      timeout=it.TIMEOUT).returncode:
        it.env_missing(f"{sys.executable} cannot import idrun")
    p = subprocess.run([sys.executable, "-c", API_RUN], capture_output=True, text=True,
                       timeout=it.TIMEOUT, cwd="/", stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    uid, rest = p.stdout.split("\n", 1)
    assert uid == "0"
    assert it.parse_map(rest) == [[0, caller.uid, 1], [1, subids.uid[0][0], 100]]
