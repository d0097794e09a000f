"""From the --uidmap/--gidmap values (and --subuidname/--subgidname) to pieces.

Pure. A ``Piece`` is a line on its way into a map that remembers the value it came
from, so validation can name it. podman's rules live here: the copy-over of the raw
values, the u/g filter, ``@`` lookup, '+' break-insert and rootless gap filling.
"""

from ..hints import NamedTuple

from ..errors import MapValidationError, SubidError, quoted
from .intermediate import Space, ranges_text
from .plan import SUBID_FILE, Host, Request
from .ranges import ID_LIMIT, KINDS, IntervalSet, Line, subtract
from .syntax import Triple, parse_value


class Piece(NamedTuple):
    """A line on its way into a map, remembering which value it came from."""

    container: int
    from_id: int
    count: int
    origin: str

    @property
    def line(self) -> Line:
        return Line(self.container, self.from_id, self.count)


def parse_all(request: Request, warnings: list[str]) -> dict[str, list[Triple]]:
    """Parse every --uidmap/--gidmap value into the triples of each kind
    (podman's copy-over of the raw values, then the u/g flags)."""
    uid_values = [("--uidmap", v) for v in request.uidmap]
    gid_values = [("--gidmap", v) for v in request.gidmap]
    # Copy-over of the raw strings, before parsing: podman's ParseIDMapping.
    if uid_values and not gid_values:
        gid_values = list(uid_values)
    elif gid_values and not uid_values:
        uid_values = list(gid_values)
    both_given = bool(request.uidmap) and bool(request.gidmap)
    parsed: dict[str, list[Triple]] = {}
    cache: dict[tuple[str, str], list[Triple]] = {}
    for kind, values in (("uid", uid_values), ("gid", gid_values)):
        triples: list[Triple] = []
        for option, value in values:
            key = (option, value)
            if key not in cache:
                cache[key] = parse_value(value, option)
            for t in cache[key]:
                if t.applies_to(kind):
                    triples.append(t)
                elif both_given and option == f"--{kind}map":
                    other = "gid" if kind == "uid" else "uid"
                    warnings.append(
                        f"{t.origin} applies only to {other}s, but --{other}map is given too, "
                        f"so it is ignored; move it to --{other}map")
        parsed[kind] = triples
    return parsed


def host_lookup(t: Triple, space: Space) -> list[tuple[int, int, int]]:
    """Resolve ``@from`` id by id (in whole runs) through the parent map."""
    runs = space.parent.inward_runs(t.from_id, t.amount)
    if isinstance(runs, int):
        if space.rootless:
            raise SubidError(
                f"{t.origin}: host {space.kind} {runs} is not delegated to you in "
                f"{SUBID_FILE[space.kind]}",
                f"use host ids from your ranges ({ranges_text(space)}) or ask for "
                f"them with usermod --add-sub{space.kind}s")
        raise MapValidationError(
            f"{t.origin}: host {space.kind} {runs} is not mapped into the namespace idrun "
            "runs in", "use ids that /proc/self/" + space.kind + "_map maps")
    return runs


def build_pieces(triples: list[Triple], space: Space) -> list[Piece]:
    """Apply plain appends and '+' break-inserts; fill gaps when rootless asks for it.

    A pair (container, from) of a piece survives exactly when no later '+' piece
    claims its container id or its from id, so walking the pieces backwards
    with two interval sets of claimed ids gives podman's result in
    O(n log n) without ever cutting a line twice.
    """
    ordered: list[tuple[int, int, int, bool, str]] = []
    for t in triples:
        if t.host:
            for offset, inter, n in host_lookup(t, space):
                ordered.append((t.container + offset, inter, n, t.plus, t.origin))
        else:
            ordered.append((t.container, t.from_id, t.amount, t.plus, t.origin))
    fill = space.rootless and bool(ordered) and ordered[0][3]

    claimed_c = IntervalSet()
    claimed_f = IntervalSet()
    pieces: list[Piece] = []
    for c, f, n, plus, origin in reversed(ordered):
        delta = f - c
        holes = claimed_c.intersect(c, c + n)
        holes += [(lo - delta, hi - delta) for lo, hi in claimed_f.intersect(f, f + n)]
        for lo, hi in (subtract(c, c + n, holes) if holes else [(c, c + n)]):
            pieces.append(Piece(lo, lo + delta, hi - lo, origin))
        if plus:
            claimed_c.add(c, c + n)
            claimed_f.add(f, f + n)
    pieces.reverse()
    if fill:
        pieces += gap_fill(pieces, space.size)
    return pieces


def gap_fill(pieces: list[Piece], size: int) -> list[Piece]:
    """Pair free intermediate ids with unmapped container ids, both ascending."""
    free = subtract(0, size, ((p.from_id, p.from_id + p.count) for p in pieces))
    unmapped = subtract(0, ID_LIMIT, ((p.container, p.container + p.count) for p in pieces))
    return pair(unmapped, free, "gap filling (first value has '+')")


def pair(inside: list[tuple[int, int]], outside: list[tuple[int, int]],
          origin: str) -> list[Piece]:
    """Zip two ascending lists of [start, end) ranges into pieces, id for id, until
    either runs out: the k-th id of ``inside`` maps to the k-th id of ``outside``."""
    out: list[Piece] = []
    i = o = 0
    inside, outside = list(inside), list(outside)
    while i < len(inside) and o < len(outside):
        (ilo, ihi), (olo, ohi) = inside[i], outside[o]
        n = min(ihi - ilo, ohi - olo)
        out.append(Piece(ilo, olo, n, origin))
        if ilo + n >= ihi:
            i += 1
        else:
            inside[i] = (ilo + n, ihi)
        if olo + n >= ohi:
            o += 1
        else:
            outside[o] = (olo + n, ohi)
    return out


def subidname_pieces(request: Request, host: Host, spaces: dict[str, Space]
                      ) -> dict[str, list[Piece]]:
    """--subuidname/--subgidname: NAME's ranges at container 0…, in order of start
    (rootless: in intermediate ids, each of them delegated to the caller)."""
    out: dict[str, list[Piece]] = {"uid": [], "gid": []}
    uname = request.subuidname or request.subgidname
    gname = request.subgidname or request.subuidname
    for kind, name in (("uid", uname), ("gid", gname)):
        if not name:
            continue
        option = "--subuidname" if kind == "uid" and request.subuidname else (
            "--subgidname" if request.subgidname else "--subuidname")
        named = host.named(kind).get(name)
        if named is None or not named.ranges:
            source = named.source if named else SUBID_FILE[kind]
            raise SubidError(f"{option} {quoted(name)}: no {kind} range for it in {source}",
                             f"check the owner name in {source}")
        nxt = 0
        space = spaces[kind]
        for rng in sorted(named.ranges, key=lambda r: r.start):
            origin = f"{option} {name} ({named.source} line {rng.lineno})"
            if host.rootless:
                runs = space.parent.inward_runs(rng.start, rng.count)
                if isinstance(runs, int):
                    raise SubidError(f"{origin}: host {kind} {runs} is not delegated to you",
                                     f"only ids of your own ranges in {SUBID_FILE[kind]} "
                                     "can be mapped rootless")
                for offset, inter, n in runs:
                    out[kind].append(Piece(nxt + offset, inter, n, origin))
            else:
                out[kind].append(Piece(nxt, rng.start, rng.count, origin))
            nxt += rng.count
    return out


def host_id_notes(triples: dict[str, list[Triple]], spaces: dict[str, Space],
                   accounts: tuple[tuple[str, int, str], ...]) -> list[str]:
    """Rootless from ids that are likely meant as host ids: a range starting at the
    caller's own id, or a single id that is a host account's. Others (0:1:65536, which
    merely contains the caller's id) are the usual sub-id ranges and get no note; so is
    1, the first sub-id, where keep-id-like maps start (even though uid 1 is daemon)."""
    names = {(kind, ident): name for kind, ident, name in accounts}
    found: dict[tuple[str, int, str], tuple[list[str], list[str]]] = {}
    for kind in KINDS:
        space = spaces[kind]
        for t in triples[kind]:
            if t.host or t.from_id <= 1:
                continue
            if t.from_id == space.own_id:
                why = "not your own id, which is intermediate 0 (e.g. 0:0:1, or -r)"
            elif t.amount == 1 and (kind, t.from_id) in names:
                why = f"not host {kind} {t.from_id} ({names[kind, t.from_id]})"
            else:
                continue
            host = space.parent.outward(t.from_id)
            means = f"host id {host}" if host is not None else "beyond your ids"
            kinds, whys = found.setdefault((t.origin, t.from_id, means), ([], []))
            kinds.append(kind)
            if why not in whys:
                whys.append(why)
    out = []
    for (origin, ident, means), (kinds, whys) in found.items():
        text = (f"{origin}: rootless, from {'/'.join(kinds)} {ident} is intermediate {ident} "
                f"({means}), {' or '.join(whys)}")
        if any(w.startswith("not host") for w in whys):
            text += f"; @{ident} names a host id, and only ids delegated to you can be mapped"
        out.append(text + "; 'idrun map' shows the table")
    return out
