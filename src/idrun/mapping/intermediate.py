"""The rootless intermediate table, and where a kind's from ids live.

Pure. Rootless, podman builds an intermediate namespace (0 = the caller's own id,
1… = the caller's sub-id ranges, sorted by start) and from ids of --uidmap/--gidmap
are its ids; as root, from ids are ids of the namespace idrun runs in. ``Space``
holds that map for one kind; ``resolve`` composes through it.
"""

from ..hints import Iterable

from ..errors import SubidError
from .plan import SubidRange, SubidSet
from .ranges import ID_LIMIT, IdMap, Line, check_limits

class Space:
    """Where the from ids of one kind live, and how they reach the host.

    Rootless: the intermediate map (intermediate id → host id), composed away.
    Privileged: the current namespace's own map; from ids are its inside ids and
    lines are only split at its extents.
    """

    def __init__(self, kind: str, rootless: bool, parent: tuple[Line, ...],
                 own_id: int, subids: SubidSet | None = None) -> None:
        self.subids = subids
        self.kind = kind
        self.rootless = rootless
        self.parent = IdMap(parent)
        self.own_id = own_id

    def same_as(self, other: "Space") -> bool:
        return (self.rootless == other.rootless and self.parent == other.parent
                and (self.subids is None) == (other.subids is None))

    @property
    def size(self) -> int:
        return self.parent.size

    def describe(self) -> str:
        if self.rootless:
            sub = [ln for ln in self.parent if ln.inside > 0]
            parts = [f"0 = you ({self.kind} {self.own_id})"]
            parts += [f"{ln.inside}-{ln.inside_end - 1} = host {ln.outside}-{ln.outside_end - 1}"
                      for ln in sub[:4]]
            if len(sub) > 4:
                parts.append("…")
            text = "intermediate ids: " + ", ".join(parts)
            s = self.subids
            if s is not None and not s.ranges:
                keys = " or ".join(s.keys) or "your user"
                text += (f"; {s.source} does not exist" if not s.present
                         else f"; {s.source} has no range for {keys}")
            return text
        return "ids of this namespace: " + ", ".join(
            f"{ln.inside}-{ln.inside_end - 1}" for ln in self.parent[:4])


def intermediate_map(kind: str, own_id: int, subids: SubidSet) -> tuple[Line, ...]:
    """0 → the caller's own id, then the caller's ranges sorted by start from 1,
    checked: no range holds the caller's own id, and the kernel can take the map."""
    for rng in subids.ranges:
        if rng.start <= own_id < rng.end:
            where = f"{subids.source} line {rng.lineno}" if rng.lineno else subids.source
            raise SubidError(
                f"{where}: range {rng.start}:{rng.count} contains your own {kind} {own_id}",
                f"delegate ids that do not include {own_id} (podman refuses such a range too)")
    lines = intermediate_lines(own_id, subids.ranges)
    nxt = lines[-1].inside_end
    if nxt > ID_LIMIT:
        raise SubidError(f"{subids.source}: your ranges add up to {nxt - 1} ids, more than a "
                         "namespace can hold", "delegate fewer ids")
    check_limits(lines, f"the intermediate {kind} map built from {subids.source}",
                 "merge or remove some of your ranges: podman could not build this "
                 "namespace either")
    return lines


def intermediate_lines(own_id: int, ranges: Iterable[SubidRange]) -> tuple[Line, ...]:
    """podman's intermediate map, unchecked: 0 → ``own_id``, then ``ranges`` by start."""
    lines = [Line(0, own_id, 1)]
    nxt = 1
    for rng in sorted(ranges, key=lambda r: r.start):
        lines.append(Line(nxt, rng.start, rng.count))
        nxt += rng.count
    return tuple(lines)


def ranges_text(space: Space) -> str:
    """The caller's delegated host ranges, for a hint (the first six)."""
    sub = [ln for ln in space.parent if ln.inside > 0]
    if not sub:
        return "none"
    return ", ".join(f"{ln.outside}-{ln.outside_end - 1}" for ln in sub[:6]) + (
        ", …" if len(sub) > 6 else "")
