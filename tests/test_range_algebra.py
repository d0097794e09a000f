"""The one range algebra (ranges.py) against id-by-id oracles, and the places that
used to redo it by hand (autoblock's translation of forced lines, the kernel's
limits that volumes took from resolve)."""
from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idrun.mapping import autoblock
from idrun.errors import MapValidationError
from idrun.mapping.plan import Host, SubidRange, SubidSet
from idrun.mapping.ranges import (ID_LIMIT, MAX_BYTES, MAX_ID, MAX_LINES, IdMap, Line,
                                  check_limits, first_overlap, in_spans, render, shared)
from idrun.mapping.syntax import parse_value

small = st.integers(min_value=0, max_value=60)
spans_st = st.lists(st.tuples(small, st.integers(min_value=1, max_value=8)), max_size=8)
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(spans_st)
def test_first_overlap_finds_a_shared_id_exactly_when_there_is_one(spans):
    clash = first_overlap(spans, lambda s: s[0], lambda s: s[1])
    owners: dict[int, int] = {}
    for n, (start, count) in enumerate(spans):
        for ident in range(start, start + count):
            owners[ident] = owners.get(ident, 0) + 1
    shared_ids = sorted(i for i, n in owners.items() if n > 1)
    if not shared_ids:
        assert clash is None
        return
    assert clash is not None
    a, b = clash.earlier, clash.later
    # Both reported ranges hold every id of first … last, and the lowest id any range
    # shares with an earlier-starting one is where the report starts.
    for ident in range(clash.first, clash.last + 1):
        assert a[0] <= ident < a[0] + a[1] and b[0] <= ident < b[0] + b[1]
    assert clash.first == b[0] and a[0] <= b[0]


@SETTINGS
@given(st.lists(st.builds(Line, small, small, st.integers(min_value=1, max_value=8)),
                max_size=6), small, st.integers(min_value=1, max_value=20))
def test_outward_spans_translate_the_mapped_ids_only(lines, first, count):
    if first_overlap(lines, lambda ln: ln.inside, lambda ln: ln.count):
        return
    m = IdMap(lines)
    got = [o for lo, hi in m.outward_spans(first, count) for o in range(lo, hi)]
    want = [m.outward(i) for i in range(first, first + count) if m.covers(i)]
    assert got == want


@SETTINGS
@given(spans_st, spans_st)
def test_shared_and_in_spans_agree_with_each_id(a, b):
    a_ranges = [(s, s + c) for s, c in a]
    b_ranges = [(s, s + c) for s, c in b]
    for i, j, lo, hi in shared(a_ranges, b_ranges):
        assert lo < hi
        for ident in range(lo, hi):
            assert in_spans(ident, [a[i]]) and in_spans(ident, [b[j]])
    both = {x for i, j, lo, hi in shared(a_ranges, b_ranges) for x in range(lo, hi)}
    assert both == {x for x in range(80) if in_spans(x, a) and in_spans(x, b)}


def test_the_id_limit_is_one_constant():
    assert ID_LIMIT == 2**32 - 1 and MAX_ID == ID_LIMIT - 1
    parse_value(f"0:{ID_LIMIT}:1")     # a from id may be the limit (refused later)
    with pytest.raises(Exception, match=str(ID_LIMIT)):
        parse_value(f"0:{ID_LIMIT + 1}:1")


def test_check_limits_is_the_kernels():
    check_limits([Line(i, i, 1) for i in range(MAX_LINES)], "m", "h")
    with pytest.raises(MapValidationError, match=f"at most {MAX_LINES}"):
        check_limits([Line(i, i, 1) for i in range(MAX_LINES + 1)], "m", "h")
    big = [Line(4000000000 + 2 * i, 4000000000 + 2 * i, 1) for i in range(180)]
    assert len(render(big)) >= MAX_BYTES
    with pytest.raises(MapValidationError, match=f"fewer than {MAX_BYTES}"):
        check_limits(big, "m", "h")


def test_auto_forced_lines_go_to_the_host_through_the_intermediate_map():
    """Rootless, a forced uidmapping= from id is an intermediate id: its host ids are
    those the intermediate table (0 = you, 1… = your ranges by start) gives, and ids
    beyond the table are no host ids at all."""
    host = Host(rootless=True, uid=1000, gid=1000,
                subuid=SubidSet("/etc/subuid", (SubidRange(300000, 10, 2),
                                                SubidRange(100000, 5, 1))),
                subgid=SubidSet("/etc/subgid", (SubidRange(100000, 65536, 1),)))
    opts = autoblock.parse_auto("auto:uidmapping=0:0:3,uidmapping=9:@5:2,"
                                "uidmapping=20:4:20")
    # 0 → 1000; 1-2 → 100000-100001; @5 stays host 5; 4-5 → 100003-100004, 6-15 →
    # 300000-300009, 16-23 are beyond the table.
    assert autoblock.excluded(opts, host, "uid") == [
        (1000, 1001), (100000, 100002), (5, 7), (100003, 100005), (300000, 300010)]
    root = host._replace(rootless=False)
    assert autoblock.excluded(opts, root, "uid") == [(0, 3), (5, 7), (4, 24)]


def test_volumes_takes_the_kernels_limits_from_ranges_not_resolve():
    """The mapping layer's volume parsing needs the limits, not the resolver."""
    import idrun.mapping.volumes
    tree = ast.parse(open(idrun.mapping.volumes.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "resolve" not in imported and "ranges" in imported


@SETTINGS
@given(st.lists(st.builds(Line, small, small, st.integers(min_value=1, max_value=8)),
                max_size=6), small, st.integers(min_value=1, max_value=20))
def test_inward_spans_translate_the_mapped_ids_only(lines, first, count):
    if first_overlap(lines, lambda ln: ln.outside, lambda ln: ln.count):
        return
    m = IdMap(lines)
    got = [i for lo, hi in m.inward_spans(first, count) for i in range(lo, hi)]
    want = [m.inward(o) for o in range(first, first + count) if m.inward(o) is not None]
    assert got == want
