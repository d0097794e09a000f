"""Range algebra for id maps: lines, canonical form, splitting, composition.

A *line* maps ``count`` consecutive ids: inside ``inside + k`` ↔ outside
``outside + k``. A map is a list of lines. Everything here is pure and works on
whole ranges, never on single ids, so the cost depends on the number of lines,
not on how many ids they cover.
"""

from bisect import bisect_right
from ..hints import Any, Callable, Iterable, NamedTuple, Sequence

from ..errors import MapValidationError

ID_LIMIT = 4294967295  # (u32)-1: never a valid id; start + count may reach it
MAX_ID = ID_LIMIT - 1  # the largest id a map can hold
KINDS = ("uid", "gid")  # the two kinds of id a user namespace maps

# What the kernel takes in one write of uid_map/gid_map (kernel/user_namespace.c):
MAX_LINES = 340        # UID_GID_MAP_MAX_EXTENTS
MAX_BYTES = 4096       # the whole map in one write smaller than a page


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


class Overlap(NamedTuple):
    """Two items whose ranges share the ids ``first`` … ``last``; ``earlier`` starts first.

    (Not generic: a generic NamedTuple costs more to define, and this module is on
    the launch path.)"""

    earlier: Any
    later: Any
    first: int
    last: int


def first_overlap(items: Iterable[Any], start: Callable[[Any], int],
                  count: Callable[[Any], int]) -> Overlap | None:
    """The first two of ``items`` whose ranges [start, start + count) share an id.

    The one overlap sweep: sorted by start, an overlap exists iff some range
    starts before the furthest end seen so far; the pair reported is the range
    that produced that end and the one starting inside it.
    """
    best: Any = None
    best_end = -1
    # Sorted by start only: the sort is stable, so among ranges with the same
    # start the caller's order decides which one is reported first.
    for item in sorted(items, key=start):
        lo, n = start(item), count(item)
        if best is not None and lo < best_end:
            return Overlap(best, item, lo, min(best_end, lo + n) - 1)
        if lo + n > best_end:
            best_end, best = lo + n, item
    return None


def find_overlap(lines: Sequence[Line], side: str) -> tuple[Line, Line] | None:
    """First pair of lines whose ``side`` ("inside" or "outside") ranges overlap."""
    clash = first_overlap(lines, (lambda ln: ln.inside) if side == "inside"
                          else (lambda ln: ln.outside), lambda ln: ln.count)
    return None if clash is None else (clash.earlier, clash.later)


def rendered_size(lines: Iterable[Line]) -> int:
    """The bytes ``render`` gives, without building the text."""
    return sum(len(f"{ln.inside} {ln.outside} {ln.count}\n") for ln in lines)


def check_limits(lines: Sequence[Line], what: str, hint: str) -> None:
    """Refuse a map the kernel would refuse for its size (``MAX_LINES``, ``MAX_BYTES``)."""
    if len(lines) > MAX_LINES:
        raise MapValidationError(f"{what} needs {len(lines)} lines; the kernel accepts at most "
                                 f"{MAX_LINES}", hint)
    size = rendered_size(lines)
    if size >= MAX_BYTES:
        raise MapValidationError(f"{what} renders to {size} bytes; the kernel accepts fewer "
                                 f"than {MAX_BYTES} in its single write", hint)


def in_spans(ident: int, spans: Iterable[tuple[int, int]]) -> bool:
    """Whether ``ident`` lies in one of the (start, count) ``spans``."""
    return any(s <= ident < s + c for s, c in spans)


def shared(a: Iterable[tuple[int, int]], b: Iterable[tuple[int, int]]
           ) -> list[tuple[int, int, int, int]]:
    """The ids two lists of half-open [start, end) ranges share: (i, j, lo, hi) for
    each pair a[i], b[j] that meet on [lo, hi), in the order of ``a`` then ``b``."""
    b = list(b)
    out = []
    for i, (alo, ahi) in enumerate(a):
        for j, (blo, bhi) in enumerate(b):
            lo, hi = max(alo, blo), min(ahi, bhi)
            if lo < hi:
                out.append((i, j, lo, hi))
    return out


class IdMap(tuple):
    """An id map (uid_map/gid_map): lines inside ↔ outside, as the kernel holds them.

    The one place that looks ids up, in both directions, splits ranges at the
    map's extents and parses the kernel's text. It is a tuple of ``Line``, so it
    compares equal to a plain tuple of the same lines. Lookups assume
    the map is one-to-one (the kernel guarantees it for maps it accepted).
    """

    def __new__(cls, lines: Iterable[Sequence[int]] = ()) -> "IdMap":
        return super().__new__(cls, (ln if isinstance(ln, Line) else Line(*ln) for ln in lines))

    @classmethod
    def parse(cls, text: str) -> "IdMap":
        """A map as /proc/PID/uid_map prints it (padded, blank-separated)."""
        lines: list[Line] = []
        for raw in text.splitlines():
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 3 or not all(f.isascii() and f.isdigit() and len(f) <= 10
                                           for f in fields):
                raise ValueError(f"unexpected id map line {raw!r}")
            lines.append(Line(*(int(f) for f in fields)))
        return cls(lines)

    def _order(self, side: str) -> tuple[list[Line], list[int]]:
        cache = self.__dict__.setdefault("_orders", {})
        if side not in cache:
            ordered = sorted(self, key=lambda ln: ln.inside if side == "inside" else ln.outside)
            cache[side] = (ordered, [getattr(ln, side) for ln in ordered])
        return cache[side]

    def _line_at(self, side: str, ident: int) -> Line | None:
        ordered, starts = self._order(side)
        i = bisect_right(starts, ident) - 1
        if i >= 0 and ident < starts[i] + ordered[i].count:
            return ordered[i]
        return None

    @property
    def size(self) -> int:
        return sum(ln.count for ln in self)

    def covers(self, inside: int) -> bool:
        return self._line_at("inside", inside) is not None

    def outward(self, inside: int) -> int | None:
        """The outside id of ``inside``, or None when it is not mapped."""
        ln = self._line_at("inside", inside)
        return None if ln is None else ln.outside + inside - ln.inside

    def inward(self, outside: int) -> int | None:
        """The inside id that ``outside`` appears as, or None (the overflow id)."""
        ln = self._line_at("outside", outside)
        return None if ln is None else ln.inside + outside - ln.outside

    def outward_spans(self, first: int, count: int) -> list[tuple[int, int]]:
        """The outside [start, end) ranges of the mapped ids among inside
        ``first … first+count-1``, in inside order; unmapped ids are left out."""
        return self._spans("inside", first, count)

    def inward_spans(self, first: int, count: int) -> list[tuple[int, int]]:
        """The inside [start, end) ranges of the mapped ids among outside
        ``first … first+count-1``, in outside order; unmapped ids are left out."""
        return self._spans("outside", first, count)

    def _spans(self, side: str, first: int, count: int) -> list[tuple[int, int]]:
        ordered, starts = self._order(side)
        out: list[tuple[int, int]] = []
        end = first + count
        i = max(bisect_right(starts, first) - 1, 0)
        while i < len(ordered) and starts[i] < end:
            ln = ordered[i]
            there = ln.outside if side == "inside" else ln.inside
            lo, hi = max(first, starts[i]), min(end, starts[i] + ln.count)
            if lo < hi:
                out.append((there + lo - starts[i], there + hi - starts[i]))
            i += 1
        return out

    def inward_runs(self, first: int, count: int) -> list[tuple[int, int, int]] | int:
        """Translate outside ids ``first … first+count-1`` to inside ids.

        Returns ``(offset, inside, n)`` runs: ids ``first+offset …`` map to
        ``inside …`` for ``n`` ids. If an id is not covered, returns that id.
        """
        ordered, starts = self._order("outside")
        runs: list[tuple[int, int, int]] = []
        pos, end = first, first + count
        i = bisect_right(starts, pos) - 1
        while pos < end:
            if i < 0 or i >= len(ordered) or not (ordered[i].outside <= pos
                                                   < ordered[i].outside_end):
                return pos
            ln = ordered[i]
            n = min(end, ln.outside_end) - pos
            runs.append((pos - first, ln.inside + (pos - ln.outside), n))
            pos += n
            i += 1
        return runs

    def split(self, lines: Iterable[Line],
              translate: bool) -> tuple[list[Line], tuple[Line, int] | None]:
        """Split each of ``lines`` where its outside range crosses a line of this map.

        This map takes the outside ids of ``lines`` (its *inside* ids) further
        out. With ``translate`` the pieces get this map's outside ids
        (composition); without, they keep their ids and are only cut at this
        map's extents. Pieces are never merged back across lines. Returns the
        pieces and, if some id is not covered, the first such (line, id).
        """
        par, starts = self._order("inside")
        out: list[Line] = []
        for line in lines:
            pos, end = line.outside, line.outside_end
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


def subtract(start: int, end: int, holes: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) minus the (possibly overlapping, unsorted) ``holes``, ascending."""
    out: list[tuple[int, int]] = []
    pos = start
    for lo, hi in sorted(holes):
        if lo > pos:
            if pos >= end:
                break
            out.append((pos, min(lo, end)))
        if hi > pos:
            pos = hi
    if pos < end:
        out.append((pos, end))
    return out
