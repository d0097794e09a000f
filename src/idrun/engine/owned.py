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
    """os.fork() without Python 3.12's warning about forking a threaded process.

    The warning exists because a child may block on a lock held by a thread that did
    not survive the fork. The engine's children import nothing (everything is loaded
    before), flush no stream and log nothing: they make system calls until they exec
    or exit. The filter change is scoped to this one call."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


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
