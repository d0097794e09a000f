"""The launch engine: one protocol for the CLI, the Python API and ``--verify``.

Two roles talk over two pipes:

* the **namespace side** unshares, writes what only it may write (setgroups
  ``deny``, own-id maps), says READY, waits for GO, then sets up its namespaces,
  switches ids and becomes the command (or starts the PID-1 init);
* the **map side**, in the parent namespace, waits for READY, writes the maps
  (directly as root, through newuidmap/newgidmap rootless), reads them back, and
  says GO.

The CLI launcher is the namespace side and forks its map side before it
unshares, so it keeps its pid and becomes the command. The API caller is the
map side and forks the namespace side, so it keeps running. Same steps
(``launch``), same messages, one failure report (stage name + errno + detail,
``failure.encode``/``decode``) and one explanation table (``failure.explain``).
``verify`` and the id-mapped mounts' user namespaces use the same protocol for a
throwaway namespace (``throwaway_userns``).

Every process this module forks is owned by an ``Owned`` until it is reaped or
handed over, and every pipe likewise: an exception at any point, including one
raised by a signal handler, kills (SIGKILL) and reaps the children and closes
the descriptors. Forks, pipes and the kill/reap run with signals blocked, so no
handler can run between creating a resource and recording it.
"""

import os
from typing import Callable, Mapping, NamedTuple, NoReturn, Sequence

import _signal

from . import launch, procfs, syscalls
from .errors import EXIT_IDRUN, CommandNotFound, IdrunError, LaunchError
from .failure import GO, READY, Stage, StepFailed, decode, encode, explain, explained, step
from .launch import FORWARDED_SIGNALS, SIGKILL
from .options import VERIFY_RESET, LaunchOptions
from .plan import KindPlan, Plan
from .ranges import Line

SI_KERNEL = 0x80        # si_code of a signal the kernel sent (a terminal's ^C), not kill(2)
# Forwarded signals whose default action ends a process: they also end a wait for a
# --json-status-fd reader.
TERMINATING = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


class Spec(NamedTuple):
    """One launch, as plain data, validated before any process exists."""

    plan: Plan
    opts: LaunchOptions
    path: str                                   # the resolved executable
    argv: tuple[str | bytes, ...]
    env: Mapping                                # os.environ or a validated dict
    cwd: str | None = None
    stdio: tuple[int | None, int | None, int | None] = (None, None, None)
    keep_fds: tuple[int, ...] = ()              # inherited by the command beyond 0-2

    @property
    def flags(self) -> int:
        return self.opts.ns_flags | (syscalls.CLONE_NEWUSER if self.plan.userns else 0)


# --- validation, as subprocess does it --------------------------------------------

def _no_nul(value: str | bytes) -> None:
    if (b"\0" if isinstance(value, bytes) else "\0") in value:
        raise ValueError("embedded null byte")


def build_spec(plan: Plan, argv: Sequence, opts: LaunchOptions = LaunchOptions(), *,
               env: Mapping | None = None, cwd: str | os.PathLike | None = None,
               stdio: Sequence[int | None] = (None, None, None),
               pass_fds: Sequence[int] = ()) -> Spec:
    """Check every input before any process exists: the same ValueError/TypeError as
    subprocess for the same faults, then 126/127 for the command."""
    args = tuple(os.fspath(a) for a in argv)
    if not args:
        raise CommandNotFound("empty argv", hint="give a command")
    for a in args:
        _no_nul(a)
    if env is None:
        env = os.environ
    else:
        checked = {}
        for k, v in env.items():
            kb, vb = os.fsencode(k), os.fsencode(v)
            if b"=" in kb:
                raise ValueError("illegal environment variable name")
            _no_nul(kb)
            _no_nul(vb)
            checked[k] = v
        env = checked
    if cwd is not None:
        cwd = os.fspath(cwd)
        _no_nul(cwd)
    keep = tuple(sorted(set(map(int, pass_fds))))
    if any(fd < 0 or fd > 0x7FFFFFFF for fd in keep):
        raise ValueError("bad value(s) in fds_to_keep")
    for fd in keep:
        os.fstat(fd)                 # EBADF now, not in the child
    std = tuple(stdio)
    for fd in std:
        if fd is not None:
            os.fstat(fd)
    name = os.fsdecode(args[0])
    path = launch.find_command(name, env, None if cwd is None else os.fsdecode(cwd),
                               root=opts.rootfs)
    return Spec(plan, opts, path, args, env, None if cwd is None else os.fsdecode(cwd),
                (std + (None, None, None))[:3], keep)


# --- owning processes and descriptors -----------------------------------------------

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


# --- the two sides ---------------------------------------------------------------

def _namespace_side(spec: Spec, ready_w: int | None, go_r: int | None) -> None:
    """Unshare, write what only the new namespace may write, and (when a map side
    exists) hand over to it and wait. Raises StepFailed, or ``_Abandoned`` when
    the map side went away without a word."""
    if spec.opts.mounts is not None:
        # Root: the mounts are built before the user namespace exists, so they are
        # locked in it (mounts.attach_early); rootless this does nothing.
        from .mounts import attach_early
        attach_early(spec.opts.mounts, fresh_proc=spec.opts.pid)  # type: ignore[arg-type]
    if spec.flags:
        step(Stage.UNSHARE, syscalls.unshare, spec.flags)
    launch.write_own_maps(spec.plan)
    if ready_w is None:
        return
    os.write(ready_w, READY)
    first = os.read(go_r, 1)
    if first == GO:
        return
    raise _Abandoned(first + syscalls.read_all(go_r) if first else b"")


class _Abandoned(Exception):
    """The map side closed its pipe (it gave up, died, or sent a report)."""

    def __init__(self, report: bytes) -> None:
        super().__init__(report)
        self.report = report


def _open_proc(own: Owned, pid: int) -> int:
    """/proc/<pid> as a directory descriptor, so every later access reaches that process."""
    return own.adopt_fd(lambda: os.open(f"/proc/{pid}",
                                        os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))


def _map_side(spec: Spec, pid: int, helpers: dict, fd_target: bool | None,
              procfd: int) -> tuple[str, str, str | None]:
    launch.write_maps(spec.plan, procfd, pid, helpers, spec.opts.verbose, fd_target)
    return launch.verify_maps(spec.plan, procfd)


def _fd_target(helpers: dict) -> bool | None:
    if not helpers:
        return None
    from . import newidmap
    return all(newidmap.supports_fd_target(h.path) for h in helpers.values())


def _helpers(spec: Spec, in_this_process: bool) -> dict:
    from . import preconditions
    kinds = launch.helper_kinds(spec.plan, spec.opts)
    status = procfs.status() if kinds or in_this_process else {}
    return preconditions.require(kinds, in_this_process and spec.plan.userns, status)


# --- the CLI: the launcher becomes the command ----------------------------------

def run_cli(spec: Spec) -> NoReturn:
    """Carry out ``spec`` in this process and become the command (or its wrapper).

    Raises IdrunError (exit 125/126/127) on any failure; the command never runs then.
    """
    launch.ensure_stdio()
    parent = os.getppid() if spec.opts.die_with_parent else None
    if parent is not None:
        try:
            launch.arm_parent_death(parent)
        except StepFailed as e:
            raise explained(e, spec) from None
    helpers = _helpers(spec, in_this_process=True)
    syscalls.preload()      # before the fork: the writer then shares the loaded library
    if spec.opts.caps is not None:
        from . import caps
        caps.preload()
    if spec.opts.json_status_fd is not None:
        from . import statusfd
        statusfd.preload()
    if spec.opts.pid:
        # Before unshare: a module that starts a process at import (Debian's pyroute2
        # runs `uname -p`) would otherwise take PID 1 of the new namespace, or PID 2
        # from the command, when the init loads it.
        _preload_for_fork(spec.opts)
    own = Owned()
    try:
        ready_w = go_r = None
        writer = None
        if launch.needs_map_side(spec.plan):
            ready_r, ready_w = own.pipe()
            go_r, go_w = own.pipe()
            launcher = os.getpid()
            writer = own.fork("the map writer",
                              lambda mask: _writer_main(spec, helpers, launcher, ready_r, go_w),
                              go_w, (ready_r,))
            own.close(ready_r)
            own.close(go_w)
        try:
            _namespace_side(spec, ready_w, go_r)
        except StepFailed as e:
            raise explained(e, spec) from None
        except _Abandoned as e:
            if e.report:
                raise decode(e.report, spec) from None
            how = syscalls.how_ended(writer.wait() if writer is not None else 0)
            raise LaunchError(f"the map writer process ended ({how}) before the maps were "
                              "written; refusing to run the command") from None
        for fd in list(own.fds):
            own.close(fd)
        mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, ())
        if spec.opts.wrapper:
            _reap_writer(own, writer)
            _wrapper(spec, None, mask)
        launch.flush_std()
        # A failure after the id switch is explained by diagnose, which the new ids may
        # not be allowed to read (a checkout under /root run as --uidmap 0:1000:1):
        # loaded now, as _preload_for_fork does for the forked paths.
        from . import diagnose  # noqa: F401
        # The writer's exit (the teardown of its copy of this process) overlaps with the
        # set-up below; its status is checked before the command runs.
        launch.prepare_process(spec.plan, spec.opts, parent)
        _reap_writer(own, writer)
        launch.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask)
    except StepFailed as e:
        own.abort()
        raise explained(e, spec) from None
    except BaseException:
        own.abort()
        raise


def _reap_writer(own: Owned, writer: Child | None) -> None:
    """The map writer's exit status: anything but 0 stops the launch."""
    if writer is None or writer not in own.children:
        return
    status = writer.wait()
    own.release(writer)
    if status != 0:
        raise LaunchError(f"the map writer process failed ({syscalls.how_ended(status)}); "
                          "refusing to run the command")


def _writer_main(spec: Spec, helpers: dict, launcher: int, ready_r: int, go_w: int) -> NoReturn:
    """The CLI's map side: a child created in the parent namespace before unshare."""
    syscalls.set_pdeathsig(SIGKILL)
    if os.getppid() != launcher:         # the launcher died before PDEATHSIG was armed
        os._exit(0)
    procfd = os.open(f"/proc/{launcher}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fd_target = _fd_target(helpers)      # probed while the launcher unshares
    if os.read(ready_r, 1) != READY:     # EOF: the launcher gave up
        os._exit(0)
    _map_side(spec, launcher, helpers, fd_target, procfd)
    os.write(go_w, GO)
    os._exit(0)


# --- the API: the caller stays, a child becomes the command ---------------------

def spawn(spec: Spec, own: Owned) -> Child:
    """Start ``spec`` as a child of the caller; returns it (still in ``own``) once the
    command has been exec'd. Raises IdrunError, or ValueError/TypeError/OSError for
    bad arguments, with nothing left running."""
    helpers = _helpers(spec, in_this_process=False)
    fd_target = _fd_target(helpers)
    _preload_for_fork(spec.opts)
    keep = (set(spec.keep_fds) | {fd for fd in spec.stdio if fd is not None}
            | set(spec.opts.mount_fds))
    child, report_r, go_w = _start_namespace_process(
        spec, own, "the namespace process",
        lambda report_w, go_r, mask: _api_child(spec, report_w, go_r, mask), keep)
    if launch.needs_map_side(spec.plan):
        # The child is ours and unreaped, so its pid cannot be reused; the
        # descriptor keeps every access on that one process all the same.
        procfd = _open_proc(own, child.pid)
        _map_side(spec, child.pid, helpers, fd_target, procfd)
        own.close(procfd)
    os.write(go_w, GO)
    own.close(go_w)
    report = syscalls.read_all(report_r)
    own.close(report_r)
    if report:
        child.wait()
        raise decode(report, spec)
    return child


def _start_namespace_process(spec: Spec, own: Owned, what: str, main, keep: set[int]
                             ) -> tuple[Child, int, int]:
    """Fork the namespace side and wait until it has unshared (READY); returns it with
    the report pipe's read end and the go pipe's write end, all owned by ``own``."""
    report_r, report_w = own.pipe()      # child -> caller: READY, then a report or EOF at exec
    go_r, go_w = own.pipe()              # caller -> child: GO, or EOF to abort
    child = own.fork(what, lambda mask: main(report_w, go_r, mask), report_w,
                     tuple(keep | {go_r}))
    own.close(report_w)
    own.close(go_r)
    first = os.read(report_r, 1)
    if first != READY:
        report = first + syscalls.read_all(report_r)
        child.wait()
        raise decode(report, spec) if report else LaunchError(
            f"{what} died before unshare")
    return child, report_r, go_w


def _api_child(spec: Spec, report_w: int, go_r: int, mask: object) -> NoReturn:
    parent = os.getppid() if spec.opts.die_with_parent else None
    if parent is not None:
        launch.arm_parent_death(parent)
    try:
        _namespace_side(spec, report_w, go_r)
    except _Abandoned:                  # the caller gave up: never run the command
        os._exit(EXIT_IDRUN)
    os.close(go_r)
    if spec.cwd is not None:
        step(Stage.CHDIR, os.chdir, spec.cwd)
    if spec.stdio != (None, None, None):
        step(Stage.STDIO, _dup_stdio, spec.stdio)
    # report_w stays close-on-exec: EOF at the exec tells the caller it succeeded.
    if spec.opts.wrapper:
        _wrapper(spec, report_w, mask)
    launch.prepare_process(spec.plan, spec.opts, parent)
    launch.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask,
                        hold_fds=(report_w,))


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


def _preload_for_fork(opts: LaunchOptions) -> None:
    """Load what the forked child will use: after fork in a threaded program it must
    not import (another thread may hold the import lock)."""
    from . import diagnose  # noqa: F401  (a child's failure report is explained here)
    if opts.net:
        from pyroute2 import IPRoute  # noqa: F401
    if opts.mount or opts.mount_proc:
        import ctypes  # noqa: F401
    if opts.mounts is not None:
        from . import mounts  # noqa: F401
        import platform  # noqa: F401
        syscalls._ctypes_libc()
    if opts.hostname is not None:
        import socket  # noqa: F401
    if opts.caps is not None:
        from . import caps
        caps.preload()
    syscalls.preload()


# --- wrapper and init (--fork, --pid) --------------------------------------------

def _wrapper(spec: Spec, report_fd: int | None, mask: object) -> NoReturn:
    """Stay as the command's parent (with --pid: the init's), forward signals, exit with
    its status; with --json-status-fd, report the start and the end there. A failure
    before the command starts is raised (CLI) or relayed on ``report_fd`` (API)."""
    import gc
    gc.enable()                         # this process may now wait for days (console.py)
    waited = FORWARDED_SIGNALS + (_signal.SIGCHLD,)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, waited)
    status_fd = spec.opts.json_status_fd
    own = Owned()
    if status_fd is not None:
        from . import statusfd
        ns_dir = own.adopt_fd(statusfd.open_namespaces)
    alive_r, alive_w = own.pipe()      # EOF in the child: the wrapper is gone
    rep_r, rep_w = own.pipe()          # the child's failure report; EOF: command started
    st_r, st_w = own.pipe()            # the init's wait status of the command
    main = _init_main if spec.opts.pid else _fork_child_main
    child = own.fork("the init process" if spec.opts.pid else "the command's process",
                     lambda m: main(spec, mask, alive_r, rep_w, st_w), rep_w,
                     tuple(spec.keep_fds) + (alive_r, st_w) + spec.opts.mount_fds)
    if status_fd is not None:
        ns_ids = statusfd.namespace_ids(spec.flags, ns_dir)
        own.close(ns_dir)
    for fd in (alive_r, rep_w, st_w):
        own.close(fd)
    hold = ({alive_w, rep_r, st_r} | ({report_fd} if report_fd is not None else set())
            | ({status_fd} if status_fd is not None else set()))
    syscalls.close_fds_except(set(spec.keep_fds) | hold)
    report = syscalls.read_all(rep_r)
    if report:
        child.wait()
        if report_fd is None:
            raise decode(report, spec)
        os.write(report_fd, report)
        os._exit(EXIT_IDRUN)
    if report_fd is not None:
        os.close(report_fd)             # the caller's EOF: the command runs
    chld = stop = False     # SIGCHLD seen; a terminating signal seen
    if status_fd is not None:
        rest, info = statusfd.send(status_fd, statusfd.started_line(child.pid, ns_ids), waited)
        while info is not None:
            if info.si_signo == _signal.SIGCHLD:
                # The command ended while the reader was not reading: waiting on would
                # keep it a zombie and idrun deaf; the end line follows.
                chld = True
                break
            stop = _forward(info, child.pid) or stop
            rest, info = statusfd.send(status_fd, rest, waited)
    status, stop = _forward_until_exit(child.pid, waited, False, chld, stop)
    if spec.opts.pid:
        raw = os.read(st_r, 4)
        if len(raw) == 4:
            status = int.from_bytes(raw, "little")
    if status_fd is not None:
        # Told to stop (SIGTERM, SIGINT, ...): one attempt, then exit as usual.
        rest, info = statusfd.send(status_fd, statusfd.exited_line(_shell_status(status)),
                                   waited, wait=not stop)
        while info is not None and info.si_signo not in TERMINATING:
            rest, info = statusfd.send(status_fd, rest, waited)
    _exit_like(status, reraise=report_fd is not None)


def _forward_until_exit(cmd: int, waited: tuple[int, ...], reap_all: bool,
                        chld: bool = False, stop: bool = False) -> tuple[int, bool]:
    """Pass every signal of ``waited`` (blocked) but SIGCHLD on to ``cmd`` until it ends;
    returns its wait status and whether a terminating signal came (or ``stop`` was set
    already). ``reap_all`` (PID 1): reap every orphan on the way, not only ``cmd``.
    ``chld``: a SIGCHLD was already taken, so look for the end first."""
    while True:
        if chld:
            status = _reap(cmd, reap_all)
            if status is not None:
                return status, stop
        info = _signal.sigwaitinfo(waited)
        chld = info.si_signo == _signal.SIGCHLD
        if not chld:
            stop = _forward(info, cmd) or stop


def _reap(cmd: int, reap_all: bool) -> int | None:
    """``cmd``'s wait status once it has ended, else None; never blocks."""
    while True:
        try:
            pid, status = os.waitpid(-1 if reap_all else cmd, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == cmd:
            return status
        if pid == 0 or not reap_all:
            return None


def _forward(info, pid: int) -> bool:
    """Pass a signal on to the command (the init); a terminal's signals reach the whole
    foreground group by themselves. True for a signal that ends a wait (TERMINATING)."""
    if info.si_code != SI_KERNEL:
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            pass
    return info.si_signo in TERMINATING


def _arm_and_check(alive_r: int) -> None:
    """PDEATHSIG tied to the wrapper, then EOF on a pipe only the wrapper holds tells
    whether it already died (getppid() reads 0 across a PID namespace). Again after
    the id switch, which clears PDEATHSIG."""
    step(Stage.PARENT_DEATH, syscalls.set_pdeathsig, SIGKILL)
    os.set_blocking(alive_r, False)
    try:
        gone = os.read(alive_r, 1) == b""
    except BlockingIOError:
        gone = False
    if gone:
        raise StepFailed(Stage.PARENT_DEATH, 0)


def _fork_child_main(spec: Spec, mask: object, alive_r: int, rep_w: int,
                     st_w: int) -> NoReturn:
    """--fork without --pid: the wrapper's child becomes the command."""
    _arm_and_check(alive_r)
    launch.prepare_process(spec.plan, spec.opts, None)
    _arm_and_check(alive_r)
    launch.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask, hold_fds=(rep_w,))


def _init_main(spec: Spec, mask: object, alive_r: int, rep_w: int, st_w: int) -> NoReturn:
    """PID 1 of the new PID namespace: sets the namespace up, starts the command as
    PID 2, forwards signals to it, reaps every orphan, and exits with the command's
    status (the kernel then ends whatever is left in the namespace)."""
    _arm_and_check(alive_r)
    syscalls.set_name("idrun-init")     # what ps shows as PID 1 inside
    launch.prepare_process(spec.plan, spec.opts, None)
    _arm_and_check(alive_r)
    launch.pass_fds(spec.keep_fds, (rep_w, st_w, alive_r))
    launch.restore_signals()
    reset = tuple(s for s in FORWARDED_SIGNALS + (_signal.SIGCHLD, _signal.SIGPIPE,
                                                  getattr(_signal, "SIGXFSZ", 0)) if s)
    try:
        cmd = os.posix_spawn(spec.path, list(spec.argv), spec.env, setsigmask=mask,
                             setsigdef=reset)
    except OSError as e:
        raise StepFailed(Stage.EXEC, e.errno or 0) from None
    os.close(rep_w)                     # the wrapper's EOF: the command runs
    status, _ = _forward_until_exit(cmd, FORWARDED_SIGNALS + (_signal.SIGCHLD,), True)
    os.write(st_w, status.to_bytes(4, "little"))
    os._exit(_shell_status(status))


def _shell_status(status: int) -> int:
    """A wait status as a shell shows it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _exit_like(status: int, reraise: bool) -> NoReturn:
    """Exit with the command's status: 128+N for signal N, or (API) die of N."""
    if reraise and os.WIFSIGNALED(status):
        _die_of(os.WTERMSIG(status))
    os._exit(_shell_status(status))


def _die_of(sig: int) -> None:
    """End this process with the same signal, so its parent sees what happened."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core from the wrapper
    except (ImportError, OSError, ValueError):
        pass
    _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (sig,))
    os.kill(os.getpid(), sig)


# --- verifying a mapping on the kernel without running anything ------------------

class Verified:
    """What the kernel took for a throwaway namespace: its own text of the maps."""

    __slots__ = ("uid_map", "gid_map", "setgroups")

    def __init__(self, uid_map: str, gid_map: str, setgroups: str | None) -> None:
        self.uid_map, self.gid_map, self.setgroups = uid_map, gid_map, setgroups


def verify(plan: Plan, opts: LaunchOptions = LaunchOptions()) -> Verified:
    """Create a throwaway user namespace, have its maps written exactly as a launch
    would, read them back, compare, tear it down. Nothing is exec'd."""
    if not plan.userns:
        raise IdrunError("this mapping creates no user namespace, so there is nothing for "
                         "the kernel to take", "--verify checks --uidmap/--gidmap and --userns "
                         "modes other than host")
    spec = Spec(plan, opts._replace(**VERIFY_RESET, mounts=None),
                "/nonexistent", ("verify",), os.environ)
    helpers = _helpers(spec, in_this_process=False)
    own = Owned()
    try:
        texts = throwaway_userns(spec, own, helpers)[1]
        own.abort()             # EOF on go ends the child; it is killed and reaped anyway
    except BaseException:
        own.abort()             # also when a handler raised on the way into the one above
        raise
    return Verified(*texts)


def idmap_userns(uid: tuple[Line, ...], gid: tuple[Line, ...],
                 keep: Callable[[int], object]) -> None:
    """As root: a user namespace whose maps are ``uid`` and ``gid``, for
    mount_setattr(MOUNT_ATTR_IDMAP). Its ns/user descriptor is handed to ``keep`` with
    signals blocked, so a handler that raises between the open and the caller's record
    of it cannot lose it (issue 19); the process holding the namespace is then killed
    and reaped, the descriptor keeps the namespace alive."""
    plan = Plan(rootless=False, userns=True, caller_uid=os.getuid(), caller_gid=os.getgid(),
                uid=KindPlan("uid", uid, uid), gid=KindPlan("gid", gid, gid),
                setgroups=procfs.read_setgroups() or "allow", user_uid=None, user_gid=None)
    spec = Spec(plan, LaunchOptions(), "/nonexistent", ("idmap",), os.environ)
    own = Owned()
    try:
        procfd, _ = throwaway_userns(spec, own, {})
        fd = own.adopt_fd(lambda: os.open("ns/user", os.O_RDONLY | os.O_CLOEXEC,
                                          dir_fd=procfd))
        own.give_away(fd, keep)
        own.abort()                     # kill and reap the child, close the pipes
    except BaseException:
        own.abort()                     # also when a handler raised on the way into it
        raise


def throwaway_userns(spec: Spec, own: Owned, helpers: dict
                     ) -> tuple[int, tuple[str, str, str | None]]:
    """The one way to a user namespace that runs nothing: a child unshares it and waits
    (the launch's namespace side, its failure report included), its maps are written
    from here as a launch writes them (``helpers``: newuidmap/newgidmap) and read back.

    Returns a /proc/<pid> descriptor of the child and the kernel's texts of the maps.
    The child, the descriptor and the pipes are ``own``'s: ``own.abort()`` ends them."""
    fd_target = _fd_target(helpers)
    syscalls.preload()                  # the child must not import (threaded API callers)
    child, _, _ = _start_namespace_process(
        spec, own, "a throwaway namespace",
        lambda report_w, go_r, mask: _throwaway_child(spec, report_w, go_r), set())
    procfd = _open_proc(own, child.pid)
    if launch.needs_map_side(spec.plan):
        return procfd, _map_side(spec, child.pid, helpers, fd_target, procfd)
    return procfd, launch.verify_maps(spec.plan, procfd)


def _throwaway_child(spec: Spec, report_w: int, go_r: int) -> NoReturn:
    try:
        _namespace_side(spec, report_w, go_r)
    except _Abandoned:
        pass
    os._exit(0)
