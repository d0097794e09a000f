"""The API's process protocol: the caller forks one child that unshares itself.

The caller writes the child's maps from the parent namespace (as root directly,
rootless through newuidmap/newgidmap), reads them back through the pinned
``/proc/<pid>`` and lets the child exec. One fork, no extra exec, no thread; and
threads in the caller do not matter, since only the single-threaded child
calls unshare.

Cost note: after fork every page either process writes is copied, so the child
runs as little Python as possible between fork and exec.
"""
from __future__ import annotations

import os
from typing import Mapping, NoReturn, Sequence

from . import diagnose, procfs, syscalls
from .errors import EXIT_IDRUN, CommandNotFound, LaunchError
from .launch import (WRITER_HELPER, LaunchOptions, _flush_std, _uses,
                     become_and_exec, child_fail, decode_report, find_command,
                     prepare_helpers, run_wrapped, setup_namespaces, verify_maps,
                     write_maps, write_self_maps, write_setgroups_deny)
from .plan import Plan


def _dup_stdio(fds: Sequence[int | None]) -> None:
    # Move sources that sit on 0-2 out of the way first, so no dup2 clobbers another.
    moved = [os.dup(fd) if fd is not None and fd < 3 and fd != i else fd
             for i, fd in enumerate(fds)]
    for i, fd in enumerate(moved):
        if fd is None:
            continue
        if fd == i:
            os.set_inheritable(i, True)
        else:
            os.dup2(fd, i)


def spawn_plan(plan: Plan, argv: Sequence[str], opts: LaunchOptions = LaunchOptions(), *,
               env: Mapping[str, str] | None = None, cwd: str | None = None,
               stdio: Sequence[int | None] = (None, None, None),
               pass_fds: Sequence[int] = (), reraise: bool = True) -> int:
    """Start ``argv`` under ``plan`` as a child of the calling process; returns its pid.

    Returns once the command has been exec'd (like subprocess.Popen); raises
    IdrunError, with nothing left running, if any step failed.
    """
    argv = list(argv)
    if not argv:
        raise CommandNotFound("empty argv", hint="give a command")
    env = os.environ if env is None else env
    path = find_command(argv[0], env, cwd)
    flags = opts.ns_flags | (syscalls.CLONE_NEWUSER if plan.userns else 0)
    helpers = prepare_helpers(plan, opts,
                              procfs.status() if _uses(plan, WRITER_HELPER) else {})
    fd_target = None
    if helpers:
        from . import newidmap
        fd_target = all(newidmap.supports_fd_target(h.path) for h in helpers.values())
    if opts.net:
        from pyroute2 import IPRoute  # noqa: F401  - import before fork, never in the child
    if opts.mount or opts.mount_proc:
        import ctypes  # noqa: F401
    if opts.hostname is not None:
        import socket  # noqa: F401
    if opts.wrapper:
        import resource  # noqa: F401
    if any(k.writer == WRITER_HELPER for k in (plan.uid, plan.gid)) or opts.wrapper:
        import _prctl  # noqa: F401
    syscalls.preload()              # nothing may be imported in the child after fork
    keep = tuple(pass_fds)
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    _flush_std()
    pid = _fork_quietly()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(report_r)
            _api_child(plan, opts, flags, path, argv, env, cwd, stdio, keep, go_r, report_w,
                       reraise)
        except BaseException as e:          # noqa: BLE001
            child_fail(e, report_w)
    os.close(go_r)
    os.close(report_w)
    reaped = False
    try:
        first = os.read(report_r, 1)
        if first != b"U":
            rest = _read_all(report_r)
            os.waitpid(pid, 0)
            reaped = True
            raise decode_report(first + rest) if first else LaunchError(
                "the namespace process died before unshare")
        if plan.userns:
            # The child is ours and unreaped, so its pid cannot be reused; the
            # descriptor keeps every access on that one process all the same.
            procfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                write_maps(plan, procfd, pid, helpers, opts.verbose, fd_target)
                verify_maps(plan, procfd)
            finally:
                os.close(procfd)
        os.write(go_w, b"g")
        os.close(go_w)
        go_w = -1
        report = _read_all(report_r)
        if report:
            os.waitpid(pid, 0)
            reaped = True
            raise decode_report(report)
    except BaseException:
        if go_w >= 0:
            os.close(go_w)
            go_w = -1
        if not reaped:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        raise
    finally:
        if go_w >= 0:
            os.close(go_w)
        os.close(report_r)
    return pid


def _fork_quietly() -> int:
    """os.fork() without Python 3.12's warning about forking a threaded process.

    The warning exists because a child may block on a lock held by a thread that
    did not survive the fork. idrun's API child imports nothing (everything is
    loaded before), flushes no stream and logs nothing: it makes system calls
    until it execs. The filter change is scoped to this one call.
    """
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _api_child(plan: Plan, opts: LaunchOptions, flags: int, path: str, argv: list[str],
               env: Mapping[str, str], cwd: str | None, stdio: Sequence[int | None],
               keep: tuple[int, ...], go_r: int, report_w: int, reraise: bool) -> NoReturn:
    if flags:
        try:
            syscalls.unshare(flags)
        except OSError as e:
            raise diagnose.unshare_error(e, flags) from None
    # Everything the child can do alone happens before it reports; the caller
    # then writes and verifies the rest. Little Python runs here: every page the
    # child touches after fork is a copy-on-write fault, the main cost of a launch.
    if plan.userns:
        write_setgroups_deny(plan)
        write_self_maps(plan)
    os.write(report_w, b"U")
    if os.read(go_r, 1) != b"g":        # the caller gave up: never run the command
        os._exit(EXIT_IDRUN)
    os.close(go_r)
    setup_namespaces(opts)
    if cwd is not None:
        try:
            os.chdir(cwd)
        except OSError as e:
            raise LaunchError(f"cannot change to directory {cwd}: {e.strerror}") from None
    if stdio[0] is not None or stdio[1] is not None or stdio[2] is not None:
        _dup_stdio(stdio)
    # report_w stays close-on-exec: EOF at the exec tells the caller it succeeded.
    if opts.wrapper:
        run_wrapped(plan, opts, path, argv, env, keep, report_fd=report_w, reraise=reraise)
    become_and_exec(plan, opts, path, argv, env, keep, hold_fds=(report_w,))
