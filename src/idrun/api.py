"""Python API: ``idrun.run`` and ``idrun.spawn``, shaped like subprocess.run and Popen.

Same resolver and the same engine as the CLI (``engine.spawn``): the calling
process forks one child (through libc, without CPython's after-fork work, when
the caller has one thread: ``engine.owned``), the child unshares, the caller
writes its maps (as root directly, rootless through newuidmap/newgidmap) and the
child execs the command. No launcher binary is exec'd and no thread is started, so a loop of
launches costs little more than the command itself.

Results and exceptions are subprocess's own classes (CompletedProcess,
CalledProcessError, TimeoutExpired), so code written for subprocess keeps
working; idrun's own failures raise ``IdrunError`` subclasses (``CommandNotFound``
and ``CommandNotExecutable`` where subprocess would raise OSError).
"""
from __future__ import annotations

import os
import subprocess
from typing import IO, Any, Mapping, Sequence

from .errors import IdrunError
from .keywords import check_keywords, keywords_of
from .mapping.plan import Plan, Request
from .options import CAPS, HOST, LAUNCH, MOUNT, api_keywords, api_keywords_doc, options_for
from .system.leases import hand_over as hand_over_lease, release as release_lease

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL
CompletedProcess = subprocess.CompletedProcess
CalledProcessError = subprocess.CalledProcessError
TimeoutExpired = subprocess.TimeoutExpired

# The keywords spawn() and run() hand on, by where they go (options.OPTIONS).
_NS_OPTIONS = options_for(LAUNCH, CAPS)
_MOUNT_OPTIONS = options_for(MOUNT)
_HOST_OPTIONS = options_for(HOST)


def _values(v: str | Sequence[str] | None) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    return tuple(v)


def plan_for(uidmap: str | Sequence[str] | None = (), gidmap: str | Sequence[str] | None = (), *,
             userns: str | None = None, map_root_user: bool = False,
             map_current_user: bool = False, map_auto: bool = False,
             subuidname: str | None = None, subgidname: str | None = None,
             user: str | int | None = None, group_add: Sequence[str | int] = (),
             setgroups: str | None = None, rootless: bool | None = None,
             subuid_file: str | None = None, subgid_file: str | None = None) -> Plan:
    """Resolve a mapping exactly as ``idrun map`` / the launcher would."""
    from .engine.steps import LaunchOptions
    from .engine.prelaunch import prelaunch
    request = _request_of(uidmap, gidmap, userns=userns, map_root_user=map_root_user,
                          map_current_user=map_current_user, map_auto=map_auto,
                          subuidname=subuidname, subgidname=subgidname, user=user,
                          group_add=group_add, setgroups=setgroups)
    plan = prelaunch(request, LaunchOptions(), hold=False, rootless=rootless,
                     subuid_file=subuid_file, subgid_file=subgid_file).plan
    plan.require_target()
    return plan


def _request_of(uidmap: str | Sequence[str] | None = (),
                gidmap: str | Sequence[str] | None = (), *, userns: str | None = None,
                map_root_user: bool = False, map_current_user: bool = False,
                map_auto: bool = False, subuidname: str | None = None,
                subgidname: str | None = None, user: str | int | None = None,
                group_add: Sequence[str | int] = (), setgroups: str | None = None) -> Request:
    """The API's mapping keywords as the Request the CLI's options make."""
    return Request(uidmap=_values(uidmap), gidmap=_values(gidmap), userns=userns,
                   map_root_user=map_root_user, map_current_user=map_current_user,
                   map_auto=map_auto, subuidname=subuidname, subgidname=subgidname,
                   user=None if user is None else str(user),
                   group_add=tuple(str(g) for g in group_add), setgroups=setgroups)


def _spawn_options() -> frozenset[str]:
    """The options spawn() and run() accept besides their own parameters."""
    return frozenset(api_keywords())


def _fileno(spec: Any) -> int | None:
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    return spec.fileno()


class Process:
    """A command started by ``spawn``: the parts of subprocess.Popen people use."""

    def __init__(self, args: list[str], pid: int, stdin: IO | None, stdout: IO | None,
                 stderr: IO | None, text: bool, encoding: str | None, errors: str | None,
                 fds: dict[str, int] | None = None) -> None:
        self.args = args
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._text = text
        self._encoding = encoding or "utf-8"
        self._errors = errors or "strict"
        # Output read so far, per descriptor: communicate() may be retried after a
        # timeout, as with subprocess, without losing what already arrived.
        self._pending: dict[int, list[bytes]] = {}
        self._input_sent = 0
        self._fds = fds or {}

    def __repr__(self) -> str:
        return f"<idrun.Process pid={self.pid} returncode={self.returncode} args={self.args!r}>"

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        try:
            if self.stdin is not None:
                self.stdin.close()
        finally:
            self.wait()

    def _set_status(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        """The exit status if the command has ended (negative -N for signal N), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0 if self.returncode is None else self.returncode
                return self.returncode
            if pid:
                self._set_status(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command and return its exit status; TimeoutExpired after ``timeout``."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None:
            # A pidfd becomes readable when the process exits: an exact timeout
            # without polling loops or threads.
            import select
            fd = os.pidfd_open(self.pid)
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                if not poller.poll(max(0.0, timeout) * 1000):
                    raise TimeoutExpired(self.args, timeout)
            finally:
                os.close(fd)
        _, status = os.waitpid(self.pid, 0)
        self._set_status(status)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the command (nothing once it has been reaped)."""
        # Only while unreaped: after waitpid the pid may belong to someone else.
        if self.returncode is None and self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        """Send SIGTERM."""
        import signal
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        import signal
        self.send_signal(signal.SIGKILL)

    def _decode(self, data: bytes | None) -> Any:
        if data is None or not self._text:
            return data
        text = data.decode(self._encoding, self._errors)
        return text.replace("\r\n", "\n").replace("\r", "\n")

    def communicate(self, input: bytes | str | None = None, timeout: float | None = None
                    ) -> tuple[Any, Any]:
        """Send ``input``, read stdout/stderr to EOF, wait; like Popen.communicate."""
        import select
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        if isinstance(input, str):
            input = input.encode(self._encoding, self._errors)
        readers = {self._fds[n]: f for n, f in (("stdout", self.stdout), ("stderr", self.stderr))
                   if f is not None and not f.closed}
        for fd in readers:
            self._pending.setdefault(fd, [])
        writer = self.stdin if self.stdin is not None and not self.stdin.closed else None
        if writer is not None:
            try:
                writer.flush()
            except BrokenPipeError:
                pass
            if not input:
                writer.close()
                writer = None
        poller = select.poll()
        for fd in readers:
            poller.register(fd, select.POLLIN)
        if writer is not None:
            poller.register(writer.fileno(), select.POLLOUT)
        while readers or writer is not None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutExpired(self.args, timeout,
                                     output=self._partial("stdout"),
                                     stderr=self._partial("stderr"))
            events = poller.poll(None if remaining is None else remaining * 1000)
            for fd, ev in events:
                if writer is not None and fd == writer.fileno():
                    assert input is not None
                    chunk = input[self._input_sent:self._input_sent + 65536]
                    try:
                        self._input_sent += os.write(fd, chunk)
                    except BrokenPipeError:
                        self._input_sent = len(input)
                    if self._input_sent >= len(input):
                        poller.unregister(fd)
                        writer.close()
                        writer = None
                elif fd in readers:
                    data = os.read(fd, 65536)
                    if data:
                        self._pending[fd].append(data)
                    else:
                        poller.unregister(fd)
                        readers.pop(fd).close()
        out = self._collect("stdout")
        err = self._collect("stderr")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(remaining)
        return out, err

    def _partial(self, name: str) -> bytes | None:
        fd = self._fds.get(name)
        return None if fd is None else b"".join(self._pending.get(fd, []))

    def _collect(self, name: str) -> Any:
        fd = self._fds.get(name)
        if fd is None:
            return None
        return self._decode(b"".join(self._pending.pop(fd, [])))


def spawn(argv: Sequence[str], uidmap: str | Sequence[str] | None = (),
          gidmap: str | Sequence[str] | None = (), *,
          stdin: Any = None, stdout: Any = None, stderr: Any = None,
          env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
          pass_fds: Sequence[int] = (), text: bool = False, encoding: str | None = None,
          errors: str | None = None, universal_newlines: bool | None = None,
          **options: Any) -> Process:
    """Start ``argv`` in a new user namespace; returns a Popen-like ``Process``.

    @KEYWORDS@

    Bad arguments raise ValueError/TypeError/OSError as subprocess does; IdrunError if
    nothing could be started. Either way nothing is left running.
    """
    check_keywords("spawn", options, _spawn_options())
    from .engine import run as engine
    from .engine.spec import build_spec
    from .engine import owned
    from .options import launch_options
    from .engine.prelaunch import prelaunch
    ns_kw = {k: options.pop(k) for k in list(options) if k in _NS_OPTIONS}
    for k in options_for(CAPS):
        if k in ns_kw:
            ns_kw[k] = _values(ns_kw[k])
    opts = launch_options(**ns_kw)
    mount_kw = {k: options.pop(k) for k in list(options) if k in _MOUNT_OPTIONS}
    mounts = None
    # An empty rootfs/workdir is refused by the parser (as the CLI's), not dropped.
    if (mount_kw.get("volumes") or mount_kw.get("tmpfs") or mount_kw.get("rootfs") is not None
            or mount_kw.get("workdir") is not None):
        from .mapping.volumes import MountRequest
        workdir = mount_kw.get("workdir")
        if cwd is not None:
            # With mounts, cwd is the workdir: applied after the volumes and the pivot,
            # so it names a directory of the new tree, not the one they cover.
            cwd = os.fspath(cwd)
            if isinstance(cwd, bytes):
                cwd = os.fsdecode(cwd)
            if workdir is not None and os.fspath(workdir) != cwd:
                raise ValueError("cwd and workdir name different directories; give one")
            if not cwd.startswith("/"):
                raise ValueError("cwd must be an absolute path when volumes, tmpfs, rootfs "
                                 "or workdir are given")
            workdir, cwd = cwd, None
        mounts = MountRequest(_values(mount_kw.get("volumes")), _values(mount_kw.get("tmpfs")),
                              None if mount_kw.get("rootfs") is None
                              else os.fspath(mount_kw["rootfs"]), workdir)
    host_kw = {k: options.pop(k) for k in _HOST_OPTIONS if k in options}
    # --userns=auto: this process owns the lease until the child exists (hand_over below).
    pre = prelaunch(_request_of(uidmap, gidmap, **options), opts, mounts, hold=True, **host_kw)
    plan, lease, opts = pre.plan, pre.lease, pre.opts
    try:
        text = bool(text or universal_newlines or encoding or errors)
        std_specs = (stdin, stdout, stderr)
        for spec in std_specs:          # as subprocess: only these kinds of value
            if not (spec is None or spec in (PIPE, DEVNULL, STDOUT) or isinstance(spec, int)
                    or hasattr(spec, "fileno")):
                raise TypeError(f"bad stdio value {spec!r}")
        checked = build_spec(plan, argv, opts, env=env, cwd=cwd,
                                    stdio=[s if isinstance(s, int) and s >= 0 else None
                                           for s in std_specs], pass_fds=pass_fds)
        own = owned.Owned()
        try:
            parent_ends: list[tuple[str, int]] = []
            child_fds: list[int | None] = [None, None, None]
            child_ends: list[int] = []
            for i, spec in enumerate(std_specs):
                if spec == PIPE:
                    r, w = own.pipe()
                    if i == 0:
                        child_fds[0] = r
                        parent_ends.append(("stdin", w))
                        child_ends.append(r)
                    else:
                        child_fds[i] = w
                        parent_ends.append(("stdout" if i == 1 else "stderr", r))
                        child_ends.append(w)
                elif spec == DEVNULL:
                    fd = own.adopt_fd(lambda: os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                    child_fds[i] = fd
                    child_ends.append(fd)
                elif spec == STDOUT and i == 2:
                    child_fds[2] = child_fds[1] if child_fds[1] is not None else 1
                else:
                    child_fds[i] = _fileno(spec)
            child = engine.spawn(checked._replace(stdio=tuple(child_fds)), own)
            lease = hand_over_lease(lease, child.pid)
            for fd in child_ends:
                own.close(fd)
            files: dict[str, IO] = {}
            for name, fd in parent_ends:
                files[name] = own.give_away(fd, lambda fd, name=name: open(
                    fd, "wb" if name == "stdin" else "rb", buffering=-1 if name == "stdin" else 0))
            proc = Process([os.fsdecode(a) for a in checked.argv], child.pid, files.get("stdin"),
                           files.get("stdout"), files.get("stderr"), text, encoding, errors,
                           fds=dict(parent_ends))
            if opts.mounts is not None:
                opts.mounts.release()   # the caller's copies of the trees; the child has its own
        except BaseException:
            # Up to the last statement: a signal handler that raises anywhere in here
            # (even after the exec, or on the way into release()) leaves no process
            # and no descriptor behind.
            own.abort()
            raise
    except BaseException:
        release_lease(lease)        # a no-op once handed over: the dead child owns it
        if opts.mounts is not None:
            opts.mounts.release()
        raise
    return proc


if spawn.__doc__:           # not under python -OO
    spawn.__doc__ = spawn.__doc__.replace("@KEYWORDS@", api_keywords_doc(
        "The others as the CLI's options; capabilities are named as for --cap-add and "
        "--cap-drop, in a string or a list.").replace("\n", "\n    "))


def run(argv: Sequence[str], uidmap: str | Sequence[str] | None = (),
        gidmap: str | Sequence[str] | None = (), *, input: bytes | str | None = None,
        capture_output: bool = False, timeout: float | None = None, check: bool = False,
        **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``argv`` in a new user namespace and wait; like subprocess.run.

    Returns subprocess.CompletedProcess (returncode negative for death by a
    signal, as subprocess reports it); ``check=True`` raises CalledProcessError,
    ``timeout`` kills the command and raises TimeoutExpired.
    """
    check_keywords("run", kwargs, _spawn_options() | keywords_of(spawn))
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used")
        kwargs["stdin"] = PIPE
    proc = spawn(argv, uidmap, gidmap, **kwargs)
    with proc:
        if proc.stdin is None and proc.stdout is None and proc.stderr is None:
            # Nothing to pump: no poll loop, just wait.
            try:
                proc.wait(timeout)
            except TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            out = err = None
        else:
            try:
                out, err = proc.communicate(input, timeout)
            except TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                exc.output = proc._decode(exc.output)
                exc.stderr = proc._decode(exc.stderr)
                raise
            except BaseException:
                proc.kill()
                raise
        rc = proc.wait()
    if check and rc:
        raise CalledProcessError(rc, proc.args, out, err)
    return CompletedProcess(proc.args, rc, out, err)


__all__ = ["run", "spawn", "plan_for", "Process", "PIPE", "STDOUT", "DEVNULL", "IdrunError",
           "CompletedProcess", "CalledProcessError", "TimeoutExpired"]
