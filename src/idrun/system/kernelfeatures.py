"""What this kernel can do, asked of the kernel itself: each system call is called with
arguments it must refuse, and the errno tells whether it exists (ENOSYS: no).

The version string appears only in messages: backports, enterprise kernels and seccomp
filters make version numbers a poor guide. Loaded only by launches with mounts, by
``idrun check`` and by ``idrun map``; each probe is one refused system call, asked
once per process.
"""
from __future__ import annotations

import errno
import os
from ..hints import Callable

from ..errors import IdrunError, LaunchError
from . import syscalls

# name -> (system call number, arguments it refuses without side effects)
_BAD = 0xFFFFFFFF   # every flag bit: the calls below check their flags first
_PROBES: dict[str, tuple[int, tuple[int, ...]]] = {
    # open_tree(-1, NULL, all flags): EINVAL (EPERM without the right to mount)
    "open_tree": (syscalls.SYS_OPEN_TREE, (-1, 0, _BAD)),
    # move_mount(-1, NULL, -1, NULL, all flags): EINVAL or EPERM
    "move_mount": (syscalls.SYS_MOVE_MOUNT, (-1, 0, -1, 0, _BAD)),
    # fsopen(NULL, all flags): EINVAL or EPERM
    "fsopen": (syscalls.SYS_FSOPEN, (0, _BAD)),
    # mount_setattr(-1, NULL, all flags, NULL, 0): EINVAL or EPERM
    "mount_setattr": (syscalls.SYS_MOUNT_SETATTR, (-1, 0, _BAD, 0, 0)),
    # close_range(2, 1, 0): first > last, EINVAL; closes nothing
    "close_range": (syscalls.SYS_CLOSE_RANGE, (2, 1, 0)),
}
# Where each call came in, for the messages only.
SINCE = {"open_tree": "5.2", "move_mount": "5.2", "fsopen": "5.2", "mount_setattr": "5.12",
         "close_range": "5.9", "idmap": "5.12"}
NEW_MOUNT_API = ("open_tree", "move_mount", "fsopen")

_cache: dict[str, int] = {}


def probe(name: str) -> int:
    """The errno of the refused probe call ``name`` (ENOSYS: the kernel lacks it)."""
    if name not in _cache:
        number, args = _PROBES[name]
        _cache[name] = syscalls.probe_errno(number, *args)
    return _cache[name]


def has(name: str) -> bool:
    return probe(name) != errno.ENOSYS


def release() -> str:
    return os.uname().release


def idmap_flag() -> bool | None:
    """Whether mount_setattr knows MOUNT_ATTR_IDMAP: given a descriptor number that is
    not open, a kernel that knows the flag looks the descriptor up (EBADF); one that
    does not refuses the flag (EINVAL). None when the call itself is refused first
    (no mount_setattr, or EPERM: no right to mount here, so the kernel cannot be asked)."""
    if "idmap" not in _cache:
        if not has("mount_setattr"):
            _cache["idmap"] = errno.ENOSYS
        else:
            api = syscalls.ctypes_libc()
            c = api["ctypes"]
            closed = 0x7FFFFFF0  # above any open descriptor (RLIMIT_NOFILE is lower)
            attr = api["MountAttr"](syscalls.MOUNT_ATTR_IDMAP, 0, 0, closed)  # type: ignore[operator]
            _cache["idmap"] = syscalls.probe_errno(
                syscalls.SYS_MOUNT_SETATTR, c.c_int(-1), b"",  # type: ignore[attr-defined]
                c.c_uint(syscalls.AT_EMPTY_PATH), c.byref(attr),  # type: ignore[attr-defined]
                c.c_size_t(c.sizeof(attr)))  # type: ignore[attr-defined]
    e = _cache["idmap"]
    if e == errno.EBADF:
        return True
    if e in (errno.EINVAL, errno.ENOSYS):
        return False
    return None


def lacking_for_idmap() -> str | None:
    """What this kernel lacks for id-mapped mounts, or None if it has what they need."""
    missing = [n for n in ("open_tree", "mount_setattr") if not has(n)]
    if missing:
        return " and ".join(f"{n}(2) (Linux {SINCE[n]}+)" for n in missing)
    if idmap_flag() is False:
        return f"MOUNT_ATTR_IDMAP (Linux {SINCE['idmap']}+)"
    return None


def require_idmap(origin: str) -> None:
    """Refuse an id-mapped mount before anything starts when the kernel cannot build
    one: one line naming the kernel and what it lacks, not an ENOSYS halfway."""
    missing = lacking_for_idmap()
    if missing:
        raise LaunchError(f"{origin}: this kernel (Linux {release()}) cannot make id-mapped "
                          f"mounts: it lacks {missing}",
                          hint="drop idmap for a plain bind (files keep their host owners), "
                               "or run on Linux 5.12 or later")


def describe(name: str) -> str:
    e = probe(name)
    if e == errno.ENOSYS:
        return f"{name}: no (ENOSYS; Linux {SINCE[name]}+ or a seccomp filter)"
    return f"{name}: yes"


# Pseudo filesystems nobody bind-mounts as a volume: not worth a probe.
_SKIP_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs",
                      "debugfs", "tracefs", "pstore", "bpf", "configfs", "fusectl", "nsfs",
                      "binfmt_misc", "autofs", "efivarfs", "selinuxfs", "hugetlbfs",
                      "rpc_pipefs", "devtmpfs"})


def mount_points_by_type(mountinfo: str) -> dict[str, str]:
    """The first mount point of each filesystem type in /proc/self/mountinfo's text."""
    out: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        fstype = right.split()[0]
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        if fstype not in _SKIP_FS and fstype not in out:
            out[fstype] = point
    return out


def idmap_by_fs(userns: Callable[[tuple, tuple, Callable[[int], object]], None]
                ) -> tuple[list[str], list[str], str | None]:
    """As root: (types that took MOUNT_ATTR_IDMAP, types the kernel refused with the errno,
    why nothing could be asked). For each filesystem type mounted here, a detached copy of
    one of its mounts is id-mapped with a throwaway namespace (made by ``userns``, the
    engine's ``idmap_userns``), then closed: nothing is attached anywhere. The kernel
    refuses types without FS_ALLOW_IDMAP with EINVAL."""
    if lacking_for_idmap():
        return [], [], f"this kernel lacks {lacking_for_idmap()}"
    try:
        with open("/proc/self/mountinfo") as f:
            points = mount_points_by_type(f.read())
    except OSError as e:
        return [], [], f"cannot read /proc/self/mountinfo: {e.strerror}"
    from ..mapping.ranges import Line
    one = (Line(0, 0x10000, 1),)   # any mapping but the identity one
    # Every descriptor is recorded in ``held`` with signals blocked and closed from there,
    # on the way out and again if a signal handler raised on that way (issue 19).
    held: list[int] = []
    ok: list[str] = []
    refused: list[str] = []
    try:
        try:
            userns(one, one, held.append)
        except (IdrunError, OSError) as e:
            return [], [], f"cannot make a throwaway user namespace: {e}"
        ns = held[0]
        for fstype, point in sorted(points.items()):
            try:
                with syscalls.SignalsBlocked():
                    held.append(syscalls.open_tree(point, syscalls.OPEN_TREE_CLONE
                                                   | syscalls.OPEN_TREE_CLOEXEC))
            except OSError:
                continue        # not reachable from here: says nothing about the type
            try:
                syscalls.mount_setattr(held[-1], "", syscalls.AT_EMPTY_PATH,
                                       syscalls.MOUNT_ATTR_IDMAP, ns)
                ok.append(fstype)
            except OSError as e:
                refused.append(f"{fstype} ({errno.errorcode.get(e.errno or 0, e.errno)})")
            _close_from(held, 1)
        _close_from(held, 0)
    except BaseException:
        _close_from(held, 0)
        raise
    return ok, refused, None


def _close_from(fds: list[int], start: int) -> None:
    """Close and forget ``fds[start:]``, signals blocked."""
    with syscalls.SignalsBlocked():
        while len(fds) > start:
            os.close(fds.pop())


def features() -> dict[str, bool]:
    """The probe results, for ``--json`` (``idrun map --verify``)."""
    return {"new_mount_api": all(has(n) for n in NEW_MOUNT_API),
            "mount_setattr": has("mount_setattr"),
            "idmapped_mounts": lacking_for_idmap() is None,
            "close_range": has("close_range")}


def how_built(m: object) -> str:
    """How a launch builds mount ``m`` (a volumes.Mount) on this kernel, for --verify."""
    kind, idmap, readonly = m.kind, m.idmap, m.readonly  # type: ignore[attr-defined]
    if idmap is not None:
        return "id-mapped: open_tree + mount_setattr(MOUNT_ATTR_IDMAP)"
    if kind == "tmpfs":
        return "mount(2) of a tmpfs"
    what = "bind: mount(2)" if kind == "volume" else "bind: mount(2), then pivot_root"
    if readonly:
        what += (", read-only by mount_setattr" if has("mount_setattr") else
                 ", read-only by a mount(2) remount of each mount (no mount_setattr)")
    return what


def summary() -> str:
    """One line on what this kernel can do for mounts, for --verify."""
    lacking = lacking_for_idmap()
    return (f"Linux {release()}: new mount API "
            f"{'yes' if all(has(n) for n in NEW_MOUNT_API) else 'no'}, mount_setattr "
            f"{'yes' if has('mount_setattr') else 'no'}, id-mapped mounts "
            + ("yes" if lacking is None else f"no (lacks {lacking})")
            + f", close_range {'yes' if has('close_range') else 'no'}")
