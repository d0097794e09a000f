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
from ..hints import Callable, Mapping, NamedTuple, NoReturn, Sequence

import _signal

from ..errors import EXIT_IDRUN, CommandNotFound, IdrunError, LaunchError
from ..mapping.plan import KindPlan, Plan
from ..mapping.ranges import Line
from ..options import VERIFY_RESET, LaunchOptions
from ..system import procfs, syscalls
from . import steps
from .failure import GO, READY, Stage, StepFailed, decode, encode, explain, explained, step
from .init import wrapper_main
from .owned import Child, Owned
from .spec import SI_KERNEL, Spec
from .steps import FORWARDED_SIGNALS, SIGKILL


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
    steps.write_own_maps(spec.plan)
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
    steps.write_maps(spec.plan, procfd, pid, helpers, spec.opts.verbose, fd_target)
    return steps.verify_maps(spec.plan, procfd)


def _fd_target(helpers: dict) -> bool | None:
    if not helpers:
        return None
    from ..system import newidmap
    return all(newidmap.supports_fd_target(h.path) for h in helpers.values())


def _helpers(spec: Spec, in_this_process: bool) -> dict:
    from ..system import preconditions
    kinds = steps.helper_kinds(spec.plan, spec.opts)
    status = procfs.status() if kinds or in_this_process else {}
    return preconditions.require(kinds, in_this_process and spec.plan.userns, status)


# --- the CLI: the launcher becomes the command ----------------------------------

def run_cli(spec: Spec) -> NoReturn:
    """Carry out ``spec`` in this process and become the command (or its wrapper).

    Raises IdrunError (exit 125/126/127) on any failure; the command never runs then.
    """
    steps.ensure_stdio()
    parent = os.getppid() if spec.opts.die_with_parent else None
    if parent is not None:
        try:
            steps.arm_parent_death(parent)
        except StepFailed as e:
            raise explained(e, spec) from None
    helpers = _helpers(spec, in_this_process=True)
    syscalls.preload()      # before the fork: the writer then shares the loaded library
    if spec.opts.caps is not None:
        from ..system import caps
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
        if steps.needs_map_side(spec.plan):
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
            wrapper_main(spec, None, mask)
        steps.flush_std()
        # A failure after the id switch is explained by diagnose, which the new ids may
        # not be allowed to read (a checkout under /root run as --uidmap 0:1000:1):
        # loaded now, as _preload_for_fork does for the forked paths.
        from ..system import diagnose  # noqa: F401
        # The writer's exit (the teardown of its copy of this process) overlaps with the
        # set-up below; its status is checked before the command runs.
        steps.prepare_process(spec.plan, spec.opts, parent)
        _reap_writer(own, writer)
        steps.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask)
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
    if steps.needs_map_side(spec.plan):
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
        steps.arm_parent_death(parent)
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
        wrapper_main(spec, report_w, mask)
    steps.prepare_process(spec.plan, spec.opts, parent)
    steps.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask,
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
    from ..system import diagnose  # noqa: F401  (a child's failure report is explained here)
    if opts.net:
        from pyroute2 import IPRoute  # noqa: F401
    if opts.mount or opts.mount_proc:
        import ctypes  # noqa: F401
    if opts.mounts is not None:
        from . import mounts  # noqa: F401
        syscalls.ctypes_libc()
    if opts.hostname is not None:
        import _socket  # noqa: F401
    if opts.caps is not None:
        from ..system import caps
        caps.preload()
    syscalls.preload()


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
    if steps.needs_map_side(spec.plan):
        return procfd, _map_side(spec, child.pid, helpers, fd_target, procfd)
    return procfd, steps.verify_maps(spec.plan, procfd)


def _throwaway_child(spec: Spec, report_w: int, go_r: int) -> NoReturn:
    try:
        _namespace_side(spec, report_w, go_r)
    except _Abandoned:
        pass
    os._exit(0)
