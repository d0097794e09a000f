"""--cap-add / --cap-drop: the command's capabilities in its namespace, podman's way.

Pure core (names, the resulting set, its description) and one thin step applied
between the namespace set-up and the exec (``apply_before_switch`` /
``apply_after_switch``), through python-prctl, which is imported only by launches
that change the default set (the caller preloads it before any fork).

The default is what ``unshare -r`` users expect: every capability of the new user
namespace. A set given here is written to the bounding, permitted, effective,
inheritable and ambient sets, so it holds for container root and for a non-root
``--user`` alike, and across the exec.
"""
import os
from ..hints import Iterable

from ..errors import IdrunError, LaunchError, quoted

# linux/capability.h, by number.
NAMES = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
         "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
         "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
         "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
         "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
         "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
ALL = frozenset(range(len(NAMES)))
SYS_ADMIN = NAMES.index("SYS_ADMIN")

# prctl(2) PR_CAP_AMBIENT: python-prctl has no ambient set.
_PR_CAP_AMBIENT, _AMBIENT_RAISE, _AMBIENT_CLEAR_ALL = 47, 2, 4


def cap_name(cap: int) -> str:
    return "CAP_" + NAMES[cap]


def parse_cap(value: str, option: str, allow_all: bool = True) -> frozenset[int]:
    """A podman capability name (case-insensitive, with or without CAP_), or ALL."""
    name = value.strip().upper()
    if allow_all and name == "ALL":
        return ALL
    bare = name[4:] if name.startswith("CAP_") else name
    if bare not in NAMES:
        raise IdrunError(f"{option} {quoted(value)}: unknown capability",
                         "use a name from capabilities(7), e.g. CAP_NET_ADMIN or "
                         "net_admin, or ALL")
    return frozenset((NAMES.index(bare),))


def resolve(cap_add: Iterable[str] = (), cap_drop: Iterable[str] = ()) -> frozenset[int] | None:
    """The command's capability set: every one, less --cap-drop, plus --cap-add (as
    podman: an added capability wins over a dropped one). None: nothing given, the
    default (all), and python-prctl stays unloaded."""
    add, drop = list(cap_add), list(cap_drop)
    if not add and not drop:
        return None
    dropped: frozenset[int] = frozenset()
    for value in drop:
        dropped |= parse_cap(value, "--cap-drop", allow_all=True)
    added: frozenset[int] = frozenset()
    for value in add:
        added |= parse_cap(value, "--cap-add", allow_all=True)
    return (ALL - dropped) | added


def for_read_only(caps: frozenset[int] | None, rootless: bool, has_ro: bool,
                  added: frozenset[int] = frozenset()
                  ) -> tuple[frozenset[int] | None, str | None]:
    """Rootless, the mounts live in a mount namespace the command's own user namespace
    owns, so the kernel does not lock them: CAP_SYS_ADMIN there would let the command
    remount a read-only mount read-write. It is left out unless --cap-add asks for it
    (then ``ro`` is only advisory, said once). Root builds the mounts before the user
    namespace exists and the kernel locks them; nothing changes then."""
    if not rootless or not has_ro:
        return caps, None
    if SYS_ADMIN in added:
        return caps, ("--cap-add SYS_ADMIN with a read-only mount, rootless: the command "
                      "can remount it read-write, so ro is advisory only")
    return (ALL if caps is None else caps) - {SYS_ADMIN}, None


def describe(caps: frozenset[int] | None) -> str:
    """One line for idrun map / --dry-run."""
    if caps is None or caps == ALL:
        return "all in the new user namespace (the default)"
    if not caps:
        return "none"
    if len(caps) > len(ALL) // 2:
        return "all except " + ", ".join(cap_name(c) for c in sorted(ALL - caps))
    return ", ".join(cap_name(c) for c in sorted(caps))


def names(caps: frozenset[int] | None) -> list[str] | None:
    return None if caps is None else [cap_name(c) for c in sorted(caps)]


# --- the step (between set-up and exec) -------------------------------------------

def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(NAMES) - 1


def apply_before_switch(caps: frozenset[int]) -> None:
    """Before the id switch: narrow the bounding set, and keep the permitted set across
    setresuid (for a non-root --user), until apply_after_switch sets the rest."""
    import prctl
    known = [c for c in range(min(_last_cap(), len(NAMES) - 1) + 1)]
    try:
        for cap in known:
            if cap not in caps:
                prctl.capbset.drop(cap)
        prctl.set_keepcaps(True)
    except OSError as e:
        raise LaunchError(f"cannot narrow the bounding capability set: {e.strerror}") from None


def apply_after_switch(caps: frozenset[int]) -> None:
    """After the id switch: permitted, effective and inheritable are exactly ``caps``
    (those this kernel knows), and the ambient set too, so an exec keeps them whatever
    the uid inside."""
    import prctl
    known = set(range(min(_last_cap(), len(NAMES) - 1) + 1))
    keep, lose = sorted(caps & known), sorted(known - caps)
    flags = [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED, prctl.CAP_INHERITABLE]
    try:
        prctl.set_caps((lose, flags, False), (keep, flags, True))
        prctl.set_keepcaps(False)
        from . import syscalls
        syscalls.prctl3(_PR_CAP_AMBIENT, _AMBIENT_CLEAR_ALL, 0)
        for cap in keep:
            syscalls.prctl3(_PR_CAP_AMBIENT, _AMBIENT_RAISE, cap)
    except OSError as e:
        raise LaunchError(f"cannot set the command's capabilities: {e.strerror}") from None


def preload() -> None:
    """Before a fork: the child must not import (threaded API callers)."""
    import prctl  # noqa: F401
    os.stat("/proc/sys/kernel/cap_last_cap")
