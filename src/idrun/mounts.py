"""Carrying out a ``MountPlan``: check the paths, build the id-mapped trees, attach them.

Two steps, split by who can do them:

* ``prepare`` runs in the launcher before any child exists. It checks the paths
  and, as root in the initial user namespace (the only place the kernel allows
  it for host filesystems), builds every id-mapped mount as a *detached* tree:
  ``open_tree(OPEN_TREE_CLONE)`` (or a fresh detached tmpfs), then
  ``mount_setattr(MOUNT_ATTR_IDMAP)`` with a throwaway user namespace holding
  the mapping. The detached trees are file descriptors, inherited by the
  process that becomes the command.
* ``attach`` runs in that process after it unshared its mount namespace, while
  it still holds its capabilities there: it makes nothing shared, binds the
  plain volumes, moves the prepared trees into place, and for ``--rootfs``
  builds /dev and /proc and pivots into the new root.

Every failure is one ``LaunchError`` line naming the mount, the filesystem type
and the errno (``diagnose.mount_error``).
"""
from __future__ import annotations

import os
from typing import NamedTuple

from . import syscalls
from .errors import LaunchError, MapValidationError
from .plan import Plan
from .volumes import IdMap, Mount, MountPlan, MountRequest, owner_warning, resolve_mounts

_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


class Prepared(NamedTuple):
    """A checked MountPlan with its detached trees (one fd or None per mount)."""

    plan: MountPlan
    sources: tuple[str, ...]           # absolute host paths ("tmpfs" for a tmpfs)
    # One per mount, then (with --rootfs) the prepared /dev tmpfs; a list, so that
    # release() can mark closed ones None.
    fds: list[int | None]
    rootfs: str | None                 # real path of --rootfs DIR

    def release(self) -> None:
        """Close this process's copies of the detached trees; safe to call again."""
        for i, fd in enumerate(self.fds):
            if fd is not None:
                self.fds[i] = None
                try:
                    os.close(fd)
                except OSError:
                    pass


# --- before anything starts -------------------------------------------------------

def plan_mounts(request: MountRequest, plan: Plan) -> MountPlan | None:
    """Resolve and check the mount options; None when there are none."""
    if not (request.volumes or request.tmpfs or request.rootfs is not None
            or request.workdir is not None):
        return None
    return check_paths(resolve_mounts(request, plan))[0]


def _inside_root(root: str, dst: str) -> str:
    """DIR + DST, refused if a symlink would lead outside DIR."""
    target = os.path.join(root, dst.lstrip("/"))
    real = os.path.realpath(target)
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise MapValidationError(f"{dst} inside --rootfs {root} resolves to {real}, outside "
                                 "the root filesystem", "remove the symlink, or pick another "
                                 "destination")
    return target


def _make_mount_point(path: str, is_dir: bool, origin: str) -> None:
    if os.path.lexists(path):
        return
    try:
        if is_dir:
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    except OSError as e:
        raise LaunchError(f"{origin}: cannot create the mount point {path}: {e.strerror}",
                          hint="create it in the root filesystem, or make it writable") from None


def check_paths(mplan: MountPlan) -> tuple[MountPlan, tuple[str, ...]]:
    """Host-side checks (sources, destinations, --rootfs DIR) and the owner warnings.

    Returns the plan with the warnings added and the absolute source paths. Creates
    nothing; missing mount points inside --rootfs are created by ``prepare``.
    """
    warnings = list(mplan.warnings)
    sources: list[str] = []
    root = None
    for m in mplan.mounts:
        if m.kind == "tmpfs":
            sources.append("tmpfs")
            continue
        src = os.path.abspath(m.src)
        try:
            st = os.stat(src)
        except OSError as e:
            what = "--rootfs DIR" if m.kind == "rootfs" else "SRC"
            raise MapValidationError(f"{m.origin}: {what} {src}: {e.strerror}",
                                     "check the path") from None
        if m.kind == "rootfs":
            if not os.path.isdir(src):
                raise MapValidationError(f"{m.origin}: {src} is not a directory",
                                         "give a directory that holds a root filesystem")
            root = os.path.realpath(src)
        w = owner_warning(m, st.st_uid, st.st_gid)
        if w:
            warnings.append(w)
        sources.append(src)
    for m in mplan.mounts:
        if m.kind != "rootfs" and root is None and not os.path.exists(m.dst):
            raise MapValidationError(f"{m.origin}: DST {m.dst} does not exist on the host, "
                                     "and without --rootfs idrun mounts over existing paths "
                                     "only", "create it first, or pick an existing path, or "
                                     "use --rootfs DIR (missing mount points are created "
                                     "inside DIR)")
    return mplan._replace(warnings=tuple(warnings)), tuple(sources)


def _make_userns(idmap: IdMap, into: dict) -> None:
    """An open fd of a throwaway user namespace whose maps are ``idmap``, stored as
    ``into[idmap]`` with signals blocked: a handler that raises after the open but
    before the caller had recorded the fd leaked it (issue 19).

    A forked child unshares CLONE_NEWUSER and waits; this process (root in the
    parent namespace) writes its maps and opens its ns/user; the child is then
    killed and reaped. The fd keeps the namespace alive.
    """
    from .engine import Owned
    from .ranges import render
    syscalls.preload()                  # the child must not import (threaded API callers)
    own = Owned()
    try:
        ready_r, ready_w = own.pipe()
        hold_r, hold_w = own.pipe()

        def main(mask: object) -> None:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os.write(ready_w, b"r")
            os.read(hold_r, 1)           # EOF: the parent is done (or gone)
            os._exit(0)

        child = own.fork("a process for an idmap's user namespace", main, None,
                         (ready_w, hold_r))
        own.close(ready_w)
        own.close(hold_r)
        if os.read(ready_r, 1) != b"r":
            raise LaunchError("cannot create a user namespace for an idmap: the helper "
                              "process failed to unshare", hint="run 'idrun check'")
        procfd = own.adopt_fd(lambda: os.open(f"/proc/{child.pid}",
                                              os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for kind, lines in (("uid", idmap.uid), ("gid", idmap.gid)):
            text = render(lines)
            try:
                with syscalls.SignalsBlocked():     # no fd lost to a raising handler
                    fd = os.open(f"{kind}_map", os.O_WRONLY | os.O_CLOEXEC, dir_fd=procfd)
                    try:
                        os.write(fd, text.encode())
                    finally:
                        os.close(fd)
            except OSError as e:
                raise LaunchError(f"cannot write the idmap's {kind}_map "
                                  f"{text.strip()!r}: {e.strerror}") from None
        with syscalls.SignalsBlocked():
            into[idmap] = os.open("ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=procfd)
        own.abort()                     # kill and reap the child, close the pipes
    except BaseException:
        # Also when a handler raised on the way into the abort above.
        own.abort()
        raise


def _tmpfs_options(m: Mount) -> list[tuple[str, str]]:
    return [tuple(o.split("=", 1)) for o in m.data.split(",") if o]  # type: ignore[misc]


def prepare(mplan: MountPlan, rootless: bool, verify_only: bool = False) -> Prepared:
    """Check the paths and build the id-mapped trees; before any child exists.

    ``verify_only`` (``--verify``): build the id-mapped trees, so the kernel says
    whether it takes them, but create no mount point and no /dev."""
    mplan, sources = check_paths(mplan)
    root = os.path.realpath(mplan.rootfs) if mplan.rootfs is not None else None
    if root is not None and not verify_only:
        # Mount points inside DIR only, created by the caller (who can write there,
        # unlike root of a user namespace mapped elsewhere).
        for m, src in zip(mplan.mounts, sources):
            if m.kind != "rootfs":
                _make_mount_point(_inside_root(root, m.dst),
                                  m.kind == "tmpfs" or os.path.isdir(src), m.origin)
        for name in ("dev", "proc"):
            _make_mount_point(_inside_root(root, "/" + name), True, "--rootfs")
    fds: list[int | None] = []
    userns: dict[IdMap, int] = {}
    try:
        for m, src in zip(mplan.mounts, sources):
            if m.idmap is None:
                fds.append(None)
                continue
            if rootless:        # volumes refuses it already; never reach the kernel
                raise MapValidationError(f"{m.origin}: idmap needs root")
            if m.idmap not in userns:
                _make_userns(m.idmap, userns)
            with syscalls.SignalsBlocked():     # each new fd recorded before a handler runs
                fds.append(_idmapped_tree(m, src, userns[m.idmap]))
        if root is not None:
            with syscalls.SignalsBlocked():
                fds.append(None if rootless or verify_only else _dev_tree())
        _close_all(userns)
    except BaseException:
        # Also when a handler raised on the way into the _close_all above.
        _close_all(userns)
        _close_all(fds)
        raise
    return Prepared(mplan, sources, fds, root)


def _close_all(fds: list | dict) -> None:
    """Close and forget every fd of ``fds``; again later, it does nothing."""
    with syscalls.SignalsBlocked():
        items = list(fds.values() if isinstance(fds, dict) else fds)
        fds.clear()
        for fd in items:
            if fd is not None:
                os.close(fd)


def _populate_dev(dev: int) -> None:
    """Mount points for the host's character devices (mknod needs CAP_MKNOD in the
    initial namespace, so they are bound in), pts for a private devpts, links."""
    for name in _DEV_NODES:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dev))
    os.mkdir("pts", 0o755, dir_fd=dev)
    for link, to in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                     ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")):
        os.symlink(to, link, dir_fd=dev)


def _dev_tree() -> int:
    """As root: the --rootfs /dev tmpfs, made and filled before the fork. Inside the
    new namespace the caller's own ids are usually unmapped, and creating a file
    there would fail with EOVERFLOW."""
    try:
        fd = syscalls.fsmount_tmpfs([("mode", "755"), ("size", "64k")])
    except OSError as e:
        raise LaunchError(f"--rootfs: cannot make a tmpfs for /dev: {e.strerror}") from None
    try:
        _populate_dev(fd)
    except OSError as e:
        os.close(fd)
        raise LaunchError(f"--rootfs: cannot fill the tmpfs for /dev: {e.strerror}") from None
    return fd


def _idmapped_tree(m: Mount, src: str, userns_fd: int) -> int:
    from .diagnose import mount_error
    step = "open_tree"
    try:
        if m.kind == "tmpfs":
            step = "fsmount(tmpfs)"
            fd = syscalls.fsmount_tmpfs(_tmpfs_options(m))
        else:
            fd = syscalls.open_tree(src, syscalls.OPEN_TREE_CLONE | syscalls.OPEN_TREE_CLOEXEC
                                    | syscalls.AT_RECURSIVE)
    except OSError as e:
        raise mount_error(e, m, step, src) from None
    try:
        attr = syscalls.MOUNT_ATTR_IDMAP | (syscalls.MOUNT_ATTR_RDONLY if m.readonly else 0)
        syscalls.mount_setattr(fd, "", syscalls.AT_EMPTY_PATH | syscalls.AT_RECURSIVE, attr,
                               userns_fd)
    except OSError as e:
        fstype = syscalls.statfs_type(fd)
        os.close(fd)
        raise mount_error(e, m, "mount_setattr(MOUNT_ATTR_IDMAP)", src, fstype) from None
    return fd


# --- in the new mount namespace ---------------------------------------------------------

def _bind(src: str, target: str, m: Mount | None, readonly: bool) -> None:
    from .diagnose import mount_error
    try:
        syscalls.mount(src, target, None, syscalls.MS_BIND | syscalls.MS_REC)
        if readonly:
            syscalls.mount_setattr(syscalls.AT_FDCWD, target, syscalls.AT_RECURSIVE,
                                   syscalls.MOUNT_ATTR_RDONLY)
    except OSError as e:
        if m is None:
            raise LaunchError(f"cannot bind {src} on {target}: {e.strerror}") from None
        raise mount_error(e, m, "bind mount", src) from None


def _minimal_dev(root: str, dev_fd: int | None) -> None:
    """A tmpfs /dev (prepared by root, or made here rootless, where this process's
    own uid is mapped), the host's devices bound in and a private devpts."""
    dev = os.path.join(root, "dev")
    try:
        if dev_fd is not None:
            syscalls.move_mount(dev_fd, dev)
        else:
            syscalls.mount("tmpfs", dev, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                           "mode=755,size=64k")
            dfd = os.open(dev, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _populate_dev(dfd)
            finally:
                os.close(dfd)
        for name in _DEV_NODES:
            syscalls.mount(f"/dev/{name}", os.path.join(dev, name), None, syscalls.MS_BIND)
        syscalls.mount("devpts", os.path.join(dev, "pts"), "devpts",
                       syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=620")
    except OSError as e:
        import errno
        hint = ("rootless, your own uid and gid must be mapped inside (e.g. -r or "
                "--userns keep-id) for the /dev tmpfs" if e.errno == errno.EOVERFLOW else None)
        raise LaunchError(f"--rootfs: cannot build a minimal /dev in {dev}: {e.strerror} "
                          f"({e.filename or dev})", hint=hint) from None


def _proc(root: str, fresh: bool) -> None:
    target = os.path.join(root, "proc")
    if not fresh:
        _bind("/proc", target, None, readonly=True)
        return
    try:
        syscalls.mount("proc", target, "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as e:
        raise LaunchError(f"--rootfs: cannot mount a fresh /proc in {target}: "
                          f"{e.strerror}") from None


# f_type of the filesystems an initial ramfs ("rootfs") can be.
_RAMFS_MAGIC, _TMPFS_MAGIC = 0x858458F6, 0x01021994


def _pivot(root: str) -> None:
    try:
        os.chdir(root)
        try:
            syscalls.pivot_root(".", ".")
        except OSError as e:
            if e.errno != 22 or syscalls.statfs_type("/") not in (_RAMFS_MAGIC, _TMPFS_MAGIC):
                raise
            # A system running from its initramfs cannot pivot away from it (pivot_root(2):
            # EINVAL): move the new root over / and chroot into it, as switch_root and
            # runc's --no-pivot do. The old root stays hidden beneath in this private
            # mount namespace.
            syscalls.mount(".", "/", None, syscalls.MS_MOVE)
            os.chroot(".")
        else:
            syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise LaunchError(f"--rootfs: cannot pivot into {root}: {e.strerror}") from None


def attach(prepared: Prepared, fresh_proc: bool) -> None:
    """Put every mount in place in this process's (new, private) mount namespace.

    ``fresh_proc``: the process is in a new PID namespace, so --rootfs gets a
    /proc of its own; otherwise a read-only bind of the host's.
    """
    from .diagnose import mount_error
    root = prepared.rootfs
    try:
        for m, src, fd in zip(prepared.plan.mounts, prepared.sources, prepared.fds):
            target = root if m.kind == "rootfs" else (
                _inside_root(root, m.dst) if root else m.dst)
            if fd is not None:
                try:
                    syscalls.move_mount(fd, target)
                except OSError as e:
                    raise mount_error(e, m, "move_mount", target) from None
            elif m.kind == "tmpfs":
                try:
                    syscalls.mount("tmpfs", target, "tmpfs", m.flags | (
                        syscalls.MS_RDONLY if m.readonly else 0), m.data or None)
                except OSError as e:
                    raise mount_error(e, m, "mount tmpfs", target) from None
            else:
                _bind(src, target, m, m.readonly)
            if m.kind == "rootfs":
                _minimal_dev(root, prepared.fds[-1])  # type: ignore[arg-type]
                _proc(root, fresh_proc)  # type: ignore[arg-type]
    finally:
        prepared.release()
    if root is not None:
        _pivot(root)
    workdir = prepared.plan.workdir
    if workdir is not None:
        try:
            os.chdir(workdir)
        except OSError as e:
            raise LaunchError(f"--workdir {workdir}: {e.strerror}",
                              hint="give a directory that exists inside") from None
