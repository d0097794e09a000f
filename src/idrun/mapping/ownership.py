"""Who owns the files under a volume, and who they are inside (``idrun map --files``).

Pure: the on-disk owners the shell counted (``ownerscan``), the resolved mount and the
plan in, a ``FilesPreview`` out. An on-disk id reaches the command in two steps, as the
kernel takes it: the mount's id mapping (none for a plain bind) turns it into a host
id, the launched namespace's map turns that into the id the command sees; an id
either step leaves out shows as the overflow id. Creating a file runs the other way:
the creator's inside id → host id → on-disk id, and a host id the mount's map has no
on-disk id for is refused with EOVERFLOW. Both directions use ``ranges.IdMap``.
"""
from typing import NamedTuple

from .plan import Plan
from .ranges import ID_LIMIT, KINDS, IdMap, IntervalSet, Line
from .volumes import Mount

OVERFLOW_ID = 65534      # /proc/sys/kernel/overflowuid and overflowgid, the kernel default


class OwnerCount(NamedTuple):
    """What the walk under one mount's source found."""

    root: str
    entries: int                         # entries read, SRC itself included
    limit: int
    cut: bool                            # the walk stopped at ``limit``
    unreadable: int                      # directories that could not be listed
    uids: dict[int, tuple[int, str]]     # on-disk uid → (entries, first path, "" = SRC)
    gids: dict[int, tuple[int, str]]


class OwnerView(NamedTuple):
    """One on-disk owner and how the command sees it."""

    kind: str                 # "uid" | "gid"
    disk: int
    entries: int
    example: str              # the first path found with this owner, relative; "" = SRC
    host: int | None          # the host id the mount gives it; None: its map leaves it out
    inside: int | None        # the id the command sees; None: the overflow id


class CreateView(NamedTuple):
    """Which inside ids can create files on the mount (one kind)."""

    kind: str
    can: tuple[tuple[int, int], ...]      # inside [start, end) ranges that get an on-disk id
    cannot: tuple[tuple[int, int], ...]   # mapped inside ranges refused with EOVERFLOW
    runs_as: int | None                   # the command's own id, None when it has none
    runs_as_disk: int | None              # the on-disk id of its new files; None: EOVERFLOW


class FilesPreview(NamedTuple):
    mount: Mount
    count: OwnerCount
    owners: tuple[OwnerView, ...]         # uids then gids, most entries first
    create: tuple[CreateView, ...]        # uid, gid


def _namespace_map(plan: Plan, kind: str) -> IdMap:
    """The launched namespace's map; without a user namespace every id is itself."""
    if not plan.userns:
        return IdMap([Line(0, 0, ID_LIMIT)])
    return IdMap(plan.uid.lines if kind == "uid" else plan.gid.lines)


def _mount_map(m: Mount, kind: str) -> IdMap | None:
    if m.idmap is None:
        return None
    return IdMap(m.idmap.uid if kind == "uid" else m.idmap.gid)


def _runs_as(plan: Plan, kind: str) -> int | None:
    if not plan.userns:
        return plan.caller_uid if kind == "uid" else plan.caller_gid
    return plan.user_uid if kind == "uid" else plan.user_gid


def owner_views(m: Mount, plan: Plan, kind: str,
                counts: dict[int, tuple[int, str]]) -> list[OwnerView]:
    """Each on-disk owner of one kind with the id it has inside, most entries first."""
    ns, mnt = _namespace_map(plan, kind), _mount_map(m, kind)
    out = []
    for disk, (n, example) in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0])):
        host = disk if mnt is None else mnt.outward(disk)
        inside = None if host is None else ns.inward(host)
        out.append(OwnerView(kind, disk, n, example, host, inside))
    return out


def create_view(m: Mount, plan: Plan, kind: str) -> CreateView:
    """The inside ids whose new files get an on-disk id on this mount, and those that
    get EOVERFLOW (the mount's map has no on-disk id for their host id)."""
    ns, mnt = _namespace_map(plan, kind), _mount_map(m, kind)
    can = IntervalSet()
    if mnt is None:
        for ln in ns:
            can.add(ln.inside, ln.inside_end)
    # The inside ids whose host ids the mount's map can write on disk.
    for mline in mnt or ():
        for start, end in ns.inward_spans(mline.outside, mline.count):
            can.add(start, end)
    cannot = IntervalSet()
    for ln in sorted(ns, key=lambda ln: ln.inside):
        for start, end in can.complement(ln.inside, ln.inside_end):
            cannot.add(start, end)
    me = _runs_as(plan, kind)
    host = None if me is None else ns.outward(me)
    disk = host if mnt is None or host is None else mnt.inward(host)
    return CreateView(kind, tuple(zip(can.starts, can.ends)),
                      tuple(zip(cannot.starts, cannot.ends)), me, disk)


def preview(m: Mount, plan: Plan, count: OwnerCount) -> FilesPreview:
    owners = (owner_views(m, plan, "uid", count.uids)
              + owner_views(m, plan, "gid", count.gids))
    return FilesPreview(m, count, tuple(owners),
                        tuple(create_view(m, plan, kind) for kind in KINDS))
