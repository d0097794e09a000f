"""Refusals: exit 125, one message, no traceback, and nothing started.

Rootless: ids that are not delegated to the caller (beyond the intermediate
space, `@` host ids outside /etc/subuid, ranges running past a delegation) are
refused before newuidmap runs. Both passes: bad input.
"""
from __future__ import annotations

import os

import pytest
import testlib.integration as it


def core_first(names, core):
    """Parametrize values: those in `core` plain, the rest marked `permutation`."""
    return [n if n in core else pytest.param(n, marks=pytest.mark.permutation) for n in names]


def _undelegated_cases(ids, caller) -> dict[str, list[str]]:
    n_uid = 1 + ids.total("uid")
    last_s, last_c = ids.uid[-1]
    last_gs, last_gc = ids.gid[-1]
    bad_u = it.unused_host_id("uid", ids.uid)
    bad_g = it.unused_host_id("gid", ids.gid)
    return {
        "beyond-intermediate-space": ["--uidmap", f"0:{n_uid}:1"],
        "range-past-intermediate-space": ["--uidmap", f"0:1:{n_uid}"],
        "at-undelegated-host-uid": ["--uidmap", f"0:@{bad_u}:1"],
        "at-host-uid-1": ["--uidmap", "0:@1:1"],
        "at-range-past-delegation": ["--uidmap", f"0:@{last_s}:{last_c + 1}"],
        "at-undelegated-host-gid": ["--uidmap", "0:0:1", "--gidmap", f"0:@{bad_g}:1"],
        "at-gid-range-past-delegation": ["--uidmap", "0:0:1",
                                         "--gidmap", f"0:@{last_gs}:{last_gc + 1}"],
        "own-id-twice": ["--uidmap", f"0:@{caller.uid}:2"],
        "another-users-subids": ["--subuidname", "root"],
        "user-not-mapped": ["--uidmap", "0:1:100", "--user", "100"],
        "auto-pool-too-small": ["--userns", f"auto:size={ids.total('uid') + 1}"],
        "keep-id-of-undelegated": ["--uidmap", f"{caller.uid}:@{bad_u}:1"],
    }


UNDELEGATED = ["beyond-intermediate-space", "range-past-intermediate-space",
               "at-undelegated-host-uid", "at-host-uid-1", "at-range-past-delegation",
               "at-undelegated-host-gid", "at-gid-range-past-delegation", "own-id-twice", "another-users-subids",
               "user-not-mapped", "auto-pool-too-small", "keep-id-of-undelegated"]


@pytest.mark.rootless
@pytest.mark.parametrize("case", core_first(UNDELEGATED, {
    "beyond-intermediate-space", "at-undelegated-host-uid", "at-gid-range-past-delegation",
    "own-id-twice"}))
def test_rootless_undelegated_refused(idrun, subids, caller, shared_dir, case):
    opts = _undelegated_cases(subids, caller)[case]
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(opts, ["touch", marker])
    it.assert_refused(p, marker)
    assert p.stderr.strip().count("\n") == 0, p.stderr
    if case.startswith("at-"):
        assert "delegat" in p.stderr, p.stderr
    assert idrun.map_run(opts).returncode == 125


@pytest.mark.root
def test_root_nomap_refused(idrun, shared_dir):
    marker = os.path.join(shared_dir, "ran")
    it.assert_refused(idrun.run(["--userns", "nomap"], ["touch", marker]), marker)


BAD_INPUT = {
    "not-a-number": ["--uidmap", "0:x:1"],
    "hex": ["--uidmap", "0:0x10:1"],
    "sign": ["--uidmap", "-1:0:1"],
    "space": ["--uidmap", "0: 1:1"],
    "four-fields": ["--uidmap", "0:1:2:3"],
    "one-field": ["--uidmap", "0"],
    "empty-from": ["--uidmap", "0::1"],
    "amount-zero": ["--uidmap", "0:0:0"],
    "id-4294967295": ["--uidmap", "0:4294967295:1"],
    "id-2^32": ["--uidmap", "0:4294967296:1"],
    "range-wraps": ["--uidmap", "4294967290:0:10"],
    "container-overlap": ["--uidmap", "0:0:1", "--uidmap", "0:1:1"],
    "from-overlap": ["--uidmap", "0:1:2", "--uidmap", "5:2:1"],
    "unknown-userns": ["--userns", "bogus"],
    "unknown-userns-option": ["--userns", "keep-id:bogus=1"],
    "userns-with-uidmap": ["--userns", "keep-id", "--uidmap", "0:0:1"],
    "root-and-current": ["-r", "-c"],
    "unknown-option": ["-r", "--no-such-option"],
    "late-mapping-option": ["id", "--uidmap", "0:0:1"],
    "bad-user": ["-r", "--user", "abc"],
    "unmapped-user": ["-r", "--user", "4000"],
    "bad-preserve-fds": ["-r", "--preserve-fds", "-1"],
    "bad-setgroups": ["-r", "--setgroups", "maybe"],
}


@pytest.mark.parametrize("case", core_first(BAD_INPUT, {
    "not-a-number", "id-2^32", "from-overlap", "unknown-option", "late-mapping-option"}))
def test_bad_input_refused(idrun, shared_dir, case):
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(BAD_INPUT[case], ["touch", marker])
    it.assert_refused(p, marker)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("idrun: "), p.stderr
