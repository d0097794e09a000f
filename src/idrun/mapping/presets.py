"""The mappings a single option describes: --userns modes and util-linux's shorthands.

Pure. Each preset gives the pieces of both kinds and, where the mode implies them,
the ids to run as and the setgroups answer; ``resolve`` validates them like
values typed by hand.
"""

from ..hints import NamedTuple

from ..errors import MapConflictError, MapSyntaxError, SubidError, quoted
from .intermediate import Space
from .pieces import Piece, host_lookup, pair
from .plan import SUBID_FILE, Host, Request
from .ranges import ID_LIMIT, KINDS, MAX_ID, subtract
from .syntax import decimal_id, mode_options, parse_userns


def parse_options(mode: str, text: str, allowed: tuple[str, ...]) -> dict[str, int]:
    """A mode's ``key=N,…`` options, each key one of ``allowed``."""
    return {key: decimal_id(value, f"--userns={mode}: {key}=",
                            f"write {key}= with a number from 0 to {MAX_ID}")
            for key, value in mode_options(text, f"--userns={mode}", mode,
                                           dict.fromkeys(allowed, "N"))}


class Preset(NamedTuple):
    """The pieces a mode gives both kinds, and what it implies besides."""

    maps: dict[str, list[Piece]]
    user: tuple[int | None, int | None] | None = None   # default ids to run as
    setgroups: str | None = None
    userns: bool = True


def userns_preset(request: Request, host: Host, spaces: dict[str, Space]) -> Preset:
    """--userns=host, keep-id[:…], nomap or auto[:…], as podman maps them."""
    spec = request.userns or ""
    mode, opttext, _ = parse_userns(spec)
    origin = f"--userns={spec}"
    rootless = host.rootless
    if mode == "host":
        if opttext:
            raise MapSyntaxError(f"{origin}: host takes no options", "write --userns=host")
        if not rootless:
            return Preset({"uid": [], "gid": []}, user=(None, None), userns=False)
        return Preset({k: [Piece(0, 0, spaces[k].size, origin)] for k in KINDS}, user=(0, 0))
    if mode == "keep-id":
        opts = parse_options(mode, opttext, ("uid", "gid", "size"))
        if not rootless:
            if "size" in opts:
                raise MapConflictError(f"{origin}: size= is only supported in rootless mode",
                                       "drop size=, or run idrun as a normal user")
            maps = {k: [Piece(ln.inside, ln.inside, ln.count, origin) for ln in spaces[k].parent]
                    for k in KINDS}
            return Preset(maps, user=(opts.get("uid", 0), opts.get("gid", 0)))
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
        return Preset(maps, user=(opts.get("uid", spaces["uid"].own_id),
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
        return Preset(maps, user=(0, 0))
    if mode == "auto":
        return auto_preset(request, host, spaces)
    raise MapSyntaxError(f'unknown --userns mode {quoted(mode)}',
                         "use host, keep-id[:uid=N,gid=N,size=N], nomap or auto[:size=N]")


def auto_preset(request: Request, host: Host, spaces: dict[str, Space]) -> Preset:
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
        pieces = pair(inside_seq, from_seq, origin)
        for t in extra:
            if t.host:
                pieces += [Piece(t.container + off, inter, n, t.origin)
                           for off, inter, n in host_lookup(t, space)]
            else:
                pieces.append(Piece(t.container, t.from_id, t.amount, t.origin))
        maps[kind] = pieces
    return Preset(maps, user=(0, 0))


def shorthand_preset(request: Request, host: Host, spaces: dict[str, Space]) -> Preset:
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
            pieces += pair(inside_seq, outside_seq, "--map-auto")
        maps[kind] = pieces
    if request.map_root_user:
        user = (0, 0)
    elif request.map_current_user:
        user = (spaces["uid"].own_id, spaces["gid"].own_id)
    else:
        user = (0, 0)
    return Preset(maps, user=user,
                   setgroups="deny" if single and not request.map_auto else None)


def default_preset(host: Host, spaces: dict[str, Space], notes: list[str]) -> Preset:
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
        notes.append(f"no mapping given: the default, podman unshare's: 0 = you (uid "
                          f"{host.uid}){subs}; pass --uidmap/--userns/-r/-c for another")
        return Preset(maps, user=(0, 0))
    maps = {k: [Piece(0, spaces[k].own_id, 1, "the default mapping (root alone)")]
            for k in KINDS}
    notes.append(f"no mapping given: the default as root maps root alone to itself "
                      f"(uid {host.uid} and gid {host.gid} are 0 inside, as -r would map "
                      "them), so the command keeps root's access to files and every other "
                      "id shows as nobody; pass --uidmap/--userns for more")
    return Preset(maps, user=(0, 0), setgroups="deny")
