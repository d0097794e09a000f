"""Carrying out a ``MountPlan``: check the paths, build the id-mapped trees, attach them.

Two steps, split by who can do them:

* ``prepare`` runs in the launcher before any child exists. It checks the paths
  and, as root in the initial user namespace (the only place the kernel allows
  it for host filesystems), builds every id-mapped mount as a *detached* tree:
  ``open_tree(OPEN_TREE_CLONE)`` (or a fresh detached tmpfs), then
  ``mount_setattr(MOUNT_ATTR_IDMAP)`` with a throwaway user namespace holding
  the mapping (the engine's, handed in: this module forks nothing). The detached trees are file descriptors, inherited by the
  process that becomes the command.
* ``attach`` puts every tree in place, each made private before it is attached
  (no mount made inside may propagate to the host), and for ``--rootfs`` builds
  /dev and /proc and pivots into the new root, every target a descriptor
  resolved inside the root. As root it runs in the launcher *before* the user
  namespace exists (``attach_early``: a mount namespace the initial user
  namespace owns), so the kernel locks the mounts the command's namespace
  copies; rootless it runs in the new namespaces (caps.for_read_only then keeps
  ``ro`` by leaving CAP_SYS_ADMIN out).

Every failure is one ``LaunchError`` line naming the mount, the filesystem type
and the errno (``diagnose.mount_error``).
"""
from __future__ import annotations

import errno
import os
from ..hints import Callable, NamedTuple

from ..errors import LaunchError, MapValidationError
from ..mapping.plan import Plan
from ..mapping.volumes import (Mount, MountMaps, MountPlan, MountRequest, owner_warning,
                               resolve_mounts)
from ..system import syscalls

_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


class Prepared(NamedTuple):
    """A checked MountPlan with its detached trees (one fd or None per mount)."""

    plan: MountPlan
    sources: tuple[str, ...]           # absolute host paths ("tmpfs" for a tmpfs)
    # One per mount, then (with --rootfs) the prepared /dev tmpfs; a list, so that
    # release() can mark closed ones None.
    fds: list[int | None]
    rootfs: str | None                 # real path of --rootfs DIR, resolved once
    root_id: tuple[int, int] | None = None   # its (st_dev, st_ino), checked at each open
    # Root: attach in a mount namespace the initial user namespace owns, before the
    # command's user namespace exists (attach_early), so the kernel locks the mounts.
    early: bool = False
    done: list[bool] = []              # [True] once attached; prepare() gives each its own

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


_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


def _race(what: str, err: OSError | str) -> LaunchError:
    why = err if isinstance(err, str) else err.strerror
    return LaunchError(f"--rootfs: {what}: {why}", hint="the root filesystem changed while "
                       "idrun set it up (is another process renaming in it?); try again")


def _mnt_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
        for line in f:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    return -1


def open_root(root: str, root_id: tuple[int, int] | None) -> tuple[int, tuple[int, int]]:
    """--rootfs DIR (already resolved) as an O_PATH descriptor, and its identity.

    The last component is opened without following a symlink, and the kernel's own
    name of what was opened must be ``root``: a component swapped for a symlink on
    the way is refused, not followed. With ``root_id`` the directory must also be
    the one ``prepare`` opened."""
    try:
        parent = os.open(os.path.dirname(root), _O_PATH_DIR)
        try:
            fd = os.open(os.path.basename(root), _O_PATH_DIR | os.O_NOFOLLOW, dir_fd=parent)
        finally:
            os.close(parent)
    except OSError as e:
        raise _race(f"cannot open {root}", e) from None
    try:
        st = os.fstat(fd)
        if os.readlink(f"/proc/self/fd/{fd}") != root or (
                root_id is not None and (st.st_dev, st.st_ino) != root_id):
            raise _race(f"{root}", "it is no longer the directory idrun resolved")
    except BaseException:
        os.close(fd)
        raise
    return fd, (st.st_dev, st.st_ino)


def resolve_in_root(rootfd: int, dst: str, origin: str) -> int:
    """An O_PATH descriptor of DST inside the root: symlinks and ".." resolve with the
    root as "/" (openat2 RESOLVE_IN_ROOT, as runc's securejoin), never outside it."""
    try:
        return syscalls.openat2(rootfd, dst.lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC,
                                syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        raise _race(f"{origin}: cannot open {dst} inside the root filesystem", e) from None


def _make_mount_point(rootfd: int, dst: str, is_dir: bool, origin: str) -> None:
    """Create what is missing of DST inside the root, one component at a time: each
    parent is a descriptor resolved inside the root, and the new entry is made in it
    by name (mkdirat, openat O_CREAT|O_EXCL|O_NOFOLLOW), so a component swapped for a
    symlink meanwhile makes the creation fail instead of landing outside."""
    comps = [c for c in dst.split("/") if c and c != "."]
    parent = os.dup(rootfd)
    try:
        for i, name in enumerate(comps):
            sub = "/".join(comps[:i + 1])
            try:
                fd = syscalls.openat2(rootfd, sub, os.O_PATH | os.O_CLOEXEC,
                                      syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
            except FileNotFoundError:
                try:
                    if is_dir or i < len(comps) - 1:
                        os.mkdir(name, 0o755, dir_fd=parent)
                    else:
                        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                         | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=parent))
                    fd = syscalls.openat2(parent, name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                          syscalls.RESOLVE_NO_SYMLINKS)
                except OSError as e:
                    raise LaunchError(f"{origin}: cannot create the mount point {dst} inside "
                                      f"the root filesystem: {e.strerror} ({sub})",
                                      hint="create it in the root filesystem, or make it "
                                           "writable") from None
            except OSError as e:
                raise _race(f"{origin}: cannot open {sub} inside the root filesystem",
                            e) from None
            os.close(parent)
            parent = fd
    finally:
        os.close(parent)


def _resolve_rootfs(src: str, origin: str) -> str:
    """A --rootfs DIR that is (or passes through) a symlink is resolved once, here; the
    resolved directory is what every later step opens."""
    try:
        real = os.path.realpath(src, strict=True)
    except OSError as e:
        raise MapValidationError(f"{origin}: --rootfs DIR {src}: {e.strerror}",
                                 "check the path") from None
    if real == "/":
        raise MapValidationError(f"{origin}: {src} resolves to /, the host's own root",
                                 "give a directory that holds a root filesystem")
    return real


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
            root = src = _resolve_rootfs(src, m.origin)
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


def _tmpfs_options(m: Mount) -> list[tuple[str, str]]:
    return [tuple(o.split("=", 1)) for o in m.data.split(",") if o]  # type: ignore[misc]


# engine.idmap_userns: (uid lines, gid lines, keep) -> None, keep(fd) called with the
# ns/user descriptor of a fresh user namespace with those maps.
MakeUserns = Callable[[tuple, tuple, Callable[[int], object]], None]


def prepare(mplan: MountPlan, rootless: bool, userns: MakeUserns,
            verify_only: bool = False) -> Prepared:
    """Check the paths and build the id-mapped trees; before any child exists.

    ``userns`` makes the user namespace each idmap is taken from (the engine's one
    process protocol; this module forks nothing). ``verify_only`` (``--verify``):
    build the id-mapped trees, so the kernel says whether it takes them, but create
    no mount point and no /dev."""
    if not rootless:        # rootless idmap: volumes refuses it already
        first = next((m for m in mplan.mounts if m.idmap is not None), None)
        if first is not None:   # before any mount point, helper or tree exists
            from ..system.kernelfeatures import require_idmap
            require_idmap(first.origin)
    mplan, sources = check_paths(mplan)
    root = root_id = None
    if mplan.rootfs is not None:
        root = sources[0]                # the rootfs comes first, resolved
        rootfd, root_id = open_root(root, None)
        try:
            if not verify_only:
                # Mount points inside DIR only, created by the caller (who can write
                # there, unlike root of a user namespace mapped elsewhere).
                for m, src in zip(mplan.mounts, sources):
                    if m.kind != "rootfs":
                        _make_mount_point(rootfd, m.dst,
                                          m.kind == "tmpfs" or os.path.isdir(src), m.origin)
                for name in ("dev", "proc"):
                    _make_mount_point(rootfd, name, True, "--rootfs")
        finally:
            os.close(rootfd)
    fds: list[int | None] = []
    held: dict[MountMaps, int] = {}
    try:
        for m, src in zip(mplan.mounts, sources):
            if m.idmap is None:
                fds.append(None)
                continue
            if rootless:        # volumes refuses it already; never reach the kernel
                raise MapValidationError(f"{m.origin}: idmap needs root")
            if m.idmap not in held:
                userns(m.idmap.uid, m.idmap.gid,
                       lambda fd, key=m.idmap: held.__setitem__(key, fd))
            with syscalls.SignalsBlocked():     # each new fd recorded before a handler runs
                fds.append(_idmapped_tree(m, src, held[m.idmap], root_id))
        if root is not None:
            with syscalls.SignalsBlocked():
                fds.append(None if rootless or verify_only else _dev_tree())
        _close_all(held)
    except BaseException:
        # Also when a handler raised on the way into the _close_all above.
        _close_all(held)
        _close_all(fds)
        raise
    return Prepared(mplan, sources, fds, root, root_id, early=not rootless, done=[False])


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
        try:
            syscalls.mount_setattr(fd, "", syscalls.AT_EMPTY_PATH, 0,
                                   propagation=syscalls.MS_PRIVATE)
        except OSError as e:
            if e.errno != errno.ENOSYS:  # before 5.12: a new mount is private anyway
                raise
        _populate_dev(fd)
    except OSError as e:
        os.close(fd)
        raise LaunchError(f"--rootfs: cannot fill the tmpfs for /dev: {e.strerror}") from None
    return fd


def _idmapped_tree(m: Mount, src: str, userns_fd: int,
                   root_id: tuple[int, int] | None = None) -> int:
    from ..system.diagnose import mount_error
    step = "open_tree"
    try:
        if m.kind == "tmpfs":
            step = "fsmount(tmpfs)"
            fd = syscalls.fsmount_tmpfs(_tmpfs_options(m))
        elif m.kind == "rootfs":         # from the directory prepare() checked
            rootfd, _ = open_root(src, root_id)
            try:
                fd = syscalls.open_tree("", syscalls.OPEN_TREE_CLONE | syscalls.OPEN_TREE_CLOEXEC
                                        | syscalls.AT_RECURSIVE | syscalls.AT_EMPTY_PATH, rootfd)
            finally:
                os.close(rootfd)
        else:
            fd = syscalls.open_tree(src, syscalls.OPEN_TREE_CLONE | syscalls.OPEN_TREE_CLOEXEC
                                    | syscalls.AT_RECURSIVE)
    except OSError as e:
        raise mount_error(e, m, step, src) from None
    try:
        # MS_PRIVATE in the same call: a clone made by open_tree in the host's namespace
        # stays in the host mount's peer group, and once attached inside, a mount made
        # under it by the command would propagate back to the host (issue 18, finding 1).
        attr = syscalls.MOUNT_ATTR_IDMAP | (syscalls.MOUNT_ATTR_RDONLY if m.readonly else 0)
        syscalls.mount_setattr(fd, "", syscalls.AT_EMPTY_PATH | syscalls.AT_RECURSIVE, attr,
                               userns_fd, propagation=syscalls.MS_PRIVATE)
    except OSError as e:
        fstype = syscalls.statfs_type(fd)
        os.close(fd)
        raise mount_error(e, m, "mount_setattr(MOUNT_ATTR_IDMAP)", src, fstype) from None
    return fd


# --- in the new mount namespace ---------------------------------------------------------
# Inside --rootfs every target is a descriptor resolved inside the root (resolve_in_root):
# move_mount attaches onto it (MOVE_MOUNT_T_EMPTY_PATH), and mount(2) reaches it through
# /proc/self/fd/N, which names that very directory whatever happens to the path.

def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _tree(src: str | int, readonly: bool) -> int | None:
    """A private detached copy of ``src`` (a path, or a descriptor), read-only if asked:
    flags and propagation are set before it is attached anywhere. None on a kernel
    without mount_setattr, where they cannot be (see _legacy_bind)."""
    flags = syscalls.OPEN_TREE_CLONE | syscalls.OPEN_TREE_CLOEXEC | syscalls.AT_RECURSIVE
    if isinstance(src, int):
        fd = syscalls.open_tree("", flags | syscalls.AT_EMPTY_PATH, src)
    else:
        fd = syscalls.open_tree(src, flags)
    try:
        syscalls.mount_setattr(fd, "", syscalls.AT_EMPTY_PATH | syscalls.AT_RECURSIVE,
                               syscalls.MOUNT_ATTR_RDONLY if readonly else 0,
                               propagation=syscalls.MS_PRIVATE)
    except OSError as e:
        os.close(fd)
        if e.errno == errno.ENOSYS:
            return None
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _move(tree: int, target: int | str) -> None:
    if isinstance(target, int):
        syscalls.move_mount(tree, "", target)
    else:
        syscalls.move_mount(tree, target)


def _bind(src: str | int, target: int | str, m: Mount | None, readonly: bool,
          reopen: Callable[[], int] | None = None) -> None:
    """``reopen``: the mount made on ``target`` (a descriptor), as a descriptor of its
    root; needed only by the read-only fallback of old kernels."""
    from ..system.diagnose import mount_error
    try:
        tree = _tree(src, readonly)
        if tree is None:                # no mount_setattr (before Linux 5.12)
            _legacy_bind(src, target, readonly, reopen)
            return
        try:
            _move(tree, target)
        finally:
            os.close(tree)
    except OSError as e:
        if m is None:
            raise LaunchError(f"cannot bind {src} on {target}: {e.strerror}") from None
        raise mount_error(e, m, "bind mount", src if isinstance(src, str) else m.src) from None


def _reopen(top: int, name: str, under: int) -> int:
    """``name`` inside the root again, now that a mount covers it: must be a new mount."""
    fd = resolve_in_root(top, name, "--rootfs")
    if _mnt_id(fd) == _mnt_id(under):
        os.close(fd)
        raise _race(f"/{name}", "the mount made on it is not there")
    return fd


# --- kernels without mount_setattr (before 5.12) -----------------------------------------
# No way to set a detached tree's propagation or read-only flag: bind with mount(2) in
# this namespace, whose mounts are all private by now (a bind of a private mount is
# private), then remount each mount of the copy read-only.

# statvfs f_flag bit -> mount(2) flag: what a bind remount must repeat, since the kernel
# locks these flags of mounts a user namespace inherited (EPERM if one is dropped).
_KEPT_FLAGS = ((os.ST_NOSUID, syscalls.MS_NOSUID), (os.ST_NODEV, syscalls.MS_NODEV),
               (os.ST_NOEXEC, syscalls.MS_NOEXEC), (1024, 1024),    # NOATIME
               (2048, 2048), (4096, 1 << 21))                       # NODIRATIME, RELATIME


def _legacy_bind(src: str | int, target: int | str, readonly: bool,
                 reopen: Callable[[], int] | None) -> None:
    syscalls.mount(_fdpath(src) if isinstance(src, int) else src,
                   _fdpath(target) if isinstance(target, int) else target,
                   None, syscalls.MS_BIND | syscalls.MS_REC)
    if not readonly:
        return
    # The new mount's root, looked up again (a descriptor of the directory beneath
    # still names the covered one); its mount id, not a path, says which mounts to fix.
    fd = reopen() if reopen is not None else os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        top = _mnt_id(fd)
        syscalls.mount(None, _fdpath(fd), None, _remount_flags(_fdpath(fd)))
    finally:
        os.close(fd)
    _remount_readonly_below(top)


def _remount_flags(path: str) -> int:
    flags = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    have = os.statvfs(path).f_flag
    for st, ms in _KEPT_FLAGS:
        if have & st:
            flags |= ms
    return flags


def _mount_table() -> list[tuple[int, int, str, str]]:
    """(mount id, parent id, mount point, per-mount options) of this namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = (fields[4].replace("\\040", " ").replace("\\011", "\t")
                     .replace("\\012", "\n").replace("\\134", "\\"))
            out.append((int(fields[0]), int(fields[1]), point, fields[5]))
    return out


def _remount_readonly_below(top: int) -> None:
    """Every mount under mount ``top`` read-only too, found by parent id; then checked
    by id, so a path that led elsewhere fails the launch instead of leaving one rw."""
    def below() -> list[tuple[int, str, str]]:
        table = _mount_table()
        ids, found, grew = {top}, [], True
        while grew:
            grew = False
            for mid, parent, point, opts in table:
                if parent in ids and mid not in ids:
                    ids.add(mid)
                    found.append((mid, point, opts))
                    grew = True
        return found
    for _, point, _ in below():
        syscalls.mount(None, point, None, _remount_flags(point))
    left = [point for _, point, opts in below() if "ro" not in opts.split(",")]
    if left:
        raise LaunchError(f"cannot make {left[0]} read-only: it is not where it was mounted",
                          hint="did a path change during the launch? try again")


def _as_mapped_fsids() -> None:
    """Rootless with a map that leaves the caller's own uid out (--uidmap 0:1:65536): this
    process's ids are unmapped inside, and a file it creates in the new tmpfs cannot get
    an owner (EOVERFLOW). Create as the first mapped id instead (setfsuid/setfsgid, with
    the CAP_SETUID/CAP_SETGID it holds in its namespace); the exec resets both to the
    command's effective ids."""
    for kind, call in (("gid", "setfsgid"), ("uid", "setfsuid")):
        with open(f"/proc/self/{kind}_map", "rb") as f:
            first = f.readline().split()
        if first:
            syscalls.set_fsid(call, int(first[0]))


def _minimal_dev(top: int, dev_fd: int | None) -> None:
    """A tmpfs /dev (prepared by root, or made here rootless, where this process's
    own uid is mapped), the host's devices bound in and a private devpts."""
    under = resolve_in_root(top, "dev", "--rootfs")
    dev = None
    try:
        if dev_fd is not None:
            syscalls.move_mount(dev_fd, "", under)
            dev = _reopen(top, "dev", under)
        else:
            _as_mapped_fsids()          # the tmpfs's root is owned by the fsuid too
            syscalls.mount("tmpfs", _fdpath(under), "tmpfs",
                           syscalls.MS_NOSUID | syscalls.MS_NOEXEC, "mode=755,size=64k")
            dev = _reopen(top, "dev", under)
            _populate_dev(dev)
        # A fresh tmpfs of this namespace only: no other process can rename in it.
        for name in _DEV_NODES:
            syscalls.mount(f"/dev/{name}", f"{_fdpath(dev)}/{name}", None, syscalls.MS_BIND)
        syscalls.mount("devpts", f"{_fdpath(dev)}/pts", "devpts",
                       syscalls.MS_NOSUID | syscalls.MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=620")
    except OSError as e:
        hint = ("rootless, your own uid and gid must be mapped inside (e.g. -r or "
                "--userns keep-id) for the /dev tmpfs" if e.errno == errno.EOVERFLOW else None)
        what = (e.filename or "").replace(_fdpath(dev) if dev is not None else "\0", "/dev")
        raise LaunchError(f"--rootfs: cannot build a minimal /dev: {e.strerror} "
                          f"({what or '/dev'})", hint=hint) from None
    finally:
        os.close(under)
        if dev is not None:
            os.close(dev)


def _proc(top: int, fresh: bool, later: bool) -> None:
    """/proc in the root: a fresh one (``fresh``: a new PID namespace), else a read-only
    bind of the host's. ``later``: the fresh one is mounted by the PID namespace's init
    after the user namespace exists; until then a read-write bind of the host's stands
    in, which the kernel requires to be there (a procfs fully visible, not locked
    read-only) before it lets a user namespace mount a new one, and which it covers."""
    target = resolve_in_root(top, "proc", "--rootfs")
    try:
        if not fresh or later:
            _bind("/proc", target, None, not fresh, lambda: _reopen(top, "proc", target))
            return
        syscalls.mount("proc", _fdpath(target), "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as e:
        raise LaunchError(f"--rootfs: cannot mount a fresh /proc: {e.strerror}") from None
    finally:
        os.close(target)


# f_type of the filesystems an initial ramfs ("rootfs") can be.
_RAMFS_MAGIC, _TMPFS_MAGIC = 0x858458F6, 0x01021994


def _pivot(top: int, root: str) -> None:
    try:
        os.fchdir(top)
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


def _put(m: Mount, src: str, fd: int | None, target: int | str,
         reopen: Callable[[], int] | None = None) -> None:
    """One mount onto ``target`` (a descriptor inside --rootfs, or a host path)."""
    from ..system.diagnose import mount_error
    where = target if isinstance(target, str) else m.dst
    if fd is not None:
        try:
            _move(fd, target)
        except OSError as e:
            raise mount_error(e, m, "move_mount", where) from None
    elif m.kind == "tmpfs":
        try:
            syscalls.mount("tmpfs", target if isinstance(target, str) else _fdpath(target),
                           "tmpfs", m.flags | (syscalls.MS_RDONLY if m.readonly else 0),
                           m.data or None)
        except OSError as e:
            raise mount_error(e, m, "mount tmpfs", where) from None
    else:
        _bind(src, target, m, m.readonly, reopen)


def _attach_root(prepared: Prepared, m: Mount, fd: int | None) -> int:
    """The --rootfs tree onto DIR (opened again here, and checked to be the directory
    ``prepare`` opened); returns the new root mount as a descriptor."""
    root = prepared.rootfs
    under, _ = open_root(root, prepared.root_id)     # type: ignore[arg-type]
    try:
        if fd is not None:                           # the id-mapped tree prepare() made
            _put(m, root, fd, under)  # type: ignore[arg-type]
        else:
            _bind(under, under, m, m.readonly,
                  lambda: open_root(root, prepared.root_id)[0])  # type: ignore[arg-type]
        top, _ = open_root(root, prepared.root_id)   # type: ignore[arg-type]
        if _mnt_id(top) == _mnt_id(under):
            os.close(top)
            raise _race(str(root), "the root filesystem mount is not there")
        return top
    finally:
        os.close(under)


def attach_early(prepared: Prepared, fresh_proc: bool) -> None:
    """As root, before the command's user namespace is created: a mount namespace of
    this process (owned by the initial user namespace), every mount attached in it.

    The command's namespaces are then unshared from this one, and the kernel marks
    every mount copied into a namespace of a less privileged user namespace locked:
    its read-only, nosuid, nodev and noexec flags cannot be cleared, and it cannot be
    unmounted to uncover what is beneath (MNT_LOCK_*, MNT_LOCKED). So container root,
    with every capability in its namespace, cannot undo ``ro``."""
    if not prepared.early or prepared.done[0]:
        return
    try:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    except OSError as e:
        raise LaunchError(f"cannot make a mount namespace to build the mounts in: "
                          f"{e.strerror}") from None
    attach(prepared, fresh_proc, later=True)


def attach(prepared: Prepared, fresh_proc: bool, later: bool = False) -> None:
    """Put every mount in place in this process's (new, private) mount namespace.

    ``fresh_proc``: the process is in a new PID namespace, so --rootfs gets a
    /proc of its own; otherwise a read-only bind of the host's. ``later``: the
    fresh /proc is mounted by a second call (attach_early's namespace is not yet in
    the PID namespace).
    """
    if prepared.done[0]:
        if fresh_proc and prepared.rootfs is not None:
            try:
                syscalls.mount("proc", "/proc", "proc",
                               syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
            except OSError as e:
                raise LaunchError(f"--rootfs: cannot mount a fresh /proc: "
                                  f"{e.strerror}") from None
        _workdir(prepared.plan.workdir)     # again: the API's cwd= came in between
        return
    prepared.done[0] = True
    top = None
    try:
        for m, src, fd in zip(prepared.plan.mounts, prepared.sources, prepared.fds):
            if m.kind == "rootfs":
                top = _attach_root(prepared, m, fd)
                _minimal_dev(top, prepared.fds[-1])
                _proc(top, fresh_proc, later)
            elif top is not None:
                target = resolve_in_root(top, m.dst, m.origin)
                try:
                    _put(m, src, fd, target, lambda: _reopen(top, m.dst.lstrip("/"), target))
                finally:
                    os.close(target)
            else:
                _put(m, src, fd, m.dst)
        if top is not None:
            _pivot(top, prepared.rootfs)  # type: ignore[arg-type]
    finally:
        prepared.release()
        if top is not None:
            os.close(top)
    _workdir(prepared.plan.workdir)


def _workdir(workdir: str | None) -> None:
    if workdir is not None:
        try:
            os.chdir(workdir)
        except OSError as e:
            raise LaunchError(f"--workdir {workdir}: {e.strerror}",
                              hint="give a directory that exists inside") from None
