"""Property tests (hypothesis) of the pure core against simple oracles."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idrun.errors import IdrunError
from idrun.mapping.plan import Host, Request, SubidRange, SubidSet
from idrun.mapping.ranges import IdMap, Line, canonical, find_overlap
from idrun.mapping.resolve import resolve
from idrun.mapping.syntax import parse_value

small = st.integers(min_value=0, max_value=60)
lines_st = st.lists(st.builds(Line, small, small, st.integers(min_value=1, max_value=8)),
                    max_size=8)
ROOT = Host(rootless=False, uid=0, gid=0)
SETTINGS = settings(max_examples=600, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def id_pairs(lines):
    return {(ln.inside + k, ln.outside + k) for ln in lines for k in range(ln.count)}


@SETTINGS
@given(lines_st)
def test_canonical_is_idempotent_and_keeps_the_mapping(lines):
    once = canonical(lines)
    assert canonical(once) == once
    assert id_pairs(once) == id_pairs(lines)
    assert [ln.inside for ln in once] == sorted(ln.inside for ln in once)


@SETTINGS
@given(lines_st, small)
def test_idmap_lookups_agree_with_mapping_each_id(lines, ident):
    if find_overlap(lines, "inside") or find_overlap(lines, "outside"):
        return
    m = IdMap(lines)
    pairs = id_pairs(lines)
    out = {i: o for i, o in pairs}
    back = {o: i for i, o in pairs}
    assert m.outward(ident) == out.get(ident)
    assert m.covers(ident) == (ident in out)
    assert m.inward(ident) == back.get(ident)
    assert IdMap.parse("".join(f"{a:>10} {b:>10} {c:>10}\n" for a, b, c in lines)) == m


@SETTINGS
@given(lines_st, lines_st)
def test_composition_agrees_with_mapping_each_id(lines, parent):
    if find_overlap(parent, "inside") or not parent:
        return
    out, missing = IdMap(parent).split(lines, translate=True)
    par = {i: o for i, o in id_pairs(parent)}
    expected = []
    for ln in lines:
        for k in range(ln.count):
            if ln.outside + k not in par:
                break
            expected.append((ln.inside + k, par[ln.outside + k]))
        else:
            continue
        break
    if missing is None:
        assert id_pairs(out) == set(expected) == {(i, par[o]) for i, o in id_pairs(lines)}
        # every piece lies inside one parent line
        for piece in out:
            assert any(p.outside <= piece.outside and piece.outside_end <= p.outside_end
                       for p in parent)


def naive_podman(values, rootless_size=None):
    """podman's algorithm literally, one id at a time (small numbers only)."""
    pairs: list[list] = []  # [container, from] in insertion order
    first_plus = None
    for value in values:
        for t in parse_value(value):
            for k in range(t.amount):
                c, f = t.container + k, t.from_id + k
                if first_plus is None:
                    first_plus = t.plus
                if t.plus:
                    pairs = [p for p in pairs if p[0] != c and p[1] != f]
                pairs.append([c, f])
    if rootless_size is not None and first_plus:
        used_f = {p[1] for p in pairs}
        used_c = {p[0] for p in pairs}
        c = 0
        for f in range(rootless_size):
            if f in used_f:
                continue
            while c in used_c:
                c += 1
            pairs.append([c, f])
            c += 1
    return {tuple(p) for p in pairs}


value_st = st.builds(
    lambda plus, c, f, n: f"{'+' if plus else ''}{c}:{f}:{n}",
    st.booleans(), small, small, st.integers(min_value=1, max_value=6))


@SETTINGS
@given(st.lists(value_st, min_size=1, max_size=7))
def test_break_insert_matches_podman_per_id_root(values):
    expected = naive_podman(values)
    try:
        plan = resolve(Request(uidmap=tuple(values)), ROOT)
    except IdrunError as e:
        # refused only when the per-id result is not one-to-one
        cs = [c for c, _ in expected]
        fs = [f for _, f in expected]
        assert "both map" in str(e) or "twice" in str(e), e
        return
    assert id_pairs(plan.uid.container) == expected
    for side in ("inside", "outside"):
        assert find_overlap(plan.uid.lines, side) is None


@SETTINGS
@given(st.lists(value_st, min_size=1, max_size=6))
def test_break_insert_and_gap_fill_match_podman_rootless(values):
    host = Host(rootless=True, uid=1000, gid=1000,
                subuid=SubidSet("/etc/subuid", (SubidRange(100000, 70, 1),)),
                subgid=SubidSet("/etc/subgid", (SubidRange(100000, 70, 1),)))
    expected = naive_podman(values, rootless_size=71)
    try:
        plan = resolve(Request(uidmap=tuple(values)), host)
    except IdrunError as e:
        assert any(w in str(e) for w in ("both map", "twice", "beyond")), e
        return
    assert id_pairs(plan.uid.container) == expected
    assert find_overlap(plan.uid.lines, "inside") is None
    assert find_overlap(plan.uid.lines, "outside") is None


@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=40))
def test_any_string_parses_or_raises_idrun_error(text):
    try:
        parse_value(text)
    except IdrunError as e:
        assert "\n" not in str(e)


alphabet = st.sampled_from(list("0123456789:+ug@-x ") + ["4294967295", "4294967296", "\u00b2",
                                                          "\u0663", "_", "0x1f"])
fuzzy_value = st.lists(alphabet, max_size=14).map("".join)


@settings(max_examples=3000, deadline=None)
@given(st.lists(fuzzy_value, max_size=4), st.lists(fuzzy_value, max_size=3), st.booleans())
def test_any_values_resolve_or_raise_idrun_error(uidmap, gidmap, as_rootless):
    host = ROOT if not as_rootless else Host(
        rootless=True, uid=1000, gid=1000,
        subuid=SubidSet("/etc/subuid", (SubidRange(100000, 65536, 1),)),
        subgid=SubidSet("/etc/subgid", (SubidRange(100000, 65536, 1),)))
    try:
        plan = resolve(Request(uidmap=tuple(uidmap), gidmap=tuple(gidmap)), host)
    except IdrunError as e:
        assert "\n" not in str(e)
        return
    for kp in (plan.uid, plan.gid):
        assert len(kp.lines) <= 340 and len(kp.text) < 4096
        assert find_overlap(kp.lines, "inside") is None
        assert find_overlap(kp.lines, "outside") is None
        for ln in kp.lines:
            assert ln.count >= 1 and ln.inside + ln.count <= 4294967295
            assert ln.outside + ln.count <= 4294967295
