"""The child spec: everything a launch needs, checked before any fork.
"""
import os
from ..hints import Mapping, NamedTuple, Sequence

from ..errors import CommandNotFound
from ..mapping.plan import Plan
from ..options import LaunchOptions
from ..system import syscalls
from . import steps


SI_KERNEL = 0x80        # si_code of a signal the kernel sent (a terminal's ^C), not kill(2)


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
    path = steps.find_command(name, env, None if cwd is None else os.fsdecode(cwd),
                               root=opts.rootfs)
    return Spec(plan, opts, path, args, env, None if cwd is None else os.fsdecode(cwd),
                (std + (None, None, None))[:3], keep)
