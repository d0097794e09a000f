"""Range algebra for id maps: lines, canonical form, splitting, composition.

A *line* maps ``count`` consecutive ids: inside ``inside + k`` ↔ outside
``outside + k``. A map is a list of lines. Everything here is pure and works on
whole ranges, never on single ids, so the cost depends on the number of lines,
not on how many ids they cover.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Iterable, NamedTuple, Sequence

ID_LIMIT = 4294967295  # (u32)-1: never a valid id; start + count may reach it


class Line(NamedTuple):
    """One line of a uid_map/gid_map: inside ↔ outside, ``count`` ids."""

    inside: int
    outside: int
    count: int

    @property
    def inside_end(self) -> int:
        return self.inside + self.count

    @property
    def outside_end(self) -> int:
        return self.outside + self.count

    def as_list(self) -> list[int]:
        return list(self)


def canonical(lines: Iterable[Line]) -> list[Line]:
    """Sort by inside id and merge lines that continue each other on both sides.

    Overlapping or duplicate lines are kept as they are, so validation can still
    see them.
    """
    out: list[Line] = []
    for line in sorted(lines, key=lambda ln: (ln.inside, ln.outside)):
        if out:
            prev = out[-1]
            if prev.inside_end == line.inside and prev.outside_end == line.outside:
                out[-1] = Line(prev.inside, prev.outside, prev.count + line.count)
                continue
        out.append(line)
    return out


def render(lines: Sequence[Line]) -> str:
    """The exact text written to /proc/PID/uid_map: one ``inside outside count`` per line."""
    return "".join(f"{ln.inside} {ln.outside} {ln.count}\n" for ln in lines)


def find_overlap(lines: Sequence[Line], side: str) -> tuple[Line, Line] | None:
    """First pair of lines whose ``side`` ("inside" or "outside") ranges overlap."""
    if side == "inside":
        ordered = sorted(lines, key=lambda ln: ln.inside)
        starts = [ln.inside for ln in ordered]
    else:
        ordered = sorted(lines, key=lambda ln: ln.outside)
        starts = [ln.outside for ln in ordered]
    # Sorted by start, an overlap exists iff some range starts before the
    # furthest end seen so far; report the pair that produced that end.
    best_end = -1
    best: Line | None = None
    for start, line in zip(starts, ordered):
        if best is not None and start < best_end:
            return best, line
        end = start + line.count
        if end > best_end:
            best_end, best = end, line
    return None


def sorted_by_outside(parent: Sequence[Line]) -> list[Line]:
    return sorted(parent, key=lambda ln: ln.outside)


def lookup_outside(parent_by_outside: Sequence[Line], starts: Sequence[int], first: int,
                   count: int) -> list[tuple[int, int, int]] | int:
    """Translate outside ids ``first … first+count-1`` to inside ids of ``parent``.

    ``parent_by_outside`` must be sorted by outside start and ``starts`` be the
    list of those starts. Returns ``(offset, inside, n)`` runs: ids
    ``first+offset …`` map to ``inside …`` for ``n`` ids. If an id is not
    covered, returns that id (an int) instead.
    """
    runs: list[tuple[int, int, int]] = []
    pos = first
    end = first + count
    i = bisect_right(starts, pos) - 1
    while pos < end:
        if i < 0 or i >= len(parent_by_outside):
            return pos
        ln = parent_by_outside[i]
        if not (ln.outside <= pos < ln.outside_end):
            return pos
        n = min(end, ln.outside_end) - pos
        runs.append((pos - first, ln.inside + (pos - ln.outside), n))
        pos += n
        i += 1
    return runs


def split_compose(lines: Sequence[Line], parent: Sequence[Line],
                  translate: bool) -> tuple[list[Line], tuple[Line, int] | None]:
    """Split each line where its outside range crosses a line of ``parent``.

    ``parent`` maps the outside ids of ``lines`` (its *inside* ids) further out.
    With ``translate`` the pieces get the parent's outside ids (composition);
    without, they keep their ids and are only split at the parent's extents.
    Pieces are never merged back across parent lines. Returns the pieces and,
    if some id is not covered by ``parent``, the first such (line, id).
    """
    par = sorted(parent, key=lambda ln: ln.inside)
    starts = [ln.inside for ln in par]
    out: list[Line] = []
    for line in lines:
        pos = line.outside
        end = line.outside_end
        i = bisect_right(starts, pos) - 1
        while pos < end:
            if i < 0 or i >= len(par) or not (par[i].inside <= pos < par[i].inside_end):
                return out, (line, pos)
            p = par[i]
            n = min(end, p.inside_end) - pos
            inside = line.inside + (pos - line.outside)
            out.append(Line(inside, p.outside + (pos - p.inside) if translate else pos, n))
            pos += n
            i += 1
    return out, None


def compose(lines: Sequence[Line], parent: Sequence[Line]) -> list[Line]:
    """Map ``lines`` (inside → parent inside) through ``parent`` (→ parent outside).

    Ids of ``lines`` that ``parent`` does not cover are dropped.
    """
    par = sorted(parent, key=lambda ln: ln.inside)
    out: list[Line] = []
    for line in lines:
        for p in par:
            lo = max(line.outside, p.inside)
            hi = min(line.outside_end, p.inside_end)
            if lo < hi:
                out.append(Line(line.inside + (lo - line.outside), p.outside + (lo - p.inside),
                                hi - lo))
    return canonical(out)


def translate(lines: Sequence[Line], ident: int, inward: bool = False) -> int | None:
    """Map one id outward (inside → outside) or, with ``inward``, back."""
    for ln in lines:
        if inward:
            if ln.outside <= ident < ln.outside_end:
                return ln.inside + ident - ln.outside
        elif ln.inside <= ident < ln.inside_end:
            return ln.outside + ident - ln.inside
    return None


# --- interval sets -------------------------------------------------------------
# Sorted, disjoint, non-touching half-open intervals [start, end), kept as two
# parallel lists so bisect works directly on the starts.

class IntervalSet:
    """A set of ids stored as sorted disjoint intervals."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        starts, ends = self.starts, self.ends
        if not starts or start > ends[-1]:
            # Ascending input, the common case: no search, no merge.
            starts.append(start)
            ends.append(end)
            return
        # Intervals that overlap or touch [start, end) are merged into it.
        lo = bisect_right(ends, start - 1)
        # first interval whose end >= start
        hi = bisect_right(starts, end)
        # intervals lo … hi-1 have end >= start and start <= end
        if lo < hi:
            start = min(start, starts[lo])
            end = max(end, ends[hi - 1])
        starts[lo:hi] = [start]
        ends[lo:hi] = [end]

    def intersect(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) that are in the set, ascending."""
        starts, ends = self.starts, self.ends
        i = bisect_right(ends, start)
        out: list[tuple[int, int]] = []
        while i < len(starts) and starts[i] < end:
            out.append((max(start, starts[i]), min(end, ends[i])))
            i += 1
        return out

    def complement(self, start: int, end: int | None) -> list[tuple[int, int | None]]:
        """The parts of [start, end) not in the set; ``end=None`` means unbounded."""
        out: list[tuple[int, int | None]] = []
        pos = start
        i = bisect_right(self.ends, start)
        while i < len(self.starts) and (end is None or self.starts[i] < end):
            if self.starts[i] > pos:
                out.append((pos, self.starts[i]))
            pos = max(pos, self.ends[i])
            i += 1
        if end is None or pos < end:
            out.append((pos, end))
        return out


def free_ranges(used: Iterable[tuple[int, int]], start: int,
                end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) that none of the ``used`` ranges covers, ascending."""
    out: list[tuple[int, int]] = []
    pos = start
    for lo, hi in sorted(used):
        if lo > pos:
            if pos >= end:
                break
            out.append((pos, min(lo, end)))
        if hi > pos:
            pos = hi
    if pos < end:
        out.append((pos, end))
    return out


def subtract(start: int, end: int, holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) minus the (possibly overlapping, unsorted) ``holes``."""
    out: list[tuple[int, int]] = []
    pos = start
    for lo, hi in sorted(holes):
        if lo > pos:
            out.append((pos, min(lo, end)))
        pos = max(pos, hi)
        if pos >= end:
            break
    if pos < end:
        out.append((pos, end))
    return out
