"""The few system calls Python's ``os`` module lacks or hides, with errno kept.

Everything here is on the launch path, so the module imports nothing at load
time beyond ``os``: python-prctl and the ctypes core load on first use, and only
in the process that needs them.
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
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

# mount(2) flags used by the mount-namespace options.
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
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
    """Load what unshare needs now: after a fork in a threaded program, the child
    must not import (another thread may hold the import lock)."""
    if not hasattr(os, "unshare"):
        _libc("unshare")
        import _ctypes  # noqa: F401


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) on an open namespace file descriptor."""
    native = getattr(os, "setns", None)
    if native is not None:
        native(fd, nstype)
    else:
        _call_int("setns", fd, nstype)


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


# --- prctl through python-prctl -------------------------------------------------
# The C module of python-prctl is used directly: the ``prctl`` wrapper module
# builds capability classes at import (about 1 ms) that idrun never needs.

def prctl_module():
    """python-prctl's C module, or a LaunchError saying it is missing."""
    try:
        import _prctl
    except ImportError:
        from .errors import LaunchError
        raise LaunchError(f"python-prctl is not installed for {sys.executable}, and idrun "
                          "needs it for PR_SET_PDEATHSIG", hint="install idrun with its "
                          "dependencies (pip install idrun), or Debian's python3-prctl") from None
    return _prctl


def _prctl(option: int, arg: int | None = None) -> int:
    _prctl = prctl_module()
    if arg is None:
        return _prctl.prctl(option)
    return _prctl.prctl(option, arg)


def set_pdeathsig(sig: int) -> None:
    """Ask the kernel to send ``sig`` when the parent *thread* exits.

    Cleared by fork, by exec of a setuid/file-caps program and by any change of
    effective or filesystem ids, so callers re-arm it after setresuid.
    """
    _prctl(PR_SET_PDEATHSIG, sig)


def set_name(name: str) -> None:
    """This process's name as ps shows it (PR_SET_NAME, at most 15 bytes)."""
    _prctl(PR_SET_NAME, name)


def get_dumpable() -> int:
    return int(_prctl(PR_GET_DUMPABLE))


def set_dumpable(value: int) -> None:
    _prctl(PR_SET_DUMPABLE, value)


def get_no_new_privs() -> bool:
    return bool(_prctl(PR_GET_NO_NEW_PRIVS))


def set_no_new_privs() -> None:
    """Irreversible for this process and its descendants."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def sethostname(name: str) -> None:
    import socket
    socket.sethostname(name)


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
