"""The wrapper (--fork) and the PID-1 init (--pid): signal forwarding, the
command's exit status, the --json-status-fd lines.
"""
import _signal
import os
from ..hints import NoReturn

from ..errors import EXIT_IDRUN
from ..system import syscalls
from . import steps
from .failure import Stage, StepFailed, decode, step
from .owned import Owned
from .spec import SI_KERNEL, Spec
from .steps import FORWARDED_SIGNALS, SIGKILL


# Forwarded signals whose default action ends a process: they also end a wait for a
# --json-status-fd reader.
TERMINATING = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


def wrapper_main(spec: Spec, report_fd: int | None, mask: object) -> NoReturn:
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
    steps.prepare_process(spec.plan, spec.opts, None)
    _arm_and_check(alive_r)
    steps.exec_command(spec.path, spec.argv, spec.env, spec.keep_fds, mask, hold_fds=(rep_w,))


def _init_main(spec: Spec, mask: object, alive_r: int, rep_w: int, st_w: int) -> NoReturn:
    """PID 1 of the new PID namespace: sets the namespace up, starts the command as
    PID 2, forwards signals to it, reaps every orphan, and exits with the command's
    status (the kernel then ends whatever is left in the namespace)."""
    _arm_and_check(alive_r)
    syscalls.set_name("idrun-init")     # what ps shows as PID 1 inside
    steps.prepare_process(spec.plan, spec.opts, None)
    _arm_and_check(alive_r)
    steps.pass_fds(spec.keep_fds, (rep_w, st_w, alive_r))
    steps.restore_signals()
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
