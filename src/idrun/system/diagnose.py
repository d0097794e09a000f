"""Why a system call failed here: kernel errnos turned into one-line diagnoses, with
the host's state (sysctls, threads, the path) that explains them.

Loaded only when something has already gone wrong, so the launch path does not
pay for the text; ``failure.explain`` calls these for the steps they cover.
"""
from __future__ import annotations

import errno
import os

from ..errors import CommandNotExecutable, CommandNotFound, IdrunError, LaunchError
from . import procfs, syscalls


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
    if err.errno == errno.E2BIG:
        return CommandNotExecutable(f"{name}: cannot execute {path}: {err.strerror}",
                                    hint="the arguments and environment together exceed the "
                                         "kernel's limit (see getconf ARG_MAX); pass fewer or "
                                         "shorter arguments, e.g. through a file or xargs")
    return CommandNotExecutable(f"{name}: cannot execute {path}: {err.strerror}",
                                hint="the container user may lack permission; check modes "
                                     "and --user")


# statfs(2) magic numbers of the filesystems an idmap error is likely to meet.
FS_MAGIC = {
    0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
    0x6969: "nfs", 0x01021997: "9p", 0x794C7630: "overlay", 0x9FA0: "proc",
    0x62656572: "sysfs", 0x65735546: "fuse", 0xFF534D42: "cifs", 0xFE534D42: "smb2",
    0x2FC12FC2: "zfs", 0x4D44: "vfat", 0xF2F52010: "f2fs", 0xE0F5E1E2: "erofs",
    0x7461636F: "ocfs2", 0x00C36400: "ceph", 0x73717368: "squashfs", 0x1CD1: "devpts",
    0x858458F6: "ramfs",
}


def fs_name(magic: int | None) -> str:
    if magic is None:
        return "unknown"
    return FS_MAGIC.get(magic, f"type 0x{magic:x}")


def mount_error(err: OSError, mount, step: str, path: str,
                magic: int | None = None) -> LaunchError:
    """One line for a refused mount step: the mount, the filesystem type, the errno."""
    if magic is None:
        magic = syscalls.statfs_type(path) if mount.kind != "tmpfs" else 0x01021994
    fs = fs_name(magic)
    code = errno.errorcode.get(err.errno or 0, str(err.errno))
    what = f"{mount.origin}: {step} on {path} ({fs}) failed: {err.strerror} ({code})"
    idmap = "IDMAP" in step
    if err.errno == errno.EINVAL and idmap:
        hint = (f"this kernel cannot id-map {fs} (NFS, 9p, overlay and, before Linux 6.3, "
                "tmpfs cannot); drop idmap for a plain volume")
    elif err.errno == errno.EPERM and idmap:
        hint = ("id-mapped mounts need root in the initial user namespace and a kernel with "
                "the feature enabled; drop idmap for a plain volume")
    elif err.errno == errno.ENOSYS:
        hint = "the kernel (before 5.12) or a seccomp filter lacks the new mount API"
    elif err.errno in (errno.EPERM, errno.EACCES):
        hint = "the user namespace lacks the right to mount there; check the path's owner"
    elif err.errno == errno.ENOENT:
        hint = "the mount point does not exist in the new mount namespace"
    else:
        hint = "run with --verbose; check the source and the mount point"
    return LaunchError(what, hint=hint)
