"""Volumes, tmpfs and the root filesystem: parse and validate, before anything starts.

Pure: the strings the user typed plus the resolved ``Plan`` in, a ``MountPlan``
(plain data) or one ``IdrunError`` line out. The shell (``mounts``) checks the
paths and makes the mounts.

An idmapped mount takes the id mapping of a user namespace *U*: a line ``A B N``
of U's map shows on-disk id A as host id B. ``idmap`` alone uses the launched
namespace's own lines, so files keep their on-disk numbers inside (podman's
default). A custom map (podman's ``idmap=uids=A-B-N#…;gids=…``, multipass-style
``uid=HOST:INSIDE``) gets its own lines; a ``@`` triplet or a pair names an id
*inside* the launched namespace, which is pushed down through the namespace's
map to the host id U's line needs.
"""
from __future__ import annotations

from ..hints import NamedTuple

from ..errors import MapConflictError, MapSyntaxError, MapValidationError, quoted
from .plan import Plan
from .ranges import ID_LIMIT, IdMap, Line, check_limits, first_overlap
from .syntax import field_number

IDMAP_NONE = ""        # a plain bind
IDMAP_NS = "ns"        # the launched namespace's own map
IDMAP_CUSTOM = "custom"

_VOLUME_OPTS = "ro, rw, idmap, idmap=uids=A-B-N[#…][;gids=…], uid=HOST:INSIDE, gid=HOST:INSIDE"
# tmpfs options turned into mount flags; everything else goes to tmpfs as data.
_TMPFS_FLAGS = {"ro": 0x1, "nosuid": 0x2, "nodev": 0x4, "noexec": 0x8}
_TMPFS_NEGATED = {"rw", "suid", "dev", "exec"}
_TMPFS_DATA = {"size", "mode", "nr_inodes", "nr_blocks", "uid", "gid", "huge", "mpol"}


class MapEntry(NamedTuple):
    """One custom line as typed: on-disk ``disk`` … shows as ``target`` …, ``count`` ids."""

    disk: int
    target: int
    count: int
    inside: bool          # target is an id inside the launched namespace ('@', uid=)
    origin: str           # e.g. 'uid=501:1000' or 'uids triplet 2 "0-100000-10"'


class Volume(NamedTuple):
    src: str
    dst: str
    readonly: bool = False
    idmap: str = IDMAP_NONE
    uids: tuple[MapEntry, ...] = ()
    gids: tuple[MapEntry, ...] = ()
    origin: str = ""      # '--volume "SRC:DST:OPTS"'


class Tmpfs(NamedTuple):
    dst: str
    flags: int = 0        # MS_* flags
    data: str = ""        # the options tmpfs itself takes (size=, mode=, …)
    idmap: bool = False
    origin: str = ""


class Rootfs(NamedTuple):
    dir: str
    idmap: bool = False
    origin: str = ""


class MountRequest(NamedTuple):
    """What the user typed for the mount options."""

    volumes: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    rootfs: str | None = None
    workdir: str | None = None


class MountMaps(NamedTuple):
    """The uid and gid maps of the user namespace whose mapping an id-mapped mount takes
    (on-disk ids inside, host ids outside); each kind's lines are a ``ranges.IdMap``'s."""

    uid: tuple[Line, ...]
    gid: tuple[Line, ...]


class Mount(NamedTuple):
    """One volume, tmpfs or the root filesystem, resolved."""

    kind: str                  # "volume" | "tmpfs" | "rootfs"
    src: str                   # host path; "tmpfs" for a tmpfs
    dst: str                   # path inside ("/" for the root filesystem)
    readonly: bool
    idmap: MountMaps | None        # None: no id mapping
    flags: int = 0
    data: str = ""
    origin: str = ""


class MountPlan(NamedTuple):
    mounts: tuple[Mount, ...] = ()     # rootfs first, then volumes and tmpfs in order
    rootfs: str | None = None
    workdir: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()        # for idrun map, --dry-run and --verbose only


# --- syntax ---------------------------------------------------------------------

def _bad(option: str, value: str, what: str, hint: str) -> MapSyntaxError:
    return MapSyntaxError(f"invalid {option} value {quoted(value)}: {what}", hint)


def _check_dst(dst: str, option: str, value: str, field: str = "DST") -> None:
    if not dst:
        raise _bad(option, value, f"{field} is empty", "write an absolute path, e.g. /data")
    if not dst.startswith("/"):
        raise _bad(option, value, f"{field} {quoted(dst)} is not an absolute path",
                   f"write /{dst}")
    if "\0" in dst:
        raise _bad(option, value, f"{field} contains a NUL byte", "remove it")


def _triplets(text: str, kind: str, value: str, column: int) -> list[MapEntry]:
    entries = []
    for index, raw in enumerate(text.split("#"), 1):
        origin = f'{kind}s triplet {index} {quoted(raw)}'
        at = raw.startswith("@")
        fields = (raw[1:] if at else raw).split("-")
        if len(fields) != 3:
            raise _bad("--volume", value,
                       f"{origin} at column {column} has {len(fields)} field"
                       f"{'' if len(fields) == 1 else 's'} separated by \"-\", expected 3",
                       "write [@]ONDISK-HOST-COUNT, e.g. idmap=uids=0-100000-65536")
        disk, target, count = (field_number(f, value, "--volume", f"{origin} {name}")
                               for f, name in zip(fields, ("on-disk id", "target id", "count")))
        if count == 0:
            raise _bad("--volume", value, f"{origin} has count 0", "map at least 1 id")
        entries.append(MapEntry(disk, target, count, at, origin))
        column += len(raw) + 1
    return entries


def _custom_idmap(text: str, value: str, column: int
                  ) -> tuple[list[MapEntry], list[MapEntry]]:
    """podman's ``uids=…;gids=…`` (either part may be left out, not both)."""
    uids: list[MapEntry] = []
    gids: list[MapEntry] = []
    seen = set()
    for part in text.split(";"):
        key, eq, rest = part.partition("=")
        if key not in ("uids", "gids") or not eq:
            raise _bad("--volume", value,
                       f"idmap part {quoted(part)} at column {column} is neither uids=… "
                       "nor gids=…",
                       "write idmap=uids=A-B-N[#A-B-N…][;gids=A-B-N…]")
        if key in seen:
            raise _bad("--volume", value, f"idmap gives {key}= twice (column {column})",
                       "join the triplets with #")
        seen.add(key)
        entries = _triplets(rest, key[:-1], value, column + len(key) + 1)
        (uids if key == "uids" else gids).extend(entries)
        column += len(part) + 1
    return uids, gids


def _pair(opt: str, value: str, column: int) -> MapEntry:
    """multipass's ``-u HOST:INSIDE`` as ``uid=HOST:INSIDE``."""
    key, _, rest = opt.partition("=")
    host, colon, inside = rest.partition(":")
    if not colon:
        raise _bad("--volume", value, f"{key}={rest} at column {column} is not HOST:INSIDE",
                   f"write {key}=HOST:INSIDE, e.g. {key}=501:1000 (host id first)")
    origin = f"{key}={rest}"
    return MapEntry(field_number(host, value, "--volume", f"{origin} host id"),
                    field_number(inside, value, "--volume", f"{origin} inside id"), 1, True,
                    origin)


def parse_volume(value: str) -> Volume:
    """``SRC:DST[:OPTS]``: SRC and DST hold no ':', everything after the second is OPTS."""
    parts = value.split(":", 2)
    if len(parts) < 2:
        raise _bad("--volume", value, "it has no DST", "write SRC:DST[:OPTS], e.g. "
                   "/srv/data:/data:ro")
    src, dst = parts[0], parts[1]
    if not src:
        raise _bad("--volume", value, "SRC is empty", "write SRC:DST[:OPTS]")
    _check_dst(dst, "--volume", value)
    readonly = None
    idmap = IDMAP_NONE
    uids: list[MapEntry] = []
    gids: list[MapEntry] = []
    if len(parts) == 3:
        column = len(src) + len(dst) + 3
        for opt in parts[2].split(","):
            name, eq, arg = opt.partition("=")
            if opt in ("ro", "rw"):
                if readonly is not None:
                    raise _bad("--volume", value, f"{opt} at column {column} repeats ro/rw",
                               "give ro or rw once")
                readonly = opt == "ro"
            elif opt == "idmap":
                if idmap != IDMAP_NONE:
                    raise _bad("--volume", value, f"idmap at column {column} is given twice",
                               "give idmap once")
                idmap = IDMAP_NS
            elif name == "idmap" and eq:
                if idmap == IDMAP_NS:
                    raise _bad("--volume", value, f"idmap= at column {column} conflicts with "
                               "the plain idmap before it", "keep one of them")
                idmap = IDMAP_CUSTOM
                u, g = _custom_idmap(arg, value, column + 6)
                uids += u
                gids += g
            elif name in ("uid", "gid") and eq:
                if idmap == IDMAP_NS:
                    raise _bad("--volume", value, f"{opt} at column {column} conflicts with "
                               "the plain idmap: a pair makes a custom map",
                               "drop idmap, or drop the pair")
                idmap = IDMAP_CUSTOM
                (uids if name == "uid" else gids).append(_pair(opt, value, column))
            else:
                shown = quoted(opt) if opt else "an empty option"
                raise _bad("--volume", value, f"unknown option {shown} at column {column}",
                           f"options are {_VOLUME_OPTS}")
            column += len(opt) + 1
    return Volume(src, dst, bool(readonly), idmap, tuple(uids), tuple(gids),
                  f"--volume {quoted(value)}")


def parse_tmpfs(value: str) -> Tmpfs:
    """podman's ``--tmpfs DST[:OPTS]``, e.g. ``/scratch:size=64m,mode=1777``."""
    dst, _, opts = value.partition(":")
    _check_dst(dst, "--tmpfs", value)
    flags = 0
    data = []
    idmap = False
    column = len(dst) + 2
    for opt in opts.split(",") if opts else ():
        name = opt.partition("=")[0]
        if opt in _TMPFS_FLAGS:
            flags |= _TMPFS_FLAGS[opt]
        elif opt in _TMPFS_NEGATED:
            pass
        elif opt == "idmap":
            idmap = True
        elif name in _TMPFS_DATA and "=" in opt:
            data.append(opt)
        else:
            shown = quoted(opt) if opt else "an empty option"
            raise _bad("--tmpfs", value, f"unknown option {shown} at column {column}",
                       "options are ro, rw, nosuid, nodev, noexec, idmap, size=, mode=, "
                       "nr_inodes=, uid=, gid=")
        column += len(opt) + 1
    return Tmpfs(dst, flags, ",".join(data), idmap, f"--tmpfs {quoted(value)}")


def parse_rootfs(value: str) -> Rootfs:
    """``DIR[:idmap]``."""
    path, colon, opt = value.partition(":")
    if not path:
        raise _bad("--rootfs", value, "DIR is empty", "write --rootfs DIR[:idmap]")
    if colon and opt != "idmap":
        raise _bad("--rootfs", value, f"unknown option {quoted(opt)} at column "
                   f"{len(path) + 2}", "the only option is idmap: --rootfs DIR:idmap")
    return Rootfs(path, bool(colon), f"--rootfs {quoted(value)}")


# --- custom maps -----------------------------------------------------------------

def _custom_lines(entries: tuple[MapEntry, ...], kind: str, ns: tuple[Line, ...],
                  userns: bool, origin: str) -> tuple[Line, ...]:
    """U's lines for a custom map, checked one-to-one on both sides."""
    ns_map = IdMap(ns)
    for e in entries:
        for side, start in (("on-disk", e.disk), ("target", e.target)):
            if start + e.count > ID_LIMIT:
                raise MapValidationError(
                    f"{origin}: {e.origin}: the {side} range {start}-{start + e.count - 1} "
                    f"reaches {ID_LIMIT}, which is never a valid id",
                    f"end the range below {ID_LIMIT}")
    # Sorted by (start, count) first: of two ranges with the same start the shorter is
    # named first (the sweep keeps the order of equal starts).
    clash = first_overlap(sorted(entries, key=lambda e: (e.disk, e.count)),
                          lambda e: e.disk, lambda e: e.count)
    if clash:
        a, b, ident = clash.earlier, clash.later, clash.first
        raise MapValidationError(
            f"{origin}: {a.origin} and {b.origin} both map on-disk (host) {kind} {ident}; "
            "an id mapping must be one-to-one", "give each host id one inside id")
    lines: list[Line] = []
    pieces: list[tuple[Line, MapEntry]] = []
    for e in entries:
        line = Line(e.disk, e.target, e.count)
        if e.inside:
            if not userns:
                raise MapValidationError(
                    f"{origin}: {e.origin} names an inside {kind}, but there is no user "
                    "namespace (--userns host)", "give host ids, or map a user namespace")
            got, missing = ns_map.split([line], translate=True)
            if missing is not None:
                inside = missing[1]
                raise MapValidationError(
                    f"{origin}: {e.origin}: inside {kind} {inside} is not mapped by the "
                    "launched namespace, so no file could show as it",
                    f"map {kind} {inside} with --{kind}map, or pick a mapped inside {kind}")
        else:
            got = [line]
            runs = ns_map.inward_runs(e.target, e.count) if userns else []
            if isinstance(runs, int):
                # Like a pair's unmapped inside id: those files would only show as nobody.
                raise MapValidationError(
                    f"{origin}: {e.origin}: host {kind} {runs} is not mapped by the launched "
                    f"namespace, so files owned on disk by {kind} "
                    f"{e.disk + runs - e.target} would show as nobody",
                    f"give a host {kind} the namespace maps, or an inside {kind} with a "
                    f"leading @ (e.g. @{e.disk}-INSIDE-{e.count})")
        lines += got
        pieces += [(ln, e) for ln in got]
    clash = first_overlap(sorted(pieces, key=lambda p: (p[0].outside, p[0].count)),
                          lambda p: p[0].outside, lambda p: p[0].count)
    if clash:
        (_, a), (_, b), ident = clash.earlier, clash.later, clash.first
        inside = ns_map.inward(ident) if userns else None
        shown = f"inside {kind} {inside}" if inside is not None else f"host {kind} {ident}"
        raise MapValidationError(
            f"{origin}: {a.origin} and {b.origin} both show files as {shown}; "
            "an id mapping must be one-to-one", "give each inside id one host id")
    check_limits(lines, f"{origin}: the {kind} idmap", "use fewer, longer ranges")
    return tuple(sorted(lines))


def _own_id_command(volume: "Volume | None", plan: Plan) -> str | None:
    """Rootless pairs that only map the caller's own ids: the keep-id command that shows
    the caller's files as those inside ids without an id-mapped mount."""
    if volume is None or not volume.uids or len(volume.uids) > 1 or len(volume.gids) > 1:
        return None
    pairs = ([(e, plan.caller_uid) for e in volume.uids]
             + [(e, plan.caller_gid) for e in volume.gids])
    if not all(e.inside and e.count == 1 and e.disk == own for e, own in pairs):
        return None
    opts = f"uid={volume.uids[0].target}" + (f",gid={volume.gids[0].target}"
                                              if volume.gids else "")
    ro = ":ro" if volume.readonly else ""
    return f"--userns keep-id:{opts} -v {volume.src}:{volume.dst}{ro}"


def _idmap_for(what: str, mode: str, uids: tuple[MapEntry, ...], gids: tuple[MapEntry, ...],
               plan: Plan, volume: "Volume | None" = None) -> MountMaps | None:
    if mode == IDMAP_NONE:
        return None
    if plan.rootless:
        command = _own_id_command(volume, plan)
        raise MapValidationError(
            f"{what}: an id-mapped mount needs CAP_SYS_ADMIN over the host filesystem, which "
            "an unprivileged user never has (the kernel answers EPERM)",
            f"your own ids need no id-mapped mount: run idrun {command} (instead of the other "
            "mapping options)" if command else
            "drop idmap for a plain volume and put your own uid where you want it inside "
            "with --userns keep-id:uid=N, or a --uidmap that maps intermediate id 0 to N")
    if not plan.userns and not (uids and gids and not any(e.inside for e in uids + gids)):
        raise MapValidationError(
            f"{what}: idmap takes the launched namespace's map, but there is no user namespace "
            "(--userns host)", "map a user namespace, or give both uids and gids host ids")
    maps = []
    for kind, entries, kp in (("uid", uids, plan.uid), ("gid", gids, plan.gid)):
        if entries:
            maps.append(_custom_lines(entries, kind, kp.lines, plan.userns, what))
            continue
        if not kp.lines:
            raise MapValidationError(
                f"{what}: the launched namespace maps no {kind}, so idmap has no {kind} "
                "lines to use", f"map {kind}s, or give {kind}s in idmap=…")
        maps.append(tuple(kp.lines))
    return MountMaps(*maps)


def resolve_mounts(request: MountRequest, plan: Plan) -> MountPlan:
    """Parse and check every mount option against the resolved plan."""
    mounts: list[Mount] = []
    warnings: list[str] = []
    notes: list[str] = []
    rootfs = None
    if request.rootfs is not None:
        r = parse_rootfs(request.rootfs)
        mounts.append(Mount("rootfs", r.dir, "/", False,
                            _idmap_for(r.origin, IDMAP_NS if r.idmap else IDMAP_NONE, (), (),
                                       plan), origin=r.origin))
        rootfs = r.dir
    seen: dict[str, str] = {}
    for value in request.volumes:
        v = parse_volume(value)
        idmap = _idmap_for(v.origin, v.idmap, v.uids, v.gids, plan, v)
        if v.idmap == IDMAP_NS and plan.user_uid == 0:
            notes.append(f"{v.origin}: with idmap, files root creates inside are owned by "
                         "real host root (uid 0) on disk")
        if v.idmap == IDMAP_CUSTOM and not v.readonly and idmap is not None:
            warnings += _creation_warnings(v, idmap, plan)
        mounts.append(Mount("volume", v.src, v.dst, v.readonly, idmap, origin=v.origin))
    for value in request.tmpfs:
        t = parse_tmpfs(value)
        idmap = _idmap_for(t.origin, IDMAP_NS if t.idmap else IDMAP_NONE, (), (), plan)
        mounts.append(Mount("tmpfs", "tmpfs", t.dst, bool(t.flags & 1), idmap,
                            t.flags & ~1, t.data, t.origin))
    for m in mounts:
        if m.kind == "rootfs":
            continue
        dst = m.dst.rstrip("/") or "/"
        if dst in seen:
            raise MapConflictError(f"{m.origin} and {seen[dst]} both mount on {dst}",
                                   "give each mount its own destination")
        seen[dst] = m.origin
    if request.workdir is not None:
        _check_dst(request.workdir, "--workdir", request.workdir, "the directory")
    return MountPlan(tuple(mounts), rootfs, request.workdir, tuple(warnings), tuple(notes))


def _creation_warnings(v: Volume, idmap: MountMaps, plan: Plan) -> list[str]:
    """What a custom map does to the files the command creates under DST: EOVERFLOW when
    its ids have no on-disk id, a surprising on-disk group when only uids were given."""
    if not plan.userns or plan.user_uid is None or plan.user_gid is None:
        return []
    disk: dict[str, int | None] = {}
    out = []
    for kind, ident, kp, lines in (("uid", plan.user_uid, plan.uid, idmap.uid),
                                   ("gid", plan.user_gid, plan.gid, idmap.gid)):
        host = IdMap(kp.lines).outward(ident)
        disk[kind] = None if host is None else IdMap(lines).inward(host)
        if disk[kind] is None:
            option = "--user" if kind == "uid" else "--user UID:GID"
            out.append(f"{v.origin}: the command runs as inside {kind} {ident}, which the idmap "
                       f"cannot store on disk, so creating files under {v.dst} fails with "
                       f"EOVERFLOW (map it too, e.g. {kind}=HOST:{ident}, pick a mapped "
                       f"{kind} with {option}, or add :ro)")
    if v.uids and not v.gids and disk["gid"] == 0 and disk["uid"] not in (None, 0):
        out.append(f"{v.origin}: files the command creates under {v.dst} are owned on disk by "
                   f"uid {disk['uid']} and gid 0 (root's group): a uid= pair leaves gids as "
                   f"the namespace maps them, on-disk gid = inside gid {plan.user_gid} (add "
                   f"gid=HOST:{plan.user_gid} for the group you want, or run as --user "
                   f"{plan.user_uid}:GID)")
    return out


def owner_warning(m: Mount, uid: int, gid: int) -> str | None:
    """The kernel refuses writes (EACCES) into an inode whose owner the idmap cannot map."""
    if m.idmap is None:
        return None
    unmapped = [f"{k} {i}" for k, i, lines in (("uid", uid, m.idmap.uid),
                                                ("gid", gid, m.idmap.gid))
                if not IdMap(lines).covers(i)]
    if not unmapped:
        return None
    return (f"{m.origin}: the idmap does not map the on-disk owner of {m.src} "
            f"({', '.join(unmapped)}): it shows as the overflow id and its top directory is "
            "read-only inside (EACCES)")
