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
from .errors import EXIT_IDRUN, CommandNotFound, IdrunError, LaunchError
from .launch import (WRITER_HELPER, WRITER_SELF, LaunchOptions, _flush_std, _uses,
                     split_native_report,
                     native,
                     become_and_exec, child_fail, decode_report, find_command,
                     prepare_helpers, run_wrapped, verify_maps, fork_or_fail,
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
    spawner = _clone_spawner(opts, plan)
    handle = None                   # the native child's memory; freed once it has exec'd
    go_r, go_w = os.pipe()
    report_r, report_w = os.pipe()
    if spawner is not None:
        try:
            pid, handle = _spawn_native(spawner, plan, opts, flags, path, argv, env, cwd,
                                        stdio, pass_fds, go_r, go_w, report_r, report_w)
        except BaseException:
            for fd in (go_r, go_w, report_r, report_w):
                os.close(fd)
            raise
        decode = _native_decoder(plan, flags, path, argv, cwd)
    else:
        _preload_for_fork(opts)
        keep = tuple(pass_fds)
        _flush_std()
        pid = _fork_quietly()
        if pid == 0:
            try:
                os.close(go_w)
                os.close(report_r)
                _api_child(plan, opts, flags, path, argv, env, cwd, stdio, keep, go_r,
                           report_w, reraise)
            except BaseException as e:          # noqa: BLE001
                child_fail(e, report_w)
        decode = decode_report
    os.close(go_r)
    os.close(report_w)
    reaped = False
    try:
        first = os.read(report_r, 1)
        if first != b"U":
            rest = _read_all(report_r)
            os.waitpid(pid, 0)
            reaped = True
            raise decode(first + rest) if first else LaunchError(
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
            raise decode(report)
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
        # EOF on the report pipe (exec) or waitpid (failure) has happened by now,
        # so the native child no longer uses its stack and arguments.
        del handle
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
        return fork_or_fail("the namespace process")


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


# --- the native (vfork-class) spawner ----------------------------------------------

def _clone_spawner(opts: LaunchOptions, plan: Plan | None = None):
    """idrun._clonespawn when it is built and safe for this launch, else None.

    Not for wrappers (--pid/--fork), mounts, lo or the hostname: they need Python
    in the child. Not when the id switch changes the effective uid or gid as the
    kernel sees them: that resets the *mm's* dumpable flag, and the native child
    shares its mm with the caller, which would become non-dumpable (and its
    /proc entry root-owned, breaking later rootless launches).
    """
    if opts.wrapper or opts.mount or opts.mount_proc or opts.net or opts.hostname is not None:
        return None
    if plan is not None and not _keeps_effective_ids(plan):
        return None
    return native()


def _keeps_effective_ids(plan: Plan) -> bool:
    """Whether the container ids to switch to are the caller's own effective ids."""
    from .ranges import translate
    for ident, lines, own in ((plan.user_uid, plan.uid.lines, os.geteuid()),
                              (plan.user_gid, plan.gid.lines, os.getegid())):
        if ident is None:
            continue
        host = translate(lines, ident) if plan.userns else ident
        if host != own:
            return False
    return True


def _own_writes(plan: Plan) -> list[tuple[str, str]]:
    """The own-id steps of write_setgroups_deny/write_self_maps, for the native child."""
    writes = []
    if plan.userns:
        if plan.setgroups == "deny":
            writes.append(("/proc/self/setgroups", "deny"))
        for k in (plan.uid, plan.gid):
            if k.writer == WRITER_SELF:
                writes.append((f"/proc/self/{k.kind}_map", k.text))
    return writes


def _spawn_native(spawner, plan: Plan, opts: LaunchOptions, flags: int, path: str,
                  argv: list[str], env: Mapping[str, str], cwd: str | None,
                  stdio: Sequence[int | None], pass_fds: Sequence[int], go_r: int, go_w: int,
                  report_r: int, report_w: int) -> tuple[int, object]:
    fse = os.fsencode
    writes = [(fse(p), d.encode()) for p, d in _own_writes(plan)]
    groups = None
    if plan.user_gid is not None and plan.setgroups == "allow":
        groups = list(plan.groups)
    keep = sorted(set(pass_fds) | {report_w})
    inherit = [fd != report_w for fd in keep]   # report_w stays close-on-exec
    # os.environ writes through to the C environment, which the native side copies
    # directly: no Python-level round trip of every variable.
    envp = None if env is os.environ else [fse(k) + b"=" + fse(v) for k, v in env.items()]
    return spawner.spawn(flags, go_r, report_w, [go_w, report_r], writes, list(stdio),
                         None if cwd is None else fse(cwd), groups,
                         -1 if plan.user_gid is None else plan.user_gid,
                         -1 if plan.user_uid is None else plan.user_uid,
                         bool(opts.no_new_privs), keep, inherit, fse(path),
                         [fse(a) for a in argv], envp)


_STAGES = {"d": "cannot set up the command's stdin/stdout/stderr",
           "n": "cannot set no_new_privs", "f": "cannot pass a file descriptor on"}


def _native_decoder(plan: Plan, flags: int, path: str, argv: list[str], cwd: str | None):
    """Turn the native child's ``E`` + stage + errno into the fork path's errors."""
    writes = _own_writes(plan)

    def decode(report: bytes) -> IdrunError:
        parts = split_native_report(report, "the namespace process")
        if isinstance(parts, IdrunError):
            return parts
        stage, exc = parts
        if stage == "u":
            return diagnose.unshare_error(exc, flags)
        if stage.isdigit() and int(stage) < len(writes):
            where, data = writes[int(stage)]
            return diagnose.write_error(exc, where, data)
        if stage == "x":
            return diagnose.exec_error(exc, argv[0], path)
        if stage == "c":
            return LaunchError(f"cannot change to directory {cwd}: {exc.strerror}")
        ids = {"g": f"setgroups({list(plan.groups)}) failed",
               "G": f"cannot switch to container gid {plan.user_gid}",
               "V": f"cannot switch to container uid {plan.user_uid}"}
        if stage in ids:
            return LaunchError(f"{ids[stage]}: {exc.strerror}",
                               hint="the ids must be mapped; see --dry-run")
        return LaunchError(f"{_STAGES.get(stage, f'launch step {stage!r} failed')}: "
                           f"{exc.strerror}")
    return decode


def _preload_for_fork(opts: LaunchOptions) -> None:
    """Load what the forked child will use: after fork in a threaded program it must
    not import (another thread may hold the import lock)."""
    if opts.net:
        from pyroute2 import IPRoute  # noqa: F401
    if opts.mount or opts.mount_proc:
        import ctypes  # noqa: F401
    if opts.hostname is not None:
        import socket  # noqa: F401
    if opts.wrapper:
        import resource  # noqa: F401
        syscalls.prctl_module()
    syscalls.preload()
