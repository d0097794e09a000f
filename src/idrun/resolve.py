"""Resolution: from what the user typed to the exact lines of uid_map and gid_map.

Pure: ``resolve(Request, Host) -> Plan``; no I/O, no globals. The rules follow
podman's (copy-over, u/g filter, break-insert, rootless gap filling and
empty-kind fill, ``@`` lookup, canonical form) with idrun's deliberate
differences: amount 0, overlaps, id 4294967295 and kernel limits are errors
before anything runs.
"""

from typing import NamedTuple

from .errors import quoted, MapConflictError, MapSyntaxError, MapValidationError, SubidError
from .plan import (WRITER_DIRECT, WRITER_HELPER, WRITER_NONE, WRITER_SELF, Host, KindPlan,
                   Plan, Request, SubidSet, is_auto)
from .ranges import ID_LIMIT, IdMap, IntervalSet, Line, canonical, free_ranges, subtract
from .syntax import Triple, decimal_id, parse_user, parse_userns, parse_value

MAX_LINES = 340
MAX_BYTES = 4096          # the whole map must be written in one write below a page
KINDS = ("uid", "gid")
SUBID_FILE = {"uid": "/etc/subuid", "gid": "/etc/subgid"}


class Piece(NamedTuple):
    """A line on its way into a map, remembering which value it came from."""

    container: int
    from_id: int
    count: int
    origin: str

    @property
    def line(self) -> Line:
        return Line(self.container, self.from_id, self.count)


class _Space:
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

    def same_as(self, other: "_Space") -> bool:
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


# --- the intermediate map ------------------------------------------------------

def intermediate_map(kind: str, own_id: int, subids: SubidSet) -> tuple[Line, ...]:
    """0 → the caller's own id, then the caller's ranges sorted by start from 1."""
    lines = [Line(0, own_id, 1)]
    nxt = 1
    for rng in sorted(subids.ranges, key=lambda r: r.start):
        if rng.start <= own_id < rng.end:
            where = f"{subids.source} line {rng.lineno}" if rng.lineno else subids.source
            raise SubidError(
                f"{where}: range {rng.start}:{rng.count} contains your own {kind} {own_id}",
                f"delegate ids that do not include {own_id} (podman refuses such a range too)")
        lines.append(Line(nxt, rng.start, rng.count))
        nxt += rng.count
    if nxt > ID_LIMIT:
        raise SubidError(f"{subids.source}: your ranges add up to {nxt - 1} ids, more than a "
                         "namespace can hold", "delegate fewer ids")
    check_limits(lines, f"the intermediate {kind} map built from {subids.source}",
                 "merge or remove some of your ranges: podman could not build this "
                 "namespace either")
    return tuple(lines)


def check_limits(lines: list[Line] | tuple[Line, ...], what: str, hint: str) -> None:
    if len(lines) > MAX_LINES:
        raise MapValidationError(f"{what} needs {len(lines)} lines; the kernel accepts at most "
                                 f"{MAX_LINES}", hint)
    size = sum(len(f"{ln.inside} {ln.outside} {ln.count}\n") for ln in lines)
    if size >= MAX_BYTES:
        raise MapValidationError(f"{what} renders to {size} bytes; the kernel accepts fewer "
                                 f"than {MAX_BYTES} in its single write", hint)


# --- values → pieces -----------------------------------------------------------

def _parse_all(request: Request, warnings: list[str]) -> dict[str, list[Triple]]:
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


def _host_lookup(t: Triple, space: _Space) -> list[tuple[int, int, int]]:
    """Resolve ``@from`` id by id (in whole runs) through the parent map."""
    runs = space.parent.inward_runs(t.from_id, t.amount)
    if isinstance(runs, int):
        if space.rootless:
            raise SubidError(
                f"{t.origin}: host {space.kind} {runs} is not delegated to you in "
                f"{SUBID_FILE[space.kind]}",
                f"use host ids from your ranges ({_ranges_text(space)}) or ask for "
                f"them with usermod --add-sub{space.kind}s")
        raise MapValidationError(
            f"{t.origin}: host {space.kind} {runs} is not mapped into the namespace idrun "
            "runs in", "use ids that /proc/self/" + space.kind + "_map maps")
    return runs


def _ranges_text(space: _Space) -> str:
    sub = [ln for ln in space.parent if ln.inside > 0]
    if not sub:
        return "none"
    return ", ".join(f"{ln.outside}-{ln.outside_end - 1}" for ln in sub[:6]) + (
        ", …" if len(sub) > 6 else "")


def build_pieces(triples: list[Triple], space: _Space) -> list[Piece]:
    """Apply plain appends and '+' break-inserts; fill gaps when rootless asks for it.

    A pair (container, from) of a piece survives exactly when no later '+' piece
    claims its container id or its from id, so walking the pieces backwards
    with two interval sets of claimed ids gives podman's result in
    O(n log n) without ever cutting a line twice.
    """
    ordered: list[tuple[int, int, int, bool, str]] = []
    for t in triples:
        if t.host:
            for offset, inter, n in _host_lookup(t, space):
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
        pieces += _gap_fill(pieces, space.size)
    return pieces


def _gap_fill(pieces: list[Piece], size: int) -> list[Piece]:
    """Pair free intermediate ids with unmapped container ids, both ascending."""
    free = free_ranges(((p.from_id, p.from_id + p.count) for p in pieces), 0, size)
    unmapped = free_ranges(((p.container, p.container + p.count) for p in pieces), 0, ID_LIMIT)
    out: list[Piece] = []
    ui = 0
    for f_lo, f_hi in free:
        while f_lo < f_hi and ui < len(unmapped):
            c_lo, c_hi = unmapped[ui]
            n = min(f_hi - f_lo, c_hi - c_lo)
            out.append(Piece(c_lo, f_lo, n, "gap filling (first value has '+')"))
            f_lo += n
            if c_lo + n >= c_hi:
                ui += 1
            else:
                unmapped[ui] = (c_lo + n, c_hi)
    return out


# --- presets -------------------------------------------------------------------

def _parse_options(mode: str, text: str, allowed: tuple[str, ...]) -> dict[str, int]:
    opts: dict[str, int] = {}
    if not text:
        return opts
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise MapSyntaxError(f'--userns={mode}: option {quoted(item)} has no "=value"',
                                 f"write {mode}:{allowed[0]}=N")
        if key not in allowed:
            raise MapSyntaxError(f'--userns={mode}: unknown option {quoted(key)}',
                                 f"{mode} takes {', '.join(a + '=N' for a in allowed)}")
        opts[key] = decimal_id(value, f"--userns={mode}: {key}=",
                               f"write {key}= with a number from 0 to 4294967294")
    return opts


class _Preset(NamedTuple):
    maps: dict[str, list[Piece]]
    user: tuple[int | None, int | None] | None = None   # default ids to run as
    setgroups: str | None = None
    userns: bool = True


def _userns_preset(request: Request, host: Host, spaces: dict[str, _Space]) -> _Preset:
    spec = request.userns or ""
    mode, opttext, _ = parse_userns(spec)
    origin = f"--userns={spec}"
    rootless = host.rootless
    if mode == "host":
        if opttext:
            raise MapSyntaxError(f"{origin}: host takes no options", "write --userns=host")
        if not rootless:
            return _Preset({"uid": [], "gid": []}, user=(None, None), userns=False)
        return _Preset({k: [Piece(0, 0, spaces[k].size, origin)] for k in KINDS}, user=(0, 0))
    if mode == "keep-id":
        opts = _parse_options(mode, opttext, ("uid", "gid", "size"))
        if not rootless:
            if "size" in opts:
                raise MapConflictError(f"{origin}: size= is only supported in rootless mode",
                                       "drop size=, or run idrun as a normal user")
            maps = {k: [Piece(ln.inside, ln.inside, ln.count, origin) for ln in spaces[k].parent]
                    for k in KINDS}
            return _Preset(maps, user=(opts.get("uid", 0), opts.get("gid", 0)))
        maps = {}
        for kind in KINDS:
            space = spaces[kind]
            x = opts.get(kind, space.own_id)
            total = space.size - 1
            if "size" in opts:
                total = min(total, opts["size"] - 1) if opts["size"] > 0 else 0
            pieces = []
            if total and x:
                pieces.append(Piece(0, 1, min(x, total), origin))
            pieces.append(Piece(x, 0, 1, origin))
            if total > x:
                pieces.append(Piece(x + 1, x + 1, total - x, origin))
            maps[kind] = pieces
        return _Preset(maps, user=(opts.get("uid", spaces["uid"].own_id),
                                   opts.get("gid", spaces["gid"].own_id)))
    if mode == "nomap":
        if opttext:
            raise MapSyntaxError(f"{origin}: nomap takes no options", "write --userns=nomap")
        if not rootless:
            raise MapConflictError("--userns=nomap is only supported in rootless mode",
                                   "run idrun as a normal user, or use --uidmap")
        maps = {}
        for kind in KINDS:
            total = spaces[kind].size - 1
            if total <= 0:
                raise SubidError(f"--userns=nomap needs sub-ids, but none are delegated to you "
                                 f"in {SUBID_FILE[kind]}",
                                 f"ask an admin: {spaces[kind].subids.add_hint(kind)}"
                                 if spaces[kind].subids is not None else
                                 f"ask for them with usermod --add-sub{kind}s")
            maps[kind] = [Piece(0, 1, total, origin)]
        return _Preset(maps, user=(0, 0))
    if mode == "auto":
        return _auto_preset(request, host, spaces)
    raise MapSyntaxError(f'unknown --userns mode {quoted(mode)}',
                         "use host, keep-id[:uid=N,gid=N,size=N], nomap or auto[:size=N]")


def _auto_preset(request: Request, host: Host, spaces: dict[str, _Space]) -> _Preset:
    """podman's auto: a block of ``size`` ids at container 0…, skipping the container
    ids of the forced uidmapping=/gidmapping= lines, which are added as given.

    The block is the registry's (``host.auto_block``) or, without one, the lowest
    ids of the pool.
    """
    from . import autoblock     # only --userns=auto needs it
    origin = f"--userns={request.userns}"
    opts = autoblock.parse_auto(request.userns or "auto")
    maps: dict[str, list[Piece]] = {}
    for kind in KINDS:
        space = spaces[kind]
        if host.auto_block is not None:
            block = host.auto_block.ranges(kind)
        else:
            spans, source = autoblock.pool(host, kind)
            block = autoblock.pick(kind, spans, source, opts.size,
                                   exclude=autoblock.excluded(opts, host, kind)).ranges
        from_seq: list[tuple[int, int]] = []
        for start, count in block:
            if space.rootless:
                runs = space.parent.inward_runs(start, count)
                if isinstance(runs, int):
                    raise SubidError(f"{origin}: host {kind} {runs} of the chosen block is not "
                                     "delegated to you", "report this: the block must come "
                                     "from your ranges")
                from_seq += [(inter, inter + n) for _, inter, n in runs]
            else:
                from_seq.append((start, start + count))
        extra = opts.extra(kind)
        inside_seq = subtract(0, ID_LIMIT, [(t.container, t.container + t.amount)
                                            for t in extra])
        pieces = _pair(inside_seq, from_seq, origin)
        for t in extra:
            if t.host:
                pieces += [Piece(t.container + off, inter, n, t.origin)
                           for off, inter, n in _host_lookup(t, space)]
            else:
                pieces.append(Piece(t.container, t.from_id, t.amount, t.origin))
        maps[kind] = pieces
    return _Preset(maps, user=(0, 0))


def _shorthand_preset(request: Request, host: Host, spaces: dict[str, _Space]) -> _Preset:
    """util-linux's -r / -c / --map-auto."""
    maps: dict[str, list[Piece]] = {}
    single = request.map_root_user or request.map_current_user
    name = "--map-root-user" if request.map_root_user else "--map-current-user"
    for kind in KINDS:
        space = spaces[kind]
        # The caller's own id, in from-id terms: intermediate 0 rootless.
        own_from = 0 if host.rootless else space.own_id
        pieces: list[Piece] = []
        inside = None
        if single:
            inside = 0 if request.map_root_user else space.own_id
            pieces.append(Piece(inside, own_from, 1, name))
        if request.map_auto:
            subids = host.subuid if kind == "uid" else host.subgid
            if not subids.ranges:
                raise SubidError(f"--map-auto: no range is delegated to you in {subids.source}",
                                 f"ask an admin: {subids.add_hint(kind)}")
            first = subids.ranges[0]  # util-linux takes the first line in file order
            if host.rootless:
                runs = space.parent.inward_runs(first.start, first.count)
                assert not isinstance(runs, int)
                block_from = runs[0][1]
            else:
                block_from = first.start
            count = first.count
            # The single line wins: the block skips the claimed ids on each side.
            inside_seq = [(0, count)]
            outside_seq = [(block_from, block_from + count)]
            if inside is not None and 0 <= inside < count:
                inside_seq = subtract(0, count, [(inside, inside + 1)])
            if single and block_from <= own_from < block_from + count:
                outside_seq = subtract(block_from, block_from + count,
                                       [(own_from, own_from + 1)])
            pieces += _pair(inside_seq, outside_seq, "--map-auto")
        maps[kind] = pieces
    if request.map_root_user:
        user = (0, 0)
    elif request.map_current_user:
        user = (spaces["uid"].own_id, spaces["gid"].own_id)
    else:
        user = (0, 0)
    return _Preset(maps, user=user,
                   setgroups="deny" if single and not request.map_auto else None)


def _pair(inside: list[tuple[int, int]], outside: list[tuple[int, int]],
          origin: str) -> list[Piece]:
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


def _subidname_pieces(request: Request, host: Host, spaces: dict[str, _Space]
                      ) -> dict[str, list[Piece]]:
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


# --- validation ----------------------------------------------------------------

def _validate_pieces(kind: str, pieces: list[Piece], space: _Space) -> None:
    for p in pieces:
        for side, start in (("container", p.container), ("from", p.from_id)):
            if start >= ID_LIMIT or start + p.count > ID_LIMIT:
                raise MapValidationError(
                    f"{p.origin}: {side} {kind}s {start}-{start + p.count - 1} reach id "
                    f"4294967295, which no namespace can map",
                    "keep every range below 4294967295")
    for side in ("container", "from"):
        key = (lambda p: p.container) if side == "container" else (lambda p: p.from_id)
        ordered = sorted(pieces, key=key)
        best_end, best = -1, None
        for p in ordered:
            start = key(p)
            if best is not None and start < best_end:
                lo, hi = start, min(best_end, start + p.count) - 1
                ids = f"{lo}" if lo == hi else f"{lo}-{hi}"
                what = "container" if side == "container" else (
                    "intermediate" if space.rootless else "host")
                if best.origin == p.origin:
                    both = f"{p.origin} maps {what} {kind}s {ids} twice"
                else:
                    both = f"{best.origin} and {p.origin} both map {what} {kind}s {ids}"
                raise MapValidationError(
                    both, "a mapping must be one-to-one: change one of them, or use '+' to "
                    "let the later value take those ids over")
            end = start + p.count
            if end > best_end:
                best_end, best = end, p


def _compose(kind: str, lines: list[Line], space: _Space, origins: list[Piece]) -> list[Line]:
    out, missing = space.parent.split(lines, translate=space.rootless)
    if missing is not None:
        line, ident = missing
        origin = next((p.origin for p in origins
                       if p.container <= line.inside < p.container + p.count), "the map")
        if space.rootless and space.parent.inward(ident) is not None:
            raise MapValidationError(
                f"{origin}: intermediate {kind} {ident} is beyond the {space.size} ids you "
                f"have; host {kind} {ident} is delegated to you, but rootless from ids are "
                "intermediate ids", f"write @{ident} to mean host {kind} {ident}; "
                "'idrun map --rootless' shows the intermediate table")
        if space.rootless:
            raise MapValidationError(
                f"{origin}: intermediate {kind} {ident} is beyond the {space.size} ids you "
                f"have ({space.describe()})",
                f"ask an admin to delegate sub-ids: {space.subids.add_hint(kind)}"
                if space.subids is not None and not space.subids.ranges else
                "from ids are intermediate ids when rootless; write @HOSTID to name a "
                "delegated host id, or see idrun map --rootless for the table")
        raise MapValidationError(
            f"{origin}: {kind} {ident} is not mapped into the namespace idrun runs in",
            f"use ids that /proc/self/{kind}_map maps")
    return out


def _host_id_notes(triples: dict[str, list[Triple]], spaces: dict[str, _Space],
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


# --- the whole thing -------------------------------------------------------------

def _check_conflicts(request: Request) -> None:
    maps_given = bool(request.uidmap or request.gidmap)
    names = request.subuidname or request.subgidname
    shorthand = request.map_root_user or request.map_current_user or request.map_auto
    if request.userns is not None:
        for given, option in ((request.uidmap, "--uidmap"), (request.gidmap, "--gidmap"),
                              (request.subuidname, "--subuidname"),
                              (request.subgidname, "--subgidname")):
            if given:
                raise MapConflictError(f"--userns={request.userns} cannot be combined with "
                                       f"{option}", "use either a --userns mode or explicit maps")
        if shorthand:
            raise MapConflictError(f"--userns={request.userns} cannot be combined with "
                                   "--map-root-user/--map-current-user/--map-auto",
                                   "pick one way to describe the mapping")
    if shorthand and (maps_given or names):
        raise MapConflictError("--map-root-user/--map-current-user/--map-auto cannot be "
                               "combined with --uidmap/--gidmap/--subuidname/--subgidname",
                               "pick one way to describe the mapping")
    if request.map_root_user and request.map_current_user:
        raise MapConflictError("--map-root-user and --map-current-user exclude each other",
                               "use -r to be root inside, or -c to keep your own ids")


class _Said:
    """What resolution has to tell the user besides the plan (a plain class: resolve is
    on the launch path, where each NamedTuple costs a little to define)."""

    __slots__ = ("warnings", "notes", "mistakes")

    def __init__(self, warnings: list[str], notes: list[str]) -> None:
        self.warnings = warnings
        self.notes = notes
        self.mistakes: list[str] = []     # notes about a likely mistake: a launch says them


def _spaces(host: Host, said: _Said) -> dict[str, _Space]:
    """Phase 1: where each kind's from ids live (intermediate map, or this namespace's map)."""
    own = {"uid": host.uid, "gid": host.gid}
    if not host.rootless:
        return {kind: _Space(kind, False, tuple(parent), own[kind])
                for kind, parent in (("uid", host.parent_uid_map), ("gid", host.parent_gid_map))}
    subuid, subgid = host.subuid, host.subgid
    if bool(subuid.ranges) != bool(subgid.ranges):
        has, lacks = (subuid, subgid) if subuid.ranges else (subgid, subuid)
        said.warnings.append(
            f"you have ranges in {has.source} but none in {lacks.source}; like podman, "
            "idrun then maps only your own uid and gid (add the missing ranges with "
            "usermod --add-subuids/--add-subgids)")
        subuid, subgid = subuid._replace(ranges=()), subgid._replace(ranges=())
    for s in (subuid, subgid):
        said.warnings.extend(s.warnings)
    return {kind: _Space(kind, True, intermediate_map(kind, own[kind], subids), own[kind], subids)
            for kind, subids in (("uid", subuid), ("gid", subgid))}


def _preset(request: Request, host: Host, spaces: dict[str, _Space],
            said: _Said) -> _Preset | None:
    """Phase 2a: a --userns mode or a util-linux shorthand, if one was given; the
    default mapping when nothing describes one."""
    if request.userns is not None:
        return _userns_preset(request, host, spaces)
    if request.map_root_user or request.map_current_user or request.map_auto:
        return _shorthand_preset(request, host, spaces)
    if not (request.uidmap or request.gidmap or request.subuidname or request.subgidname):
        return _default_preset(host, spaces, said)
    return None


def _default_preset(host: Host, spaces: dict[str, _Space], said: _Said) -> _Preset:
    """No mapping given. Rootless: podman unshare's namespace, 0 = you and 1… = your
    sub-ids (just 0 = you without them). As root: root alone, mapped to itself (as
    bwrap --unshare-user maps its caller): the command keeps exactly root's power over
    files, and every other id stays unmapped rather than being handed to a namespace
    nobody asked for; unshare -U would map nothing at all, and podman unshare would
    create no user namespace."""
    if host.rootless:
        maps = {k: [Piece(0, 0, spaces[k].size, "the default mapping (podman unshare's)")]
                for k in KINDS}
        subs = (", 1… = your sub-ids" if spaces["uid"].size > 1 else
                " (no sub-ids are delegated to you, so nothing else is mapped)")
        said.notes.append(f"no mapping given: the default, podman unshare's: 0 = you (uid "
                          f"{host.uid}){subs}; pass --uidmap/--userns/-r/-c for another")
        return _Preset(maps, user=(0, 0))
    maps = {k: [Piece(0, spaces[k].own_id, 1, "the default mapping (root alone)")]
            for k in KINDS}
    said.notes.append(f"no mapping given: the default as root maps root alone to itself "
                      f"(uid {host.uid} and gid {host.gid} are 0 inside, as -r would map "
                      "them), so the command keeps root's access to files and every other "
                      "id shows as nobody; pass --uidmap/--userns for more")
    return _Preset(maps, user=(0, 0), setgroups="deny")


def _value_pieces(request: Request, host: Host, spaces: dict[str, _Space],
                  said: _Said) -> dict[str, list[Piece]]:
    """Phase 2b: --subuidname/--subgidname and the --uidmap/--gidmap values, per kind."""
    triples = _parse_all(request, said.warnings)
    if host.rootless:
        said.mistakes.extend(_host_id_notes(triples, spaces, host.accounts))
    named = _subidname_pieces(request, host, spaces)
    built = build_pieces(triples["uid"], spaces["uid"])
    # Both kinds usually get the same values (copy-over) against the same
    # ranges; then the gid side is the same computation.
    if triples["gid"] == triples["uid"] and spaces["gid"].same_as(spaces["uid"]):
        built_gid = built
    else:
        built_gid = build_pieces(triples["gid"], spaces["gid"])
    pieces = {"uid": named["uid"] + built, "gid": named["gid"] + built_gid}
    if not pieces["uid"] and not pieces["gid"]:
        if not (request.uidmap or request.gidmap):
            raise MapValidationError(
                "no mapping given", "pass --uidmap/--gidmap, a --userns mode, or "
                "-r/-c/--map-auto (e.g. idrun --uidmap 0:1000:1 -- id)")
        raise MapValidationError("the values given map no id at all",
                                 "check the u/g flags of your --uidmap/--gidmap values")
    if host.rootless:
        for kind, other in (("uid", "gid"), ("gid", "uid")):
            if not pieces[kind] and pieces[other]:
                pieces[kind] = [Piece(0, 0, spaces[kind].size,
                                      f"the full intermediate {kind} map (no {kind} "
                                      "value given)")]
    return pieces


def _maps(pieces: dict[str, list[Piece]], spaces: dict[str, _Space],
          userns: bool) -> tuple[dict[str, IdMap], dict[str, list[Line]]]:
    """Phase 3: validate, canonicalize, and compose to the lines to be written."""
    container: dict[str, IdMap] = {}
    written: dict[str, list[Line]] = {}
    for kind in KINDS:
        _validate_pieces(kind, pieces[kind], spaces[kind])
        container[kind] = IdMap(canonical(p.line for p in pieces[kind]))
        if not userns:
            written[kind] = []
            continue
        lines = _compose(kind, container[kind], spaces[kind], pieces[kind])
        written[kind] = lines
        check_limits(lines, f"the {kind}_map to be written",
                     "use fewer, larger ranges (rootless lines are split at every sub-id "
                     "range, so fewer ranges in /etc/sub" + kind + " help too)")
    return container, written


def _target_ids(request: Request, host: Host, preset: _Preset | None,
                container: dict[str, IdMap], userns: bool,
                said: _Said) -> tuple[dict[str, int | None], list[str]]:
    """Phase 4: whom to run as inside, and which kinds have no id to switch to."""
    own = {"uid": host.uid, "gid": host.gid}
    user_uid: int | None
    user_gid: int | None
    if request.user is not None:
        user_uid, user_gid = parse_user(request.user)
    elif preset is not None and preset.user is not None:
        user_uid, user_gid = preset.user
    else:
        user_uid = user_gid = None
    ids: dict[str, int | None] = {"uid": user_uid, "gid": user_gid}
    unswitchable: list[str] = []
    if not userns:
        return _host_ids(request, user_uid, user_gid), unswitchable
    for kind in KINDS:
        lines = container[kind]
        if not lines:
            if not host.rootless:
                said.warnings.append(f"no {kind} is mapped, so every {kind} shows as the "
                                     f"overflow id inside and idrun does not switch {kind}s")
            ids[kind] = None
            continue
        if not lines.covers(0) and preset is None and request.user is None:
            said.warnings.append(f"container {kind} 0 is not mapped; if you meant to be root "
                                 f"inside, map it (e.g. --{kind}map 0:...)")
        if ids[kind] is None:
            if lines.covers(0):
                ids[kind] = 0
            else:
                ids[kind] = lines.inward(0 if host.rootless else own[kind])
                if ids[kind] is None:
                    unswitchable.append(kind)
        elif not lines.covers(ids[kind]):  # type: ignore[arg-type]
            what = "--user" if request.user is not None else "the preset's"
            raise MapValidationError(
                f"container {kind} {ids[kind]} ({what} {kind}) is not mapped by the {kind} map",
                f"map it with --{kind}map, or pick another --user")
    for kind in unswitchable:
        said.warnings.append(f"neither container {kind} 0 nor your own {kind} is mapped, so a "
                             f"launch needs --user to say which {kind} to run as")
    return ids, unswitchable


def _host_ids(request: Request, uid: int | None, gid: int | None) -> dict[str, int | None]:
    """--user without a user namespace (only root's --userns=host has none; rootless,
    host is a namespace of the caller's ids): the ids are host ids, switched to as
    podman does, gid 0 when none is given."""
    if request.user is None:
        return {"uid": None, "gid": None}
    return {"uid": uid, "gid": 0 if gid is None else gid}


def _setgroups(request: Request, host: Host, preset: _Preset | None,
               written: dict[str, list[Line]]) -> str:
    """Phase 5: allow or deny, as asked, inherited, or as the kernel demands."""
    setgroups = request.setgroups or (preset.setgroups if preset else None) or "allow"
    if host.parent_setgroups == "deny" and setgroups == "allow":
        if request.setgroups == "allow":
            raise MapConflictError(
                "--setgroups allow: setgroups is denied in the namespace idrun runs in, and "
                "a new namespace inherits that", "drop --setgroups allow")
        setgroups = "deny"
    gid_own_only = host.rootless and all(
        ln.outside == host.gid and ln.count == 1 for ln in written["gid"]) and written["gid"]
    if gid_own_only and setgroups == "allow":
        if request.setgroups == "allow":
            raise MapConflictError(
                "--setgroups allow: with only your own gid mapped the kernel requires "
                "setgroups to be denied", "map delegated sub-gids too, or drop --setgroups allow")
        setgroups = "deny"
    return setgroups


def _groups(request: Request, container: dict[str, IdMap], setgroups: str,
            host_ids: bool = False) -> list[int]:
    """Phase 6: --group-add, each mapped and allowed (``host_ids``: --user without a
    user namespace, as root; the gids are host gids, every one valid)."""
    groups: list[int] = []
    for text in request.group_add:
        gid = decimal_id(text, "--group-add",
                         "write --group-add with container gids, e.g. --group-add 10")
        if not host_ids and not container["gid"].covers(gid):
            raise MapValidationError(f"--group-add {gid}: container gid {gid} is not mapped",
                                     "map it with --gidmap or drop --group-add")
        groups.append(gid)
    if groups and setgroups == "deny":
        raise MapConflictError("--group-add needs setgroups allowed, but it is denied",
                               "drop --group-add or --setgroups deny/-r/-c")
    return groups


def _kind_plan(kind: str, host: Host, space: _Space, container: IdMap, lines: list[Line],
               userns: bool) -> KindPlan:
    """Phase 7: who writes the map."""
    if not userns or not lines:
        writer = WRITER_NONE
    elif not host.rootless:
        writer = WRITER_DIRECT
    elif all(ln.outside == space.own_id and ln.count == 1 for ln in lines):
        writer = WRITER_SELF
    else:
        writer = WRITER_HELPER
    return KindPlan(kind=kind, container=tuple(container), lines=tuple(lines),
                    intermediate=space.parent if host.rootless else (), writer=writer)


def resolve(request: Request, host: Host) -> Plan:
    """Resolve and validate a request into the plan the launcher executes."""
    _check_conflicts(request)
    if request.setgroups not in (None, "allow", "deny"):
        raise MapSyntaxError(f'--setgroups {quoted(request.setgroups)} is not allow or deny',
                             "write --setgroups allow or --setgroups deny")
    said = _Said([], [])
    spaces = _spaces(host, said)
    preset = _preset(request, host, spaces, said)
    pieces = preset.maps if preset is not None else _value_pieces(request, host, spaces, said)
    userns = preset.userns if preset is not None else True
    container, written = _maps(pieces, spaces, userns)
    ids, unswitchable = _target_ids(request, host, preset, container, userns, said)
    setgroups = _setgroups(request, host, preset, written)
    groups = _groups(request, container, setgroups,
                     host_ids=not userns and ids["uid"] is not None)
    kinds = {kind: _kind_plan(kind, host, spaces[kind], container[kind], written[kind], userns)
             for kind in KINDS}
    if is_auto(request.userns):
        if host.auto_block is None:
            said.notes.append("auto: lowest ids of the pool; no lease registry was consulted, "
                              "so this is not reserved against other --userns=auto runs")
        else:
            said.notes.extend(host.auto_block.notes)
            said.warnings.extend(host.auto_block.warnings)
    if not userns:
        said.notes.append("--userns=host as root: no user namespace is created")
    return Plan(rootless=host.rootless, userns=userns, caller_uid=host.uid, caller_gid=host.gid,
                uid=kinds["uid"], gid=kinds["gid"], setgroups=setgroups,
                user_uid=ids["uid"], user_gid=ids["gid"], groups=tuple(groups),
                unswitchable=tuple(unswitchable),
                warnings=tuple(dict.fromkeys(said.warnings)),
                notes=tuple(said.mistakes + said.notes), launch_notes=tuple(said.mistakes))
