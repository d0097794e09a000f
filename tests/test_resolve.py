"""Table-driven tests of the pure resolver: every rule of the mapping spec.

No kernel here on purpose: this is the pure core. What the kernel then does
with these lines is proven by tests/test_launch_*.py and integration/.
"""
from __future__ import annotations

import pytest

from idrun.errors import (IdrunError, MapConflictError, MapSyntaxError, MapValidationError,
                          SubidError)
from idrun.mapping.plan import Host, Request, SubidRange, SubidSet
from idrun.mapping.ranges import Line
from idrun.mapping.resolve import resolve


def subids(*ranges: tuple[int, int], source: str = "/etc/subuid") -> SubidSet:
    return SubidSet(source, tuple(SubidRange(s, c, i + 1) for i, (s, c) in enumerate(ranges)))


def rootless(uid: int = 1000, gid: int = 1000, subuid=((100000, 65536),), subgid=None,
             **kw) -> Host:
    subgid = subuid if subgid is None else subgid
    return Host(rootless=True, uid=uid, gid=gid, login="alice",
                subuid=subids(*subuid), subgid=subids(*subgid, source="/etc/subgid"), **kw)


ROOT = Host(rootless=False, uid=0, gid=0, login="root")


def lines(plan, kind="uid"):
    return [ln.as_list() for ln in plan.kind(kind).lines]


def container(plan, kind="uid"):
    return [ln.as_list() for ln in plan.kind(kind).container]


# --- privileged -----------------------------------------------------------------

ROOT_CASES = [
    # (uidmap, gidmap, expected uid lines, expected gid lines)
    (["0:1000:1"], [], [[0, 1000, 1]], [[0, 1000, 1]]),
    (["0:1000"], [], [[0, 1000, 1]], [[0, 1000, 1]]),
    (["0:100000:65536"], ["0:200000:65536"], [[0, 100000, 65536]], [[0, 200000, 65536]]),
    # several triples in one value
    (["0:1000:1:1:100000:10"], [], [[0, 1000, 1], [1, 100000, 10]],
     [[0, 1000, 1], [1, 100000, 10]]),
    # canonical merge of neighbours contiguous on both sides
    (["1000:501", "1001:502"], [], [[1000, 501, 2]], [[1000, 501, 2]]),
    (["0:10:5", "5:15:5"], [], [[0, 10, 10]], [[0, 10, 10]]),
    # sorted by container id, not merged when only one side is contiguous
    (["5:20:5", "0:10:5"], [], [[0, 10, 5], [5, 20, 5]], [[0, 10, 5], [5, 20, 5]]),
    # break-insert, spec illustration
    (["0:5000:100", "+50:5010:10"], [],
     [[0, 5000, 10], [20, 5020, 30], [50, 5010, 10], [60, 5060, 40]],
     [[0, 5000, 10], [20, 5020, 30], [50, 5010, 10], [60, 5060, 40]]),
    # podman doc example (through copy-over)
    ([], ["0:0:65000", "+100000:1:1"], [[0, 0, 1], [2, 2, 64998], [100000, 1, 1]],
     [[0, 0, 1], [2, 2, 64998], [100000, 1, 1]]),
    # doc: g-value written in --gidmap, copied to --uidmap then filtered out there
    ([], ["0:0:1000", "g2000:2000:1"], [[0, 0, 1000]], [[0, 0, 1000], [2000, 2000, 1]]),
    # u/g flags in any order, repeated
    (["ug0:0:10", "uu+20:20:1", "gg30:30:1"], [], [[0, 0, 10], [20, 20, 1]],
     [[0, 0, 10], [30, 30, 1]]),
    # '+' only cuts lines already present; a later plain value is appended as is
    (["+0:100:10", "20:200:5"], [], [[0, 100, 10], [20, 200, 5]],
     [[0, 100, 10], [20, 200, 5]]),
    # a '+' that takes over exactly a whole earlier line removes it
    (["0:100:10", "+0:100:10"], [], [[0, 100, 10]], [[0, 100, 10]]),
    # touching ranges do not conflict
    (["0:100:10", "+10:110:10"], [], [[0, 100, 20]], [[0, 100, 20]]),
    # '+' on an empty map as root simply inserts (no gap filling)
    (["+5:1000:1"], [], [[5, 1000, 1]], [[5, 1000, 1]]),
    # '@' as root in the initial namespace is the host id itself
    (["0:@1000:3"], [], [[0, 1000, 3]], [[0, 1000, 3]]),
    # leading zeros are decimal, rendered canonically
    (["00:0100:010"], [], [[0, 100, 10]], [[0, 100, 10]]),
    # the largest possible line
    (["0:0:4294967295"], [], [[0, 0, 4294967295]], [[0, 0, 4294967295]]),
    # empty values are skipped
    (["", "0:1000:1"], [], [[0, 1000, 1]], [[0, 1000, 1]]),
]


@pytest.mark.parametrize("uidmap,gidmap,uid_lines,gid_lines", ROOT_CASES)
def test_root_resolution(uidmap, gidmap, uid_lines, gid_lines):
    plan = resolve(Request(uidmap=tuple(uidmap), gidmap=tuple(gidmap)), ROOT)
    assert lines(plan, "uid") == uid_lines
    assert lines(plan, "gid") == gid_lines
    assert not plan.rootless
    for kind in ("uid", "gid"):
        if plan.kind(kind).lines:
            assert plan.kind(kind).writer == "direct"


def test_root_break_insert_conflict_on_host_side_only():
    # container 10-19 lose their host ids 5010-5019 to the new piece
    plan = resolve(Request(uidmap=("0:5000:100", "+200:5010:10")), ROOT)
    assert lines(plan) == [[0, 5000, 10], [20, 5020, 80], [200, 5010, 10]]


def test_root_empty_kind_is_not_written_and_warns():
    plan = resolve(Request(uidmap=("u0:1000:1",)), ROOT)
    assert lines(plan, "uid") == [[0, 1000, 1]]
    assert lines(plan, "gid") == []
    assert plan.gid.writer == "none"
    assert plan.user_gid is None
    assert any("no gid is mapped" in w for w in plan.warnings)


def test_filtered_value_warns_when_both_given():
    plan = resolve(Request(uidmap=("0:1000:1", "g5:5:1"), gidmap=("0:1000:1",)), ROOT)
    assert lines(plan, "gid") == [[0, 1000, 1]]
    assert any('"g5:5:1"' in w and "move it to --gidmap" in w for w in plan.warnings)


def test_root_default_user_and_explicit_user():
    plan = resolve(Request(uidmap=("0:1000:10",)), ROOT)
    assert (plan.user_uid, plan.user_gid) == (0, 0)
    plan = resolve(Request(uidmap=("0:1000:10",), user="5:7"), ROOT)
    assert (plan.user_uid, plan.user_gid) == (5, 7)
    with pytest.raises(MapValidationError, match="container uid 10 .*not mapped"):
        resolve(Request(uidmap=("0:1000:10",), user="10"), ROOT)


def test_root_default_user_falls_back_to_own_id():
    plan = resolve(Request(uidmap=("5:0:1",)), ROOT)  # host root is container 5
    assert plan.user_uid == 5
    assert any("container uid 0 is not mapped" in w for w in plan.warnings)


def test_unswitchable_is_fine_for_map_but_not_for_launch():
    plan = resolve(Request(uidmap=("1000:501", "1001:502")), ROOT)
    assert lines(plan) == [[1000, 501, 2]]
    assert plan.unswitchable == ("uid", "gid")
    with pytest.raises(MapValidationError, match="--user"):
        plan.require_target()


def test_root_nested_parent_split():
    # idrun running as root of a namespace whose own map has two extents
    host = Host(rootless=False, uid=0, gid=0,
                parent_uid_map=(Line(0, 100000, 1000), Line(1000, 300000, 1000)),
                parent_gid_map=(Line(0, 100000, 2000),))
    plan = resolve(Request(uidmap=("0:500:1000",)), host)
    # ids of this namespace, split where the parent's extents meet
    assert lines(plan, "uid") == [[0, 500, 500], [500, 1000, 500]]
    assert lines(plan, "gid") == [[0, 500, 1000]]
    with pytest.raises(MapValidationError, match="not mapped into the namespace"):
        resolve(Request(uidmap=("0:1500:1000",)), host)
    # '@' names an id of the parent's parent
    plan = resolve(Request(uidmap=("0:@300000:10",), gidmap=("0:0:1",)), host)
    assert lines(plan, "uid") == [[0, 1000, 10]]


# --- rootless -------------------------------------------------------------------

def test_spec_rootless_gap_fill_illustration():
    host = rootless(subuid=((200000, 50), (100000, 100)))
    plan = resolve(Request(uidmap=("+5:@200000:3",)), host)
    assert container(plan) == [[0, 0, 5], [5, 101, 3], [8, 5, 96], [104, 104, 47]]
    assert lines(plan) == [[0, 1000, 1], [1, 100000, 4], [5, 200000, 3], [8, 100004, 96],
                           [104, 200003, 47]]
    assert plan.uid.helper_args() == "0 1000 1 1 100000 4 5 200000 3 8 100004 96 104 200003 47" \
        .split()
    assert [ln.as_list() for ln in plan.uid.intermediate] == [[0, 1000, 1], [1, 100000, 100],
                                                              [101, 200000, 50]]
    assert plan.uid.writer == "helper"


def test_rootless_intermediate_sorted_by_start_not_file_order():
    host = rootless(subuid=((300000, 10), (100000, 10)))
    plan = resolve(Request(uidmap=("0:1:20",)), host)
    assert lines(plan) == [[0, 100000, 10], [10, 300000, 10]]


def test_rootless_never_merges_across_intermediate_lines():
    # sub-id range adjacent to the caller's own uid on the host
    host = rootless(uid=1000, gid=1000, subuid=((1001, 100),))
    plan = resolve(Request(uidmap=("0:0:101",)), host)
    assert lines(plan) == [[0, 1000, 1], [1, 1001, 100]]


def test_rootless_empty_kind_becomes_full_identity():
    host = rootless(subuid=((100000, 65536),), subgid=((200000, 1000),))
    plan = resolve(Request(gidmap=("+g100000:@200005",)), host)
    assert lines(plan, "uid") == [[0, 1000, 1], [1, 100000, 65536]]
    assert container(plan, "gid") == [[0, 0, 6], [6, 7, 994], [100000, 6, 1]]
    assert lines(plan, "gid") == [[0, 1000, 1], [1, 200000, 5], [6, 200006, 994],
                                  [100000, 200005, 1]]


def test_rootless_at_lookup_keeps_consecutive_container_ids():
    # host 999, 1000, 1001 are intermediate 10, 0 and 11: not adjacent there
    host = rootless(uid=1000, subuid=((990, 10), (1001, 10)))
    plan = resolve(Request(uidmap=("0:@999:3",)), host)
    assert container(plan) == [[0, 10, 1], [1, 0, 1], [2, 11, 1]]
    assert lines(plan) == [[0, 999, 1], [1, 1000, 1], [2, 1001, 1]]


def test_rootless_at_undelegated_is_refused_with_file():
    host = rootless(subuid=((100000, 10),))
    with pytest.raises(SubidError, match=r"host uid 100010 is not delegated.*/etc/subuid"):
        resolve(Request(uidmap=("0:@100005:10",)), host)
    with pytest.raises(SubidError, match="/etc/subgid"):
        resolve(Request(uidmap=("0:0:1",), gidmap=("0:@5:1",)), host)


def test_rootless_beyond_intermediate_space():
    host = rootless()
    with pytest.raises(MapValidationError, match="intermediate uid 65537 is beyond"):
        resolve(Request(uidmap=("0:0:65538",)), host)


def test_rootless_filtered_value_skipped_before_lookup():
    # the u-only value is not looked up for gids, so its undelegated gid cannot fail
    host = rootless(subuid=((100000, 10),), subgid=((300000, 10),))
    plan = resolve(Request(uidmap=("u0:@100000:10", "g0:@300000:10")), host)
    assert lines(plan, "uid") == [[0, 100000, 10]]
    assert lines(plan, "gid") == [[0, 300000, 10]]


def test_rootless_own_id_only_is_written_by_itself_with_setgroups_deny():
    plan = resolve(Request(uidmap=("0:0:1",)), rootless())
    assert plan.uid.writer == plan.gid.writer == "self"
    assert plan.setgroups == "deny"
    with pytest.raises(MapConflictError, match="setgroups"):
        resolve(Request(uidmap=("0:0:1",), setgroups="allow"), rootless())


def test_rootless_only_one_file_has_ranges_falls_back_to_own_id():
    host = rootless(subuid=((100000, 10),), subgid=())
    plan = resolve(Request(uidmap=("0:0:1",)), host)
    assert lines(plan) == [[0, 1000, 1]]
    assert any("none in /etc/subgid" in w for w in plan.warnings)
    with pytest.raises(MapValidationError, match="beyond"):
        resolve(Request(uidmap=("0:0:2",)), host)


def test_rootless_subid_range_containing_own_id():
    with pytest.raises(SubidError, match="contains your own uid 1000"):
        resolve(Request(uidmap=("0:0:1",)), rootless(subuid=((900, 200),)))


def test_rootless_intermediate_map_over_kernel_limit():
    many = tuple((100000 + 2 * i, 1) for i in range(341))
    with pytest.raises(MapValidationError, match="340"):
        resolve(Request(uidmap=("0:0:1",)), rootless(subuid=many))


def test_rootless_written_map_byte_limit():
    # 300 sub-id ranges of big numbers: the intermediate map itself is too long
    many = tuple((4000000000 + 2 * i, 1) for i in range(300))
    with pytest.raises(MapValidationError, match="4096"):
        resolve(Request(uidmap=("0:0:1",)), rootless(subuid=many))


# --- presets --------------------------------------------------------------------

PRESET_CASES = [
    # (request kwargs, uid lines, setgroups, (user uid, gid))
    (dict(map_root_user=True), [[0, 1000, 1]], "deny", (0, 0)),
    (dict(map_current_user=True), [[1000, 1000, 1]], "deny", (1000, 1000)),
    (dict(map_auto=True), [[0, 100000, 65536]], "allow", (0, 0)),
    (dict(map_auto=True, map_root_user=True), [[0, 1000, 1], [1, 100000, 65535]], "allow",
     (0, 0)),
    (dict(map_auto=True, map_current_user=True),
     [[0, 100000, 1000], [1000, 1000, 1], [1001, 101000, 64535]], "allow", (1000, 1000)),
    (dict(userns="host"), [[0, 1000, 1], [1, 100000, 65536]], "allow", (0, 0)),
    (dict(userns="keep-id"), [[0, 100000, 1000], [1000, 1000, 1], [1001, 101000, 64536]],
     "allow", (1000, 1000)),
    (dict(userns="keep-id:uid=5,gid=6"), [[0, 100000, 5], [5, 1000, 1], [6, 100005, 65531]],
     "allow", (5, 6)),
    (dict(userns="keep-id:uid=0"), [[0, 1000, 1], [1, 100000, 65536]], "allow", (0, 1000)),
    (dict(userns="keep-id:size=101"), [[0, 100000, 100], [1000, 1000, 1]], "allow",
     (1000, 1000)),
    (dict(userns="nomap"), [[0, 100000, 65536]], "allow", (0, 0)),
    (dict(userns="auto"), [[0, 100000, 1024]], "allow", (0, 0)),
    (dict(userns="auto:size=10"), [[0, 100000, 10]], "allow", (0, 0)),
]


@pytest.mark.parametrize("kw,uid_lines,setgroups,user", PRESET_CASES)
def test_rootless_presets(kw, uid_lines, setgroups, user):
    plan = resolve(Request(**kw), rootless())
    assert lines(plan) == uid_lines
    assert plan.setgroups == setgroups
    assert (plan.user_uid, plan.user_gid) == user


def test_map_auto_uses_first_line_in_file_order():
    host = rootless(subuid=((300000, 10), (100000, 10)))
    plan = resolve(Request(map_auto=True), host)
    assert lines(plan) == [[0, 300000, 10]]


def test_root_presets():
    plan = resolve(Request(userns="host"), ROOT)
    assert not plan.userns and lines(plan) == []
    plan = resolve(Request(userns="keep-id"), ROOT)
    assert lines(plan) == [[0, 0, 4294967295]]
    assert (plan.user_uid, plan.user_gid) == (0, 0)
    plan = resolve(Request(map_root_user=True), ROOT)
    assert lines(plan) == [[0, 0, 1]] and plan.setgroups == "deny"
    with pytest.raises(MapConflictError, match="size"):
        resolve(Request(userns="keep-id:size=10"), ROOT)
    with pytest.raises(MapConflictError, match="rootless"):
        resolve(Request(userns="nomap"), ROOT)
    containers = Host(rootless=False, uid=0, gid=0, named_subuid={
        "containers": subids((2147483647, 2147483648))},
        named_subgid={"containers": subids((2147483647, 2147483648), source="/etc/subgid")})
    plan = resolve(Request(userns="auto:size=2000"), containers)
    assert lines(plan) == [[0, 2147483647, 2000]]
    with pytest.raises(SubidError, match="containers"):
        resolve(Request(userns="auto"), ROOT)


def test_subuidname_root():
    host = Host(rootless=False, uid=0, gid=0,
                named_subuid={"bob": subids((300000, 10), (200000, 5))},
                named_subgid={"bob": subids((400000, 3), source="/etc/subgid")})
    plan = resolve(Request(subuidname="bob"), host)
    assert lines(plan, "uid") == [[0, 200000, 5], [5, 300000, 10]]
    assert lines(plan, "gid") == [[0, 400000, 3]]
    plan = resolve(Request(subuidname="bob", uidmap=("100:1000:1",)), host)
    assert lines(plan, "uid") == [[0, 200000, 5], [5, 300000, 10], [100, 1000, 1]]


ERROR_CASES = [
    (dict(userns="keep-id", uidmap=("0:0:1",)), MapConflictError, "cannot be combined"),
    (dict(userns="auto", map_root_user=True), MapConflictError, "cannot be combined"),
    (dict(map_root_user=True, map_current_user=True), MapConflictError, "exclude each other"),
    (dict(map_root_user=True, uidmap=("0:0:1",)), MapConflictError, "cannot be"),
    (dict(userns="bogus"), MapSyntaxError, 'unknown --userns mode "bogus"'),
    (dict(userns="keep-id:uid"), MapSyntaxError, "no \"=value\""),
    (dict(userns="keep-id:foo=1"), MapSyntaxError, 'unknown option "foo"'),
    (dict(userns="keep-id:uid=x"), MapSyntaxError, "not a decimal"),
    (dict(userns="auto:uidmapping=+0:0:1"), MapSyntaxError, "flags are not allowed"),
    (dict(userns="auto:uidmapping=0:0"), SubidError, "containers"),
    (dict(userns="host:x=1"), MapSyntaxError, "no options"),
    (dict(uidmap=("g0:0:1",), gidmap=("u0:0:1",)), MapValidationError, "map no id"),
    (dict(uidmap=("0:0:1",), user="abc"), MapSyntaxError, "not a decimal number"),
    (dict(uidmap=("0:0:1",), group_add=("5",)), MapValidationError, "not mapped"),
    (dict(uidmap=("0:0:1",), setgroups="maybe"), MapSyntaxError, "allow or deny"),
    (dict(uidmap=("0:4294967295",)), MapValidationError, "4294967295"),
    (dict(uidmap=("4294967295:0",)), MapValidationError, "4294967295"),
    (dict(uidmap=("0:4294967294:2",)), MapValidationError, "4294967295"),
    (dict(uidmap=("0:0:1000", "500:7000:10")), MapValidationError,
     r'--uidmap "0:0:1000" and --uidmap "500:7000:10" both map container uids 500-509'),
    (dict(uidmap=("0:0:10", "100:5:1")), MapValidationError, "both map host uids 5"),
    (dict(uidmap=("0:0:10", "0:0:10")), MapValidationError, "container uids 0-9 twice"),
    (dict(uidmap=tuple(f"{2 * i}:{2 * i}:1" for i in range(341))), MapValidationError, "340"),
    (dict(uidmap=tuple(f"{4000000000 + 2 * i}:{4000000000 + 2 * i}:1" for i in range(200))),
     MapValidationError, "4096"),
]


@pytest.mark.parametrize("kw,exc,match", ERROR_CASES)
def test_root_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        resolve(Request(**kw), ROOT)


def test_340_lines_within_byte_limit_are_fine():
    plan = resolve(Request(uidmap=tuple(f"{2 * i}:{2 * i}:1" for i in range(340))), ROOT)
    assert len(plan.uid.lines) == 340
    assert len(plan.uid.text.encode()) < 4096


def test_group_add_and_setgroups():
    plan = resolve(Request(uidmap=("0:1000:100",), group_add=("10", "20")), ROOT)
    assert plan.groups == (10, 20)
    with pytest.raises(MapConflictError, match="setgroups"):
        resolve(Request(uidmap=("0:1000:100",), group_add=("10",), setgroups="deny"), ROOT)


def test_every_error_is_an_idrun_error_with_one_line():
    for kw, exc, _ in ERROR_CASES:
        try:
            resolve(Request(**kw), ROOT)
        except IdrunError as e:
            assert "\n" not in str(e)
            assert "hint:" in str(e)


def test_setgroups_denied_above_is_inherited():
    host = ROOT._replace(parent_setgroups="deny")
    plan = resolve(Request(uidmap=("0:0:1",)), host)
    assert plan.setgroups == "deny"
    with pytest.raises(MapConflictError, match="inherits"):
        resolve(Request(uidmap=("0:0:1",), setgroups="allow"), host)
    with pytest.raises(MapConflictError, match="--group-add"):
        resolve(Request(uidmap=("0:0:10",), group_add=("1",)), host)


def test_default_mapping_without_any_mapping_option():
    """Issue 20.13: a request that describes no mapping gets the documented default:
    as root, root alone mapped to itself (setgroups deny, as -r); rootless, podman
    unshare's 0 = you and 1… = your sub-ids, or just you without sub-ids."""
    plan = resolve(Request(), ROOT)
    assert lines(plan) == lines(plan, "gid") == [[0, 0, 1]]
    assert (plan.user_uid, plan.user_gid, plan.setgroups) == (0, 0, "deny")
    assert any("root alone" in n for n in plan.notes) and not plan.launch_notes
    plan = resolve(Request(), rootless())
    assert lines(plan) == lines(plan, "gid") == [[0, 1000, 1], [1, 100000, 65536]]
    assert (plan.user_uid, plan.user_gid, plan.setgroups) == (0, 0, "allow")
    plan = resolve(Request(), rootless(subuid=()))
    assert lines(plan) == [[0, 1000, 1]] and plan.setgroups == "deny"
    plan = resolve(Request(user="0:0", group_add=()), rootless())
    assert lines(plan) == [[0, 1000, 1], [1, 100000, 65536]]
