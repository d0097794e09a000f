"""Why a launch step failed: kernel errnos turned into one-line diagnoses.

Loaded only when something has already gone wrong, so the launch path does not
pay for the text.
"""
from __future__ import annotations

import errno
import os

from . import procfs, syscalls
from .errors import CommandNotExecutable, CommandNotFound, IdrunError, LaunchError


def _flag_names(flags: int) -> str:
    return ",".join(n for f, n in syscalls.NS_NAMES.items() if flags & f) or "none"


def unshare_error(err: OSError, flags: int) -> LaunchError:
    """Turn a refused unshare(2) into a diagnosis by errno."""
    what = f"unshare({_flag_names(flags)}) failed: {err.strerror}"
    if err.errno == errno.EINVAL:
        n = procfs.thread_count()
        if n > 1:
            return LaunchError(f"{what}: {n} threads are running; a user namespace needs a "
                               "single-threaded process", hint="launch before starting threads")
        return LaunchError(f"{what}: this kernel does not support a requested namespace",
                           hint="drop the option, or check the kernel configuration")
    if err.errno in (errno.ENOSPC, errno.EUSERS):
        limit = procfs.sysctl_int("user/max_user_namespaces")
        if limit == 0:
            return LaunchError(f"{what}: user namespaces are disabled "
                               "(user.max_user_namespaces = 0)",
                               hint="sysctl -w user.max_user_namespaces=15000 as root")
        return LaunchError(f"{what}: a limit on user namespaces was reached "
                           f"(user.max_user_namespaces is {limit} here, an enclosing namespace "
                           "may set less) or the nesting depth of 32 levels",
                           hint="end other sandboxes or raise the sysctl")
    if err.errno in (errno.EPERM, errno.EACCES):
        causes = []
        if flags & syscalls.CLONE_NEWUSER:
            if procfs.sysctl("kernel/unprivileged_userns_clone") == "0" and os.geteuid() != 0:
                causes.append("kernel.unprivileged_userns_clone = 0 forbids unprivileged user "
                              "namespaces")
            if procfs.sysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
                causes.append("AppArmor restricts unprivileged user namespaces "
                              "(kernel.apparmor_restrict_unprivileged_userns = 1)")
            overflow = procfs.sysctl_int("kernel/overflowuid") or 65534
            if os.geteuid() == overflow or os.getegid() == overflow:
                causes.append("your uid or gid is not mapped in the current namespace")
            if _in_chroot():
                causes.append("idrun runs in a chroot")
        elif os.geteuid() != 0:
            causes.append("creating these namespaces without a user namespace needs root")
        if not causes:
            causes.append("a security module (LSM, seccomp) or a chroot refused it")
        return LaunchError(f"{what}: " + "; ".join(causes), hint="run 'idrun check'")
    return LaunchError(what, hint="run 'idrun check'")


def _in_chroot() -> bool:
    try:
        a, b = os.stat("/"), os.stat("/proc/1/root/.")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino)


def write_error(err: OSError, what: str, data: str) -> LaunchError:
    if err.errno == errno.EPERM:
        why = ("the writer lacks CAP_SETUID/CAP_SETGID in the parent namespace, a line maps "
               "ids outside one extent of the parent map, host uid 0 needs CAP_SETFCAP, or "
               "(own-id maps) setgroups was not 'deny' before gid_map")
    elif err.errno == errno.EINVAL:
        why = "overlapping lines, a malformed line, or 4096 bytes or more"
    elif err.errno in (errno.ESRCH, errno.ENOENT):
        why = "the target process is gone"
    else:
        why = err.strerror or "unknown"
    lines = data.strip().replace("\n", "; ")
    return LaunchError(f"writing {what} failed: {err.strerror} ({lines}): {why}",
                       hint="inspect the plan with --dry-run; run 'idrun check'")


def exec_error(err: OSError, name: str, path: str) -> IdrunError:
    if err.errno == errno.ENOENT:
        if os.path.exists(path):
            return CommandNotFound(f"{name}: {path} exists but its interpreter or loader "
                                   "is missing", hint="check the #! line")
        return CommandNotFound(f"{name}: not found inside the namespace",
                               hint="check the path")
    return CommandNotExecutable(f"{name}: cannot execute {path}: {err.strerror}",
                                hint="the container user may lack permission; check modes "
                                     "and --user")
