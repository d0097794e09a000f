"""The parent's process ownership: every fork and pipe of a launch is owned
until reaped or handed over; an abort kills and reaps, closes every fd.
"""
import os
from _signal import SIGKILL
from ..hints import Callable, NoReturn, Sequence

from ..errors import EXIT_IDRUN
from ..system import syscalls
from .failure import Stage, encode, explain


class Child:
    """A forked process owned until reaped; its pid cannot be reused before that."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None

    def wait(self) -> int:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        return self.status

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()


class Owned:
    """The children and descriptors of one launch in progress."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.children: list[Child] = []

    def pipe(self) -> tuple[int, int]:
        with syscalls.SignalsBlocked():
            r, w = os.pipe()
            self.fds += (r, w)
        return r, w

    def adopt_fd(self, opener: Callable[[], int]) -> int:
        with syscalls.SignalsBlocked():
            fd = opener()
            self.fds.append(fd)
        return fd

    def close(self, fd: int) -> None:
        with syscalls.SignalsBlocked():
            if fd in self.fds:
                self.fds.remove(fd)
                os.close(fd)

    def fork(self, what: str, main: Callable[[object], NoReturn], report_fd: int | None,
             keep: Sequence[int]) -> Child:
        """Fork a process that runs ``main(mask)`` with every signal blocked and only
        0-2 plus ``keep`` open; a failure in it is reported on ``report_fd``.

        No stdio flush here: the child never flushes (it execs or leaves by _exit),
        and in a forked child of a threaded caller a flush could wait forever on a
        lock held by a thread that no longer exists."""
        with syscalls.SignalsBlocked() as mask:
            try:
                pid = _fork_quietly()
            except OSError as e:
                raise explain(Stage.FORK, e.errno or 0, what, None) from None
            if pid == 0:
                _child(main, mask, report_fd, keep)
            child = Child(pid)
            self.children.append(child)
        return child

    def give_away(self, fd: int, make: Callable[[int], object]) -> object:
        """Wrap ``fd`` in an object that closes it (a file), and stop owning it."""
        with syscalls.SignalsBlocked():
            obj = make(fd)
            self.fds.remove(fd)
        return obj

    def release(self, child: Child) -> None:
        with syscalls.SignalsBlocked():
            self.children.remove(child)

    def abort(self) -> None:
        """Kill and reap every child, close every descriptor; signals stay blocked, so a
        second signal cannot cut this short."""
        with syscalls.SignalsBlocked():
            for child in self.children:
                child.kill()
            self.children.clear()
            for fd in self.fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.fds.clear()


def _fork_quietly() -> int:
    """fork(2) for the engine, called with every signal blocked.

    The only thread of its process (the CLI, most API callers) forks through libc
    (``syscalls.fork_single_threaded``): none of CPython's after-fork work is needed
    then, and it costs as much as the fork. With other threads, os.fork(), which
    re-creates the locks they may hold, without Python 3.12's warning about forking a
    threaded process: that warning exists because a child may block on a lock held by
    a thread that did not survive the fork, and the engine's children import nothing
    (everything is loaded before), flush no stream and log nothing: they make system
    calls until they exec or exit. The filter change is scoped to this one call."""
    if _only_thread():
        return _libc_fork()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _only_thread() -> bool:
    """Whether the kernel counts one thread in this process (C-level threads
    included). Signals are blocked, so nothing of ours can start one before the fork."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


_fork_fn: list[object] = []


def _libc_fork() -> int:
    """fork(2) straight from libc, with the GIL held, for a process the kernel counts
    one thread in.

    ``os.fork`` also does CPython's after-fork work in the child: it re-creates the
    runtime's locks (which another thread may have held) and runs every
    ``os.register_at_fork`` hook (random's reseed, threading's clean-up), whose Python
    code touches enough of the copied heap to cost about as much as the fork itself
    (copy-on-write faults: 0.5-1 ms here). With one thread no lock can be held by
    anyone else; signals are blocked and the caller's pending handlers ran before this
    call, so none is left for the child; and the engine's child never reaches what the
    hooks repair (it makes system calls, then execs or _exits). subprocess's own
    fork_exec skips that work the same way when it has no preexec_fn."""
    if not _fork_fn:
        import _ctypes

        class _Libc:
            _handle = _ctypes.dlopen(None, getattr(_ctypes, "RTLD_LOCAL", 0))

        class _Func(_ctypes.CFuncPtr):
            # PYTHONAPI: the GIL stays held across the call, so the child holds it.
            _flags_ = (_ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
                       | _ctypes.FUNCFLAG_PYTHONAPI)

        _fork_fn.append(_Func(("fork", _Libc)))
    import _ctypes
    _ctypes.set_errno(0)
    pid = _fork_fn[0]()  # type: ignore[operator]
    if pid == -1:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return pid


def _child(main: Callable[[object], NoReturn], mask: object, report_fd: int | None,
           keep: Sequence[int]) -> NoReturn:
    """In a fresh fork: never return into the parent's code, whatever happens."""
    status = EXIT_IDRUN
    try:
        # Copies of every other pipe (a sibling launch's, in a threaded caller) must
        # not live on here: their EOF is how those launches learn anything.
        syscalls.close_fds_except(set(keep) | ({report_fd} if report_fd is not None else set()))
        main(mask)
    except BaseException as e:                  # noqa: BLE001 - a fork must not return
        report, status = encode(e)
        try:
            if report_fd is not None:
                os.write(report_fd, report)
        except BaseException:                   # noqa: BLE001
            pass
    finally:
        os._exit(status)
