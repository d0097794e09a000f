"""The few system calls Python's ``os`` module lacks or hides, with errno kept.

Everything here is on the launch path, so the module imports nothing at load
time beyond ``os``: the ctypes core loads on first use (``preload`` before a fork,
so the children share it).
"""
from __future__ import annotations

import os
import sys

# Namespace flags (linux/sched.h). Defined here because os has them only from 3.12.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NS_NAMES = {
    CLONE_NEWUSER: "user", CLONE_NEWNS: "mnt", CLONE_NEWPID: "pid", CLONE_NEWNET: "net",
    CLONE_NEWUTS: "uts", CLONE_NEWIPC: "ipc", CLONE_NEWCGROUP: "cgroup",
}

# prctl(2) options, as the kernel numbers them.
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_GET_DUMPABLE = 3
PR_SET_NO_NEW_PRIVS = 38

# mount(2) flags used by the mount-namespace options.
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc_funcs: dict[str, object] = {}


class SignalsBlocked:
    """Every signal blocked for a few system calls, so no Python handler can run (and
    raise) between creating a resource (a child, a descriptor) and recording or
    releasing it. Pending signals are delivered on exit."""

    def __enter__(self) -> object:
        import _signal
        self.old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        return self.old

    def __exit__(self, *exc: object) -> None:
        import _signal
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.old)


def _libc(name: str):
    """A libc function called through ctypes' C core, with errno captured.

    Only ``_ctypes`` is loaded (about 0.6 ms) instead of the ``ctypes`` package
    (about 3 ms): on Python 3.11 this sits on every launch. Without a declared
    restype, _ctypes returns the C ``int`` result, which is what unshare and
    setns return; Python ints are passed as C ints.
    """
    fn = _libc_funcs.get(name)
    if fn is None:
        import _ctypes

        class _Libc:
            # dlopen(NULL): the symbols of the running interpreter, which links libc.
            _handle = _ctypes.dlopen(None, getattr(_ctypes, "RTLD_LOCAL", 0))

        class _Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO

        fn = _Func((name, _Libc))
        _libc_funcs[name] = fn
    return fn


def _call_int(name: str, *args: object) -> int:
    import _ctypes
    fn = _libc(name)
    _ctypes.set_errno(0)
    ret = fn(*args)  # type: ignore[operator]
    if ret == -1:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def unshare(flags: int) -> None:
    """unshare(2); raises OSError with the kernel's errno."""
    native = getattr(os, "unshare", None)
    if native is not None:
        native(flags)
    else:
        _call_int("unshare", flags)


def preload() -> None:
    """Load what unshare and prctl need now: after a fork in a threaded program, the
    child must not import (another thread may hold the import lock), and children that
    share the loaded library skip loading it themselves."""
    if not hasattr(os, "unshare"):
        _libc("unshare")
    _prctl(PR_GET_DUMPABLE)      # loads the library, the function and its argument type


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2). Only the mount-namespace options use it, so full ctypes is fine here:
    the flags argument is an ``unsigned long`` and deserves a declared type."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.mount
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
    fn.restype = ctypes.c_int

    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    if fn(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


# --- prctl(2) -------------------------------------------------------------------
# Called through the ctypes core like unshare: python-prctl's C module would cost
# each launch another shared library (and libcap) in the map writer, on the path
# between fork and the maps being written.

_ulong: list[type] = []


def _prctl(option: int, arg: int | bytes = 0) -> int:
    if not _ulong:
        import _ctypes

        class _ULong(_ctypes._SimpleCData):
            _type_ = "L"         # prctl's arguments are unsigned longs
        _ulong.append(_ULong)
    ulong = _ulong[0]
    return _call_int("prctl", option, arg if isinstance(arg, bytes) else ulong(arg),
                     ulong(0), ulong(0), ulong(0))


def prctl3(option: int, arg2: int, arg3: int) -> int:
    """prctl(2) with two arguments (PR_CAP_AMBIENT and its sub-commands)."""
    _prctl(PR_GET_DUMPABLE)              # makes sure the argument type exists
    ulong = _ulong[0]
    return _call_int("prctl", option, ulong(arg2), ulong(arg3), ulong(0), ulong(0))


def set_fsid(call: str, value: int) -> None:
    """setfsuid(2)/setfsgid(2): they return the old id and report no error; the new id
    is checked by reading it back (a call with -1 changes nothing)."""
    _libc(call)(value)
    if _libc(call)(-1) != value:
        raise OSError(1, f"{call}({value}) was refused", None)


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send ``sig`` when the parent *thread* exits.

    Cleared by fork, by exec of a setuid/file-caps program and by any change of
    effective or filesystem ids, so callers re-arm it after setresuid.
    """
    _prctl(PR_SET_PDEATHSIG, sig)


def set_name(name: str) -> None:
    """This process's name as ps shows it (PR_SET_NAME, at most 15 bytes)."""
    _prctl(PR_SET_NAME, os.fsencode(name)[:15])


def get_dumpable() -> int:
    return _prctl(PR_GET_DUMPABLE)


def set_no_new_privs() -> None:
    """Irreversible for this process and its descendants."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def sethostname(name: str) -> None:
    # The C module's own function: socket.py around it loads enum, functools and
    # collections (about 3 ms of a --hostname launch) for names this call never uses.
    import _socket
    _socket.sethostname(name)


def read_all(fd: int) -> bytes:
    """Everything until EOF (a pipe's writers all closed, or a file's end)."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def how_ended(status: int) -> str:
    """A wait status as a message says it: ``exit N`` or ``signal N``."""
    code = os.waitstatus_to_exitcode(status)
    return f"exit {code}" if code >= 0 else f"signal {-code}"


def close_fds_except(keep: tuple[int, ...] | set[int] | frozenset[int], low: int = 3) -> None:
    """Close every descriptor >= ``low`` except those in ``keep``.

    os.closerange uses close_range(2) where available, so this costs one or a
    few system calls however many descriptors are open.
    """
    pos = low
    for fd in sorted(k for k in keep if k >= low):
        if fd > pos:
            os.closerange(pos, fd)
        pos = fd + 1
    os.closerange(pos, 0x7FFFFFFF)


# --- the new mount API (idmapped mounts, --volume, --rootfs, --tmpfs) ----------------
# x86_64 and the other common ABIs share these numbers (they were added after the
# syscall tables were unified); pivot_root differs per architecture.
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_OPENAT2 = 437
SYS_MOUNT_SETATTR = 442
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203,
                   "s390x": 217}

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MS_RDONLY = 0x1
MS_BIND = 0x1000
MS_REMOUNT = 0x20
MNT_DETACH = 2

_mount_api: dict[str, object] = {}


def ctypes_libc():
    """Full ctypes for the mount calls: pointers and structs need declared types.
    Loaded only by launches that mount something."""
    if not _mount_api:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long

        class MountAttr(ctypes.Structure):
            _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                        ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

        _mount_api.update(ctypes=ctypes, syscall=fn, MountAttr=MountAttr, libc=libc)
    return _mount_api


def _syscall(number: int, *args: object, what: str = "") -> int:
    api = ctypes_libc()
    ret = api["syscall"](number, *args)  # type: ignore[operator]
    if ret < 0:
        err = api["ctypes"].get_errno()  # type: ignore[attr-defined]
        raise OSError(err, os.strerror(err), what or None)
    return ret


def _path(path: str | None):
    return None if path is None else os.fsencode(path)


def open_tree(path: str, flags: int, dirfd: int = AT_FDCWD) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount at ``path``."""
    c = ctypes_libc()["ctypes"]
    return _syscall(SYS_OPEN_TREE, c.c_int(dirfd), _path(path), c.c_uint(flags), what=path)


def move_mount(from_fd: int, to_path: str, to_dirfd: int = AT_FDCWD) -> None:
    """Attach the detached mount ``from_fd`` at ``to_path`` (relative to ``to_dirfd``);
    an empty ``to_path`` attaches onto ``to_dirfd`` itself (an O_PATH descriptor)."""
    c = ctypes_libc()["ctypes"]
    flags = MOVE_MOUNT_F_EMPTY_PATH | (0 if to_path else MOVE_MOUNT_T_EMPTY_PATH)
    _syscall(SYS_MOVE_MOUNT, c.c_int(from_fd), b"", c.c_int(to_dirfd), _path(to_path),
             c.c_uint(flags), what=to_path or None)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2) (Linux 5.6): ``resolve`` is RESOLVE_* (RESOLVE_IN_ROOT: ``dirfd`` is the
    root for "/", ".." and absolute symlinks, so the result is always beneath it)."""
    api = ctypes_libc()
    c = api["ctypes"]
    how = (c.c_uint64 * 3)(flags, mode, resolve)     # struct open_how
    return _syscall(SYS_OPENAT2, c.c_int(dirfd), _path(path), c.byref(how),
                    c.c_size_t(c.sizeof(how)), what=path)


def mount_setattr(fd: int, path: str, flags: int, attr_set: int, userns_fd: int = 0,
                  attr_clr: int = 0, propagation: int = 0) -> None:
    """mount_setattr(2) with ``struct mount_attr`` (size 32); ``propagation`` is one of
    MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_UNBINDABLE, or 0 to leave it."""
    api = ctypes_libc()
    c = api["ctypes"]
    attr = api["MountAttr"](attr_set, attr_clr, propagation, userns_fd)  # type: ignore[operator]
    _syscall(SYS_MOUNT_SETATTR, c.c_int(fd), _path(path), c.c_uint(flags), c.byref(attr),
             c.c_size_t(c.sizeof(attr)), what=path or None)


def fsmount_tmpfs(options: list[tuple[str, str]]) -> int:
    """A detached tmpfs (fsopen, fsconfig, fsmount): its superblock belongs to the caller's
    user namespace, so root can idmap it before any child exists."""
    c = ctypes_libc()["ctypes"]
    fs = _syscall(SYS_FSOPEN, b"tmpfs", c.c_uint(FSOPEN_CLOEXEC), what="tmpfs")
    try:
        for key, value in options:
            _syscall(SYS_FSCONFIG, c.c_int(fs), c.c_uint(FSCONFIG_SET_STRING), key.encode(),
                     value.encode(), c.c_int(0), what=f"tmpfs option {key}={value}")
        _syscall(SYS_FSCONFIG, c.c_int(fs), c.c_uint(FSCONFIG_CMD_CREATE), None, None,
                 c.c_int(0), what="tmpfs")
        return _syscall(SYS_FSMOUNT, c.c_int(fs), c.c_uint(FSMOUNT_CLOEXEC), c.c_uint(0),
                        what="tmpfs")
    finally:
        os.close(fs)


def pivot_root(new_root: str, put_old: str) -> None:
    # os.uname() is what platform.machine() reads on Linux; platform itself loads re
    # and collections (about 5 ms of a --rootfs launch).
    _syscall(_SYS_PIVOT_ROOT[os.uname().machine], _path(new_root), _path(put_old),
             what=new_root)


def umount2(target: str, flags: int) -> None:
    api = ctypes_libc()
    if api["libc"].umount2(_path(target), flags) != 0:  # type: ignore[attr-defined]
        err = api["ctypes"].get_errno()  # type: ignore[attr-defined]
        raise OSError(err, os.strerror(err), target)


def statfs_type(path: str | int) -> int | None:
    """statfs(2)'s f_type (the filesystem's magic number), or None if it fails."""
    api = ctypes_libc()
    c = api["ctypes"]
    buf = c.create_string_buffer(256)      # struct statfs is 120 bytes on 64-bit ABIs
    if isinstance(path, int):
        ret = api["libc"].fstatfs(path, buf)  # type: ignore[attr-defined]
    else:
        ret = api["libc"].statfs(_path(path), buf)  # type: ignore[attr-defined]
    if ret != 0:
        return None
    return int.from_bytes(buf.raw[:c.sizeof(c.c_long)], sys.byteorder, signed=True) \
        & 0xFFFFFFFF


SYS_CLOSE_RANGE = 436


def probe_errno(number: int, *args: object) -> int:
    """Call a system call with arguments it must refuse and return the errno (0 if it
    somehow succeeded). ENOSYS means the kernel (or a seccomp filter) lacks the call;
    any other refusal means the kernel knows it. Used only by kernelfeatures."""
    api = ctypes_libc()
    c = api["ctypes"]
    c.set_errno(0)  # type: ignore[attr-defined]
    # plain ints as longs, the syscall(2) ABI: -1 stays -1, 0xFFFFFFFF fits
    args = tuple(c.c_long(a) if isinstance(a, int) else a for a in args)  # type: ignore[attr-defined]
    ret = api["syscall"](c.c_long(number), *args)  # type: ignore[operator,attr-defined]
    return c.get_errno() if ret < 0 else 0  # type: ignore[attr-defined]
