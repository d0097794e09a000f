"""The process protocol: create the namespaces, get the maps written, become the command.

CLI path (``exec_plan``), following util-linux ``unshare``: the launcher forks a
map writer *before* it unshares, then unshares itself, lets the writer write its
maps, checks them and execs the command in its own process.

Why the writer is forked before unshare rather than having a child unshare:
the launcher keeps its pid and *becomes* the command, so nothing lingers, the
shell's job control, ``$!`` and exit status are the command's own, and signals
need no forwarding. The writer stays in the parent namespace with the caller's
original credentials, which is where map writes must come from (a process that
has unshared has no capabilities over its parent namespace). The writer sets
PR_SET_PDEATHSIG and pins ``/proc/<launcher>`` as a directory descriptor before
anything happens, so it can neither outlive the launcher nor write to a
recycled pid.

API path (``apilaunch.spawn_plan``): the calling process forks one child that unshares
itself while the caller writes its maps, then lets it exec. The caller is
already the natural parent (like subprocess), so this costs one fork and no
extra exec; it also works when the caller has threads, because only the forked
child, single-threaded by construction, calls unshare.

Fail closed everywhere: the command is exec'd only after the maps were written,
read back equal to the plan and the id switch succeeded. Any failure raises an
``IdrunError`` (one line, exit 125 unless 126/127) and the writer is reaped.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, NamedTuple, NoReturn, Sequence

# _signal (the C core of ``signal``) avoids ~0.7 ms of enum set-up per launch.
import _signal

from . import procfs, syscalls
from .errors import (EXIT_IDRUN, CommandNotExecutable, CommandNotFound, IdrunError,
                     LaunchError)
from .plan import WRITER_DIRECT, WRITER_HELPER, WRITER_SELF, KindPlan, Plan
from .ranges import render

SIGKILL = 9
# podman --sig-proxy forwards everything catchable; the brief fixes this set.
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
                     _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH)


class LaunchOptions(NamedTuple):
    """Everything about a launch that is not the id mapping (that is in the Plan).

    A NamedTuple rather than a frozen dataclass: same immutability, a fraction of
    the import cost on the launch path.
    """

    net: bool = False              # new network namespace with lo up
    pid: bool = False              # new PID namespace; the command is PID 1 (forks)
    mount: bool = False            # new mount namespace, propagation private
    mount_proc: bool = False       # mount a fresh /proc (implies mount)
    uts: bool = False
    hostname: str | None = None    # implies uts
    ipc: bool = False
    cgroup: bool = False
    fork: bool = False             # run the command as a child of a wrapper
    no_new_privs: bool = False     # set after the helpers ran, before exec
    preserve_fds: int = 0          # pass fds 3 .. 3+N-1 (podman's --preserve-fds)
    verbose: bool = False
    newuidmap: str | None = None   # explicit helper paths (else system dirs)
    newgidmap: str | None = None

    @property
    def ns_flags(self) -> int:
        """unshare(2) flags for the namespaces other than the user namespace."""
        flags = 0
        if self.net:
            flags |= syscalls.CLONE_NEWNET
        if self.pid:
            flags |= syscalls.CLONE_NEWPID
        if self.mount or self.mount_proc:
            flags |= syscalls.CLONE_NEWNS
        if self.uts or self.hostname is not None:
            flags |= syscalls.CLONE_NEWUTS
        if self.ipc:
            flags |= syscalls.CLONE_NEWIPC
        if self.cgroup:
            flags |= syscalls.CLONE_NEWCGROUP
        return flags

    @property
    def wrapper(self) -> bool:
        return self.fork or self.pid


# --- checks before anything starts ----------------------------------------------

def default_shell() -> str:
    shell = os.environ.get("SHELL")
    if shell:
        return shell
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def find_command(name: str, env: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> str:
    """Resolve the command like execvp would, so 127/126 come before anything starts."""
    if not name:
        raise CommandNotFound("empty command name", hint="give a command after --")
    if "/" in name:
        path = name if cwd is None else os.path.join(cwd, name)
        if not os.path.exists(path):
            raise CommandNotFound(f"{name}: no such file", hint="check the path")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise CommandNotExecutable(f"{name}: not executable", hint=f"chmod +x {name}")
        return path
    denied = None
    for d in os.get_exec_path(env):
        cand = os.path.join(d or ".", name)
        if cwd is not None and not os.path.isabs(cand):
            cand = os.path.join(cwd, cand)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000 and os.access(cand, os.X_OK):
            return cand
        denied = denied or cand
    if denied is not None:
        raise CommandNotExecutable(f"{name}: found {denied}, but it is not executable",
                                   hint=f"chmod +x {denied}")
    raise CommandNotFound(f"{name}: command not found in PATH",
                          hint="check the name or give a full path")


def _ensure_stdio() -> None:
    """Keep 0-2 occupied, so no pipe or descriptor of idrun lands there."""
    for fd in (0, 1, 2):
        try:
            os.get_inheritable(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _uses(plan: Plan, writer: str) -> bool:
    return plan.userns and (plan.uid.writer == writer or plan.gid.writer == writer)


def prepare_helpers(plan: Plan, opts: LaunchOptions, status: dict[str, str]) -> dict:
    """Locate and check the rootless helpers (kind -> newidmap.Helper) and the
    conditions they need; empty when no kind is written by a helper."""
    if not _uses(plan, WRITER_HELPER):
        return {}
    from . import newidmap
    helpers = {}
    for k in (plan.uid, plan.gid):
        if k.writer == WRITER_HELPER:
            override = opts.newuidmap if k.kind == "uid" else opts.newgidmap
            helpers[k.kind] = newidmap.find(k.kind, override)
    if status.get("NoNewPrivs", "0") == "1":
        raise LaunchError("NoNewPrivs is set for this process, so the kernel ignores the "
                          "setuid bit of newuidmap/newgidmap; only your own id could be mapped",
                          hint="run idrun outside NoNewPrivileges=/sandboxes, or use "
                               "--map-root-user")
    # newuidmap requires /proc/<pid> to be owned by the caller's real ids, which holds
    # only while the process is dumpable and real == effective ids.
    st = os.stat("/proc/self")
    if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
        raise LaunchError(f"/proc/{os.getpid()} is owned by {st.st_uid}:{st.st_gid}, not by "
                          f"your real ids {os.getuid()}:{os.getgid()}, so newuidmap would "
                          "refuse it (process not dumpable, or real and effective ids differ)",
                          hint="run idrun directly, not from a setuid/setgid program")
    return helpers


def _check_single_thread(status: dict[str, str]) -> None:
    threads = int(status.get("Threads", "1"))
    threading = sys.modules.get("threading")
    if threading is not None:
        threads = max(threads, threading.active_count())
    if threads > 1:
        raise LaunchError(f"idrun must be single-threaded before unshare; {threads} threads "
                          "are running", hint="something started a thread before the launch "
                          "(an extension or plugin); use idrun.spawn() from threaded programs")


# --- writing and checking the maps ---------------------------------------------

def _write_file(path: str, data: str, dir_fd: int | None, what: str) -> None:
    """One open, one write() of the whole text, as the kernel demands."""
    raw = data.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            n = os.write(fd, raw)
        finally:
            os.close(fd)
    except OSError as e:
        from .diagnose import write_error
        raise write_error(e, what, data) from None
    if n != len(raw):
        raise LaunchError(f"writing {what}: short write ({n} of {len(raw)} bytes)")


def write_maps(plan: Plan, procfd: int, pid: int, helpers: dict,
               verbose: bool = False, fd_target: bool | None = None) -> None:
    """From the parent namespace: write the direct kinds, run the helper for the others.

    ``procfd`` is an open ``/proc/<pid>`` directory; every access goes through
    it, so a recycled pid can never be written to.
    """
    for k in (plan.uid, plan.gid):
        if k.writer == WRITER_DIRECT:
            _write_file(f"{k.kind}_map", k.text, procfd, f"/proc/{pid}/{k.kind}_map")
        elif k.writer == WRITER_HELPER:
            from . import newidmap
            h = helpers[k.kind]
            use_fd = newidmap.supports_fd_target(h.path) if fd_target is None else fd_target
            if use_fd:
                newidmap.run(h, f"fd:{procfd}", k.helper_args(), keep_fd=procfd,
                             verbose=verbose)
            else:
                newidmap.run(h, str(pid), k.helper_args(), verbose=verbose)


def write_setgroups_deny(plan: Plan) -> None:
    """Inside, right after unshare: 'deny' must precede gid_map, and this process holds
    every capability of its new namespace until the maps exist. Writing it here
    covers every writer (direct, newgidmap, self) the same way."""
    if plan.userns and plan.setgroups == "deny":
        _write_file("/proc/self/setgroups", "deny", None, "/proc/self/setgroups")


def write_self_maps(plan: Plan) -> None:
    """Own-id lines: the namespace writes its own maps (kernel's unprivileged rule)."""
    for k in (plan.uid, plan.gid):
        if k.writer == WRITER_SELF:
            _write_file(f"/proc/self/{k.kind}_map", k.text, None, f"/proc/self/{k.kind}_map")


def _expected(k: KindPlan) -> list:
    if k.writer not in (WRITER_DIRECT, WRITER_HELPER, WRITER_SELF):
        return []
    return sorted(k.lines, key=lambda ln: (ln.inside, ln.outside))


def verify_maps(plan: Plan, dir_fd: int | None = None) -> None:
    """Read back what the kernel holds and compare it with the plan, line for line.

    Without ``dir_fd`` the process checks itself; with it (an open /proc/<pid>
    from the parent namespace) the outside ids read are those of the parent
    namespace, which is what the plan's lines are written in.
    """
    where = "/proc/self" if dir_fd is None else "the new namespace's"
    for k in (plan.uid, plan.gid):
        want = _expected(k)
        # Byte-exact against the kernel's own rendering; parse only to explain.
        raw = procfs.read_map_text(k.kind, dir_fd=dir_fd)
        if raw == procfs.kernel_text(want):
            continue
        got = sorted(procfs.parse_map(raw), key=lambda ln: (ln.inside, ln.outside))
        if got != want:
            raise LaunchError(f"{where}/{k.kind}_map reads back as "
                              f"{render(got).strip()!r}, not the planned "
                              f"{render(want).strip()!r}; refusing to run the command",
                              hint="another process raced the map write, or a helper "
                                   "rewrote it; run with --verbose")
    sg = procfs.read_setgroups(dir_fd=dir_fd)
    if sg is not None and sg != plan.setgroups:
        raise LaunchError(f"{where}/setgroups reads {sg!r}, not the planned "
                          f"{plan.setgroups!r}; refusing to run the command",
                          hint="the parent namespace may already deny setgroups; "
                               "use --setgroups deny")


# --- inside the namespace --------------------------------------------------------

def _loopback_up() -> None:
    try:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="lo")
            if not idx:
                raise LaunchError("the new network namespace has no 'lo' interface")
            ipr.link("set", index=idx[0], state="up")
    except LaunchError:
        raise
    except Exception as e:      # pyroute2 raises its own NetlinkError family
        raise LaunchError(f"cannot bring up lo in the new network namespace: {e}",
                          hint="run with --verbose; check that netlink is allowed") from None


def setup_namespaces(opts: LaunchOptions) -> None:
    """Privileged set-up of the new namespaces, while this process still holds its
    capabilities there (the id switch may drop them)."""
    if not (opts.mount or opts.mount_proc or opts.net or opts.hostname is not None):
        return
    if opts.mount or opts.mount_proc:
        try:
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        except OSError as e:
            raise LaunchError(f"cannot make / private in the new mount namespace: "
                              f"{e.strerror}") from None
    if opts.net:
        _loopback_up()
    if opts.hostname is not None:
        try:
            syscalls.sethostname(opts.hostname)
        except OSError as e:
            raise LaunchError(f"cannot set hostname {opts.hostname!r}: {e.strerror}") from None


def _mount_proc() -> None:
    try:
        syscalls.mount("proc", "/proc", "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as e:
        raise LaunchError(f"cannot mount a new /proc: {e.strerror}",
                          hint="--mount-proc needs --mount (implied) and, for a private "
                               "view, --pid") from None


def switch_ids(plan: Plan) -> None:
    """setgroups (only when allowed), then setresgid, then setresuid, to the container ids."""
    g, u = plan.user_gid, plan.user_uid
    if g is not None:
        if plan.setgroups == "allow":
            try:
                os.setgroups(list(plan.groups))
            except OSError as e:
                raise LaunchError(f"setgroups({list(plan.groups)}) failed: {e.strerror}",
                                  hint="every --group-add id must be mapped") from None
        try:
            os.setresgid(g, g, g)
        except OSError as e:
            raise LaunchError(f"cannot switch to container gid {g}: {e.strerror}",
                              hint="the gid must be mapped; see --dry-run") from None
    if u is not None:
        try:
            os.setresuid(u, u, u)
        except OSError as e:
            raise LaunchError(f"cannot switch to container uid {u}: {e.strerror}",
                              hint="the uid must be mapped; see --dry-run") from None


def _restore_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an exec'd command must get the defaults
    (as subprocess does), or pipelines like ``yes | head`` never end."""
    for sig in (_signal.SIGPIPE, getattr(_signal, "SIGXFSZ", None)):
        if sig is not None:
            _signal.signal(sig, _signal.SIG_DFL)


def exec_command(path: str, argv: Sequence[str], env: Mapping[str, str],
                 keep_fds: Sequence[int], hold_fds: Sequence[int] = ()) -> NoReturn:
    """Exec with only 0-2 and ``keep_fds`` inherited; ``hold_fds`` stay open until the
    exec itself (close-on-exec), e.g. a report pipe whose EOF tells success."""
    for fd in keep_fds:
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    _restore_signals()
    # No flush of sys.stdout here: after a fork in a threaded caller (the API) its
    # lock may be held by a thread that no longer exists. Callers flush before fork.
    syscalls.close_fds_except(set(keep_fds) | set(hold_fds))
    try:
        os.execve(path, list(argv), env)
    except OSError as e:
        from .diagnose import exec_error
        raise exec_error(e, argv[0], path) from None
    raise AssertionError("unreachable")


def become_and_exec(plan: Plan, opts: LaunchOptions, path: str, argv: Sequence[str],
                    env: Mapping[str, str], keep_fds: Sequence[int],
                    after_switch=None, hold_fds: Sequence[int] = ()) -> NoReturn:
    """The last steps in the process that becomes the command.

    Namespace set-up happens here, in the command's own process: with --pid that
    is PID 1 of the new namespace, so nothing that runs earlier (pyroute2 starts
    a subprocess at import on some versions) can become PID 1 and, by exiting,
    leave a namespace in which no process can be created any more.
    """
    setup_namespaces(opts)
    if opts.mount_proc:
        _mount_proc()
    switch_ids(plan)
    if after_switch is not None:
        after_switch()
    if opts.no_new_privs:
        syscalls.set_no_new_privs()
    exec_command(path, argv, env, keep_fds, hold_fds)


# --- wrapper mode (--pid, --fork) ------------------------------------------------

def fork_or_fail(what: str) -> int:
    """os.fork(), with a refusal turned into a one-line LaunchError."""
    try:
        return os.fork()
    except OSError as e:
        import errno
        why = e.strerror
        if e.errno == errno.ENOMEM:
            why += (" (inside a new PID namespace this means its first process has "
                    "already exited; otherwise memory or the pid limit is exhausted)")
        raise LaunchError(f"cannot start {what}: {why}",
                          hint="check ulimit -u and free memory") from None


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def child_fail(err: BaseException, report_fd: int | None = None) -> NoReturn:
    """In a forked process: report and leave without running the parent's cleanup."""
    if not isinstance(err, IdrunError):
        err = LaunchError(f"internal error: {type(err).__name__}: {err}")
    status = err.exit_status
    try:
        if report_fd is not None:
            os.write(report_fd, b"E" + f"{status}\0{err.message}\0{err.hint or ''}".encode())
        else:           # the same one line the CLI prints for any IdrunError
            os.write(2, f"idrun: error: {err}\n".encode())
    finally:
        os._exit(status)


def _parent_gone(alive_r: int, parent: int, in_pidns: bool) -> bool:
    """The wrapper's liveness: getppid() where it means something (outside a new PID
    namespace, where it reads 0), and EOF on a pipe only the wrapper holds open."""
    if not in_pidns and os.getppid() != parent:
        return True
    os.set_blocking(alive_r, False)
    try:
        return os.read(alive_r, 1) == b""
    except BlockingIOError:
        return False


def run_wrapped(plan: Plan, opts: LaunchOptions, path: str, argv: Sequence[str],
                env: Mapping[str, str], keep_fds: Sequence[int],
                report_fd: int | None = None, reraise: bool = False) -> NoReturn:
    """Fork the command's process and stay as its wrapper: forward signals, reap it,
    exit with its status (128+N for signal N; with ``reraise``, die of N instead)."""
    wrapper = os.getpid()
    old_mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED_SIGNALS)
    alive_r, alive_w = os.pipe()
    _flush_std()
    child = fork_or_fail("the command's process")
    if child == 0:
        try:
            os.close(alive_w)
            syscalls.set_pdeathsig(SIGKILL)
            if _parent_gone(alive_r, wrapper, opts.pid):
                os._exit(EXIT_IDRUN)

            def rearm() -> None:
                # Any change of effective ids clears PDEATHSIG: set it again, and
                # look once more whether the wrapper died in between.
                syscalls.set_pdeathsig(SIGKILL)
                if _parent_gone(alive_r, wrapper, opts.pid):
                    os._exit(EXIT_IDRUN)
                # Signals queued for us while blocked are the command's to handle;
                # Python's own SIGINT handler must not turn them into an exception.
                if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
                    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
                _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)

            become_and_exec(plan, opts, path, argv, env, keep_fds, after_switch=rearm,
                            hold_fds=() if report_fd is None else (report_fd,))
        except BaseException as e:          # noqa: BLE001 - a forked child must not return
            child_fail(e, report_fd)
    # The wrapper.
    os.close(alive_r)
    if report_fd is not None:
        os.close(report_fd)     # the child reports; EOF reaches the caller at its exec
    syscalls.close_fds_except(set(keep_fds) | {alive_w})

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, forward)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, old_mask)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(EXIT_IDRUN)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        if reraise:
            _die_of(-code)
        code = 128 - code
    os._exit(code)


def _die_of(sig: int) -> None:
    """End this process with the same signal, so its parent sees what happened."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # no core from the wrapper
    except (ImportError, OSError, ValueError):
        pass
    for s in FORWARDED_SIGNALS:
        _signal.signal(s, _signal.SIG_DFL)
    _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (sig,))
    os.kill(os.getpid(), sig)


# --- the CLI path ----------------------------------------------------------------

_native: object = None
_native_checked = False


def native():
    """idrun._clonespawn (vfork-class children) when built, else None.

    IDRUN_SPAWN=fork forces the pure-Python paths (the tests cover both)."""
    global _native, _native_checked
    if not _native_checked:
        _native_checked = True
        if os.environ.get("IDRUN_SPAWN") != "fork":
            try:
                from . import _clonespawn
                _native = _clonespawn if getattr(_clonespawn, "AVAILABLE", 0) else None
            except ImportError:
                _native = None
    return _native


class _Writer:
    """The map writer: a child created in the parent namespace before unshare.

    For direct (root) writes it is the native CLONE_VM writer of _clonespawn when
    built: no copy of the interpreter to make and tear down. Otherwise, and for
    newuidmap/newgidmap, a forked Python process (``_writer_main``).
    """

    def __init__(self, plan: Plan, opts: LaunchOptions, helpers: dict) -> None:
        launcher = os.getpid()
        go_r, self.go_w = os.pipe()
        self.report_r, report_w = os.pipe()
        self.handle = None          # the native writer's memory, kept until it is reaped
        self.reaped = False
        mod = None if helpers else native()
        if mod is not None:
            writes = [(k.kind + "_map", k.text) for k in (plan.uid, plan.gid)
                      if k.writer == WRITER_DIRECT]
            try:
                self.pid, self.handle = mod.writer(
                    f"/proc/{launcher}".encode(), launcher, go_r, report_w,
                    [self.go_w, self.report_r], [(n.encode(), d.encode()) for n, d in writes])
            except BaseException:
                for fd in (go_r, self.go_w, self.report_r, report_w):
                    os.close(fd)
                raise
            self.decode = _native_writer_decoder(launcher, writes)
        else:
            _flush_std()
            try:
                self.pid = fork_or_fail("the map writer")
            except BaseException:
                for fd in (go_r, self.go_w, self.report_r, report_w):
                    os.close(fd)
                raise
            if self.pid == 0:
                try:
                    os.close(self.go_w)
                    os.close(self.report_r)
                    _writer_main(plan, opts, helpers, launcher, go_r, report_w)
                except BaseException as e:      # noqa: BLE001
                    child_fail(e, report_w)
            self.decode = decode_report
        os.close(go_r)
        os.close(report_w)

    def go(self) -> None:
        os.write(self.go_w, b"g")
        os.close(self.go_w)
        self.go_w = -1

    def finish(self) -> None:
        """Wait until the writer is done with the maps. Its success is only known
        for sure from its exit status, which ``reap`` checks before the exec; the
        writer closes the report pipe before exiting so that its exit (tearing down
        a copy of this process's page tables) overlaps with our read-back."""
        report = b""
        while True:
            chunk = os.read(self.report_r, 4096)
            if not chunk:
                break
            report += chunk
        os.close(self.report_r)
        self.report_r = -1
        if report:
            self.reap(check=False)
            raise self.decode(report)

    def reap(self, check: bool = True) -> None:
        if self.reaped:
            return
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        self.handle = None
        if check and status != 0:
            code = os.waitstatus_to_exitcode(status)
            how = f"exit {code}" if code >= 0 else f"signal {-code}"
            raise LaunchError(f"the map writer process failed ({how}); refusing to run "
                              "the command")

    def abort(self) -> None:
        """EOF on *go* makes the writer quit; reap it either way."""
        if self.go_w >= 0:
            os.close(self.go_w)
            self.go_w = -1
        if self.report_r >= 0:
            os.close(self.report_r)
            self.report_r = -1
        if not self.reaped:
            os.waitpid(self.pid, 0)
            self.reaped = True
            self.handle = None


def _writer_main(plan: Plan, opts: LaunchOptions, helpers: dict, launcher: int,
                 go_r: int, report_w: int) -> NoReturn:
    syscalls.set_pdeathsig(SIGKILL)
    if os.getppid() != launcher:         # the launcher died before PDEATHSIG was armed
        os._exit(0)
    procfd = os.open(f"/proc/{launcher}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fd_target = None
    if helpers:
        from . import newidmap
        # Probe while the launcher unshares, off its critical path.
        fd_target = all(newidmap.supports_fd_target(h.path) for h in helpers.values())
    if os.read(go_r, 1) != b"g":         # EOF: the launcher gave up
        os._exit(0)
    write_maps(plan, procfd, launcher, helpers, opts.verbose, fd_target)
    os.close(report_w)                  # EOF now, not after this process's teardown
    os._exit(0)


def split_native_report(report: bytes, who: str) -> tuple[str, OSError] | IdrunError:
    """A native child's failure report: ``E``, one stage byte, the errno (u32 LE)."""
    if len(report) < 6 or report[:1] != b"E":
        return LaunchError(f"unexpected report from {who}: {report[:40]!r}")
    err = int.from_bytes(report[2:6], "little")
    return chr(report[1]), OSError(err, os.strerror(err))


def _native_writer_decoder(launcher: int, writes: list[tuple[str, str]]):
    def decode(report: bytes) -> IdrunError:
        parts = split_native_report(report, "the map writer")
        if isinstance(parts, IdrunError):
            return parts
        stage, exc = parts
        if stage.isdigit() and int(stage) < len(writes):
            from .diagnose import write_error
            name, data = writes[int(stage)]
            return write_error(exc, f"/proc/{launcher}/{name}", data)
        return LaunchError(f"the map writer cannot open /proc/{launcher}: {exc.strerror}")
    return decode


def decode_report(report: bytes) -> IdrunError:
    if not report.startswith(b"E"):
        return LaunchError(f"unexpected report from a launch process: {report[:80]!r}")
    status_s, _, rest = report[1:].decode("utf-8", "replace").partition("\0")
    msg, _, hint = rest.partition("\0")
    status = int(status_s) if status_s.isdigit() else EXIT_IDRUN
    cls = {127: CommandNotFound, 126: CommandNotExecutable}.get(status, LaunchError)
    return cls(msg, hint=hint or None)


def exec_plan(plan: Plan, argv: Sequence[str], opts: LaunchOptions = LaunchOptions()
              ) -> NoReturn:
    """Carry out ``plan`` and become ``argv`` (default: the user's shell).

    Raises IdrunError (exit 125/126/127) on any failure; the command never runs then.
    """
    argv = list(argv) or [default_shell()]
    env = os.environ
    path = find_command(argv[0], env)
    _ensure_stdio()
    keep = tuple(range(3, 3 + opts.preserve_fds))
    flags = opts.ns_flags | (syscalls.CLONE_NEWUSER if plan.userns else 0)
    status = procfs.status()
    helpers = prepare_helpers(plan, opts, status)
    if flags & syscalls.CLONE_NEWUSER:
        _check_single_thread(status)

    writer = None
    if _uses(plan, WRITER_DIRECT) or _uses(plan, WRITER_HELPER):
        writer = _Writer(plan, opts, helpers)
    try:
        if flags:
            try:
                syscalls.unshare(flags)
            except OSError as e:
                from .diagnose import unshare_error
                raise unshare_error(e, flags) from None
        if plan.userns:
            write_setgroups_deny(plan)
            if writer is not None:
                writer.go()
                writer.finish()
            write_self_maps(plan)
            verify_maps(plan)
        if writer is not None:
            writer.reap()                # its exit status, before anything else runs
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if opts.wrapper:
        run_wrapped(plan, opts, path, argv, env, keep)
    _flush_std()
    become_and_exec(plan, opts, path, argv, env, keep)


