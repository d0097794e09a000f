"""The steps of a launch, each done once, whichever process runs it.

``engine`` decides which process runs which step (the CLI launcher, its map
writer, the API's child, the PID-1 init); this module holds the steps
themselves: finding the command, writing and checking the maps, setting up the
new namespaces, switching ids and exec'ing.

A step that fails in the namespace process raises ``failure.StepFailed`` (a named
stage and an errno, like CPython's ``_posixsubprocess``); ``failure.explain`` turns
it into the user's one line, the same for the CLI and the API whether the step ran
in this process or in a forked one. Map-side steps (``write_maps``,
``verify_maps``) raise ``IdrunError`` directly: their explanations need the
helper's output, which no errno carries.
"""

import os
import sys
from ..hints import Mapping, NoReturn, Sequence

# _signal (the C core of ``signal``) avoids ~0.7 ms of enum set-up per launch.
import _signal

from ..system import procfs, syscalls
from ..errors import CommandNotExecutable, CommandNotFound, LaunchError
from .failure import Stage, StepFailed, step
from ..options import LaunchOptions     # defined with the option table
from ..mapping.plan import WRITER_DIRECT, WRITER_HELPER, WRITER_SELF, KindPlan, Plan
from ..mapping.ranges import IdMap, render

SIGKILL = 9
# podman --sig-proxy forwards everything catchable; the brief fixes this set.
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
                     _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH)




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
                 cwd: str | None = None, root: str | None = None) -> str:
    """Resolve the command like execvp would, so 127/126 come before anything starts.

    With ``root`` (--rootfs) the search is in that tree and the path returned is the
    one inside it; symlinks there may point anywhere in it, so only their presence is
    checked and the exec itself reports the rest."""
    if not name:
        raise CommandNotFound("empty command name", hint="give a command after --")
    if root is not None:
        dirs = [""] if "/" in name else os.get_exec_path(env)
        for d in dirs:
            inside = os.path.join("/", d, name)
            if os.path.lexists(os.path.join(root, inside.lstrip("/"))):
                return inside
        raise CommandNotFound(f"{name}: not found in the root filesystem {root}",
                              hint="check the name or give a full path inside it")
    if "/" in name:
        path = name if cwd is None else os.path.join(cwd, name)
        if not os.path.exists(path):
            raise CommandNotFound(f"{name}: no such file", hint="check the path")
        if os.path.isdir(path):
            raise CommandNotExecutable(f"{name}: is a directory",
                                       hint="give the program to run, not a directory")
        if not os.access(path, os.X_OK):
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


def ensure_stdio() -> None:
    """Keep 0-2 occupied, so no pipe or descriptor of idrun lands there."""
    for fd in (0, 1, 2):
        try:
            os.get_inheritable(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def helper_kinds(plan: Plan, opts: LaunchOptions) -> dict[str, str | None]:
    """kind -> explicit helper path (or None) for each kind newuidmap/newgidmap writes."""
    if not plan.userns:
        return {}
    return {k.kind: (opts.newuidmap if k.kind == "uid" else opts.newgidmap)
            for k in (plan.uid, plan.gid) if k.writer == WRITER_HELPER}


def needs_map_side(plan: Plan) -> bool:
    """Whether a process in the parent namespace must write a map."""
    return plan.userns and any(k.writer in (WRITER_DIRECT, WRITER_HELPER)
                               for k in (plan.uid, plan.gid))


# --- the map side: writing and checking the maps from the parent namespace ------

def _write_file(path: str, data: str, dir_fd: int | None) -> None:
    """One open, one write() of the whole text, as the kernel demands."""
    raw = data.encode()
    with syscalls.SignalsBlocked():
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            n = os.write(fd, raw)
        finally:
            os.close(fd)
    if n != len(raw):
        raise OSError(5, f"short write ({n} of {len(raw)} bytes)")


def write_maps(plan: Plan, procfd: int, pid: int, helpers: dict,
               verbose: bool = False, fd_target: bool | None = None) -> None:
    """From the parent namespace: write the direct kinds, run the helper for the others.

    ``procfd`` is an open ``/proc/<pid>`` directory; every access goes through
    it, so a recycled pid can never be written to. newuidmap and newgidmap write
    different files and wait on nothing of each other: both run at once (as
    util-linux runs them), and a failure is reported for uid first, as before.
    """
    runs = []
    for k in (plan.uid, plan.gid):
        if k.writer == WRITER_DIRECT:
            try:
                _write_file(f"{k.kind}_map", k.text, procfd)
            except OSError as e:
                from ..system.diagnose import write_error
                raise write_error(e, f"/proc/{pid}/{k.kind}_map", k.text) from None
        elif k.writer == WRITER_HELPER:
            h = helpers[k.kind]
            from ..system import newidmap
            use_fd = newidmap.supports_fd_target(h.path) if fd_target is None else fd_target
            runs.append((h, f"fd:{procfd}" if use_fd else str(pid), k.helper_args(),
                         procfd if use_fd else None))
    if runs:
        _run_helpers(runs, verbose)


def _run_helpers(runs: list, verbose: bool) -> None:
    """Start every helper run, then collect them in order. Each stays recorded in
    ``started`` until it is reaped and its pipe closed, so an exception on the way (a
    failed start, a raising signal handler) kills and reaps those still running."""
    from ..system import newidmap
    started: list[tuple[int, int]] = []
    results = []
    try:
        for h, target, args, keep in runs:
            with syscalls.SignalsBlocked():     # started and recorded, or neither
                started.append(newidmap.start(h, target, args, keep))
        while started:
            pid, r = started[0]
            output = syscalls.read_all(r)
            with syscalls.SignalsBlocked():
                os.close(r)
                _, status = os.waitpid(pid, 0)
                started.pop(0)
            results.append((status, output.decode("utf-8", "replace")))
    except BaseException:
        with syscalls.SignalsBlocked():
            for pid, r in started:
                newidmap.abandon(pid, r)
            started.clear()
        raise
    for (h, target, args, _), (status, output) in zip(runs, results):
        newidmap.check(h, target, args, status, output, verbose=verbose)


def _expected(k: KindPlan) -> list:
    if k.writer not in (WRITER_DIRECT, WRITER_HELPER, WRITER_SELF):
        return []
    return sorted(k.lines, key=lambda ln: (ln.inside, ln.outside))


def read_back(dir_fd: int | None = None) -> tuple[str, str, str | None]:
    """The kernel's own text of uid_map and gid_map, and setgroups."""
    return (procfs.read_map_text("uid", dir_fd=dir_fd), procfs.read_map_text("gid", dir_fd=dir_fd),
            procfs.read_setgroups(dir_fd=dir_fd))


def verify_maps(plan: Plan, dir_fd: int | None = None) -> tuple[str, str, str | None]:
    """Read back what the kernel holds and compare it with the plan, line for line;
    returns what was read.

    With ``dir_fd`` (an open /proc/<pid> from the parent namespace) the outside
    ids read are those of the parent namespace, which is what the plan's lines
    are written in.
    """
    where = "/proc/self" if dir_fd is None else "the new namespace's"
    texts = read_back(dir_fd)
    for k, raw in ((plan.uid, texts[0]), (plan.gid, texts[1])):
        want = _expected(k)
        # Byte-exact against the kernel's own rendering; parse only to explain.
        if raw == procfs.kernel_text(want):
            continue
        got = sorted(IdMap.parse(raw), key=lambda ln: (ln.inside, ln.outside))
        if got != want:
            raise LaunchError(f"{where}/{k.kind}_map reads back as "
                              f"{render(got).strip()!r}, not the planned "
                              f"{render(want).strip()!r}; refusing to run the command",
                              hint="another process raced the map write, or a helper "
                                   "rewrote it; run with --verbose")
    sg = texts[2]
    if sg is not None and sg != plan.setgroups:
        raise LaunchError(f"{where}/setgroups reads {sg!r}, not the planned "
                          f"{plan.setgroups!r}; refusing to run the command",
                          hint="the parent namespace may already deny setgroups; "
                               "use --setgroups deny")
    return texts


# --- the namespace side ----------------------------------------------------------

def write_own_maps(plan: Plan) -> None:
    """Inside, right after unshare. setgroups 'deny' must precede gid_map, and this
    process holds every capability of its new namespace until the maps exist, so
    writing it here covers every writer (direct, newgidmap, self) the same way.
    Own-id lines: the namespace writes its own maps (the kernel's unprivileged rule)."""
    if not plan.userns:
        return
    if plan.setgroups == "deny":
        step(Stage.DENY_SETGROUPS, _write_file, "/proc/self/setgroups", "deny", None)
    for k in (plan.uid, plan.gid):
        if k.writer == WRITER_SELF:
            step(Stage.OWN_UID_MAP if k.kind == "uid" else Stage.OWN_GID_MAP, _write_file,
                 f"/proc/self/{k.kind}_map", k.text, None)


def _loopback_up() -> None:
    try:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname="lo")
            if not idx:
                raise StepFailed(Stage.LOOPBACK, 0,
                                 "the new network namespace has no 'lo' interface")
            ipr.link("set", index=idx[0], state="up")
    except StepFailed:
        raise
    except Exception as e:      # pyroute2 raises its own NetlinkError family
        raise StepFailed(Stage.LOOPBACK, 0, str(e)) from None


def setup_namespaces(opts: LaunchOptions) -> None:
    """Privileged set-up of the new namespaces, while this process still holds its
    capabilities there (the id switch may drop them). With --pid this runs in the
    init, PID 1 of the new namespace, so a fresh /proc shows that namespace."""
    if opts.ns_flags & syscalls.CLONE_NEWNS:
        step(Stage.PRIVATE_ROOT, syscalls.mount, None, "/", None,
             syscalls.MS_REC | syscalls.MS_PRIVATE)
    if opts.mounts is not None:
        from .mounts import attach
        attach(opts.mounts, fresh_proc=opts.pid)  # type: ignore[arg-type]
    if opts.net:
        _loopback_up()
    if opts.hostname is not None:
        step(Stage.HOSTNAME, syscalls.sethostname, opts.hostname)
    if opts.mount_proc and opts.rootfs is None:
        step(Stage.MOUNT_PROC, syscalls.mount, "proc", "/proc", "proc",
             syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def switch_ids(plan: Plan) -> None:
    """setgroups (only when allowed), then setresgid, then setresuid, to the container ids."""
    g, u = plan.user_gid, plan.user_uid
    if g is not None:
        # Without a user namespace (--userns=host --user, as root) the supplementary
        # groups are root's own unless replaced: always replaced there.
        if plan.setgroups == "allow" or not plan.userns:
            step(Stage.SETGROUPS, os.setgroups, list(plan.groups))
        step(Stage.SETRESGID, os.setresgid, g, g, g)
    if u is not None:
        step(Stage.SETRESUID, os.setresuid, u, u, u)


def arm_parent_death(parent: int) -> None:
    """PR_SET_PDEATHSIG(SIGKILL), then make sure the parent did not die before it was
    armed. Any change of effective ids clears it, so callers arm it again after
    switch_ids."""
    step(Stage.PARENT_DEATH, syscalls.set_pdeathsig, SIGKILL)
    if os.getppid() != parent:
        raise StepFailed(Stage.PARENT_DEATH, 0)


def prepare_process(plan: Plan, opts: LaunchOptions, parent: int | None) -> None:
    """Everything between the go and the exec (or the init's spawn): namespace set-up,
    the id switch, the parent-death signal again when one is in use, no_new_privs."""
    setup_namespaces(opts)
    if opts.caps is not None:
        from ..system import caps
        caps.apply_before_switch(opts.caps)
    switch_ids(plan)
    if opts.caps is not None:
        caps.apply_after_switch(opts.caps)
    if parent is not None:
        arm_parent_death(parent)
    if opts.no_new_privs:
        step(Stage.NO_NEW_PRIVS, syscalls.set_no_new_privs)


def restore_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an exec'd command must get the defaults
    (as subprocess does), or pipelines like ``yes | head`` never end."""
    for sig in (_signal.SIGPIPE, getattr(_signal, "SIGXFSZ", None)):
        if sig is not None:
            _signal.signal(sig, _signal.SIG_DFL)
    # exec resets caught signals anyway; doing it first means a signal that arrives
    # between unblocking and the exec acts on the command, not as a Python exception.
    if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)


def pass_fds(keep_fds: Sequence[int], hold_fds: Sequence[int] = ()) -> None:
    """Leave only 0-2, ``keep_fds`` (made inheritable) and ``hold_fds`` (close-on-exec,
    e.g. a report pipe whose EOF tells success) open."""
    for fd in keep_fds:
        step(Stage.PASS_FD, os.set_inheritable, fd, True)
    syscalls.close_fds_except(set(keep_fds) | set(hold_fds))


def exec_command(path: str, argv: Sequence[str], env: Mapping[str, str],
                 keep_fds: Sequence[int], mask: object,
                 hold_fds: Sequence[int] = ()) -> NoReturn:
    """Exec with only 0-2 and ``keep_fds`` inherited and the caller's signal mask."""
    pass_fds(keep_fds, hold_fds)
    restore_signals()
    # No flush of sys.stdout here: after a fork in a threaded caller (the API) its
    # lock may be held by a thread that no longer exists. Callers flush before fork.
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    step(Stage.EXEC, os.execve, path, list(argv), env)
    raise AssertionError("unreachable")


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
