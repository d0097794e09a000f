"""``--json-status-fd FD``: what a supervisor learns about a launch, as JSON lines.

The idea is bubblewrap's: a descriptor the caller opened gets one JSON object per
line. idrun writes two, both described in schema.json:

* when the command runs: ``{"schema": 1, "child-pid": PID, "user-namespace": INODE,
  ...}``. PID is the process idrun started in the new namespaces, numbered as in
  idrun's own PID namespace: the command itself, or with ``--pid`` the init (PID 1
  inside) whose child the command is. There is one ``NAME-namespace`` member for each
  namespace idrun created, NAME being its file under /proc/PID/ns and INODE that
  file's inode number (what ``readlink`` shows as ``NAME:[INODE]``);
* when the command has ended: ``{"schema": 1, "exit-code": N}``, N being the status
  idrun exits with (128+N for a death by signal N).

The member names are bubblewrap's, so a supervisor written for bwrap reads them
unchanged (bwrap's readers ignore members they do not know, such as ``schema``).

Only the command's parent can learn how it ended, so the option keeps idrun as a
waiting parent (``LaunchOptions.wrapper``), as ``--fork`` does; that wrapper
writes both lines. A launch that fails before the command runs writes neither:
idrun's own exit status (125, 126, 127) and its error line tell what happened.
A reader that goes away does not stop the command: write errors are ignored. A
reader that stops reading does not stop idrun's signal handling: the lines are
written without blocking (``send``), and SIGTERM/SIGINT end idrun as usual.
"""
from __future__ import annotations

import os

from ..jsonout import dumps
from ..system import syscalls

# unshare(2) flag -> the namespace's file under /proc/PID/ns, in bubblewrap's order
# (and the user namespace, which bwrap does not report, first).
NAMESPACE_FILES = ((syscalls.CLONE_NEWUSER, "user"), (syscalls.CLONE_NEWCGROUP, "cgroup"),
                   (syscalls.CLONE_NEWIPC, "ipc"), (syscalls.CLONE_NEWNS, "mnt"),
                   (syscalls.CLONE_NEWNET, "net"), (syscalls.CLONE_NEWPID, "pid"),
                   (syscalls.CLONE_NEWUTS, "uts"))


def preload() -> None:
    """Load the JSON encoder while the launcher can still read every file it could
    at start (the lines are written later, from inside the new namespaces)."""
    import json  # noqa: F401


def open_namespaces() -> int:
    """This process's /proc/self/ns, as a descriptor: the init's /proc mount or
    pivot_root in the shared mount namespace cannot redirect it later."""
    return os.open("/proc/self/ns", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def namespace_ids(flags: int, ns_dir: int) -> dict[str, int]:
    """``NAME-namespace`` -> inode for each namespace in ``flags`` that this process
    created by unshare(2); ``ns_dir`` is its ``open_namespaces()``.

    Its children are born in the same namespaces, the PID namespace being that of
    ``pid_for_children``, which the kernel shows only once a first child exists: so
    this runs right after the fork, and reads this process's entries rather than the
    child's, which vanish as soon as it exits."""
    ids: dict[str, int] = {}
    for flag, name in NAMESPACE_FILES:
        if flags & flag:
            entry = "pid_for_children" if name == "pid" else name
            try:
                ids[f"{name}-namespace"] = os.stat(entry, dir_fd=ns_dir).st_ino
            except OSError:         # no such entry: say nothing rather than guess
                pass
    return ids


def started_line(child_pid: int, ids: dict[str, int]) -> bytes:
    return (dumps({"child-pid": child_pid, **ids}) + "\n").encode()


def exited_line(exit_code: int) -> bytes:
    return (dumps({"exit-code": exit_code}) + "\n").encode()


def send(fd: int, data: bytes, waited: tuple[int, ...] = (), wait: bool = True
         ) -> tuple[bytes, object]:
    """Write ``data`` without ever blocking in write(2); returns what is left unwritten
    and the siginfo of a signal of ``waited`` (blocked by the caller) that arrived
    while the reader was not reading, which ends the attempt.

    A supervisor that stops reading must not make idrun unkillable: a blocking write
    on a full pipe, with the forwarded signals blocked, never returned (issue 19). So
    the descriptor is non-blocking for the write, and while it is full this waits for
    the signals instead, in short slices. ``wait=False``: one attempt only. A write
    error (EPIPE, the reader is gone) gives up quietly: the command's life does not
    depend on whether anyone still reads."""
    import _signal
    view = memoryview(data)
    try:
        blocking = os.get_blocking(fd)
        if blocking:
            os.set_blocking(fd, False)
    except OSError:
        return b"", None
    try:
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                if not (wait and waited):
                    break
                info = _signal.sigtimedwait(waited, 0.05)
                if info is not None:
                    return bytes(view), info
            except OSError:
                return b"", None
    finally:
        if blocking:
            try:
                os.set_blocking(fd, True)
            except OSError:
                pass
    return bytes(view), None
