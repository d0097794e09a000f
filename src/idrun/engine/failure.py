"""A failed launch step, from where it happened to the user's one line.

Every process of a launch reports a failure the same way: ``StepFailed`` (a named
stage, an errno, a short detail) raised by ``step``; a forked process sends it to
its parent as ``encode`` writes it, the parent reads it back with ``decode``; and
``explain`` turns stage, errno and detail into the one line the user sees, the same
for the CLI and the API whether the step ran in this process or in a forked one.
The stage table (``STAGES``, ``_MESSAGES``) is the one list of what may fail.

The errno diagnoses that need the host's state (sysctls, threads, the path) are
``diagnose``'s, loaded only when something has already failed.
"""

import errno
import os
from ..hints import TYPE_CHECKING, Any, Callable

from ..errors import (EXIT_IDRUN, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, CommandNotExecutable,
                      CommandNotFound, IdrunError, LaunchError)

if TYPE_CHECKING:      # annotations only: spec imports steps, which import this module
    from .spec import Spec

# The two bytes of the handshake between a namespace process and its map side.
READY = b"U"        # namespace side: unshared, own maps written; the map side may write
GO = b"g"           # map side: maps written and read back; carry on


class Stage:
    """The namespace-side steps by name; the name is what a failure report carries."""

    UNSHARE = "unshare"
    DENY_SETGROUPS = "deny-setgroups"     # /proc/self/setgroups, before an own gid map
    OWN_UID_MAP = "own-uid-map"
    OWN_GID_MAP = "own-gid-map"
    CHDIR = "chdir"
    STDIO = "stdio"
    PASS_FD = "pass-fd"
    PRIVATE_ROOT = "private-root"
    LOOPBACK = "loopback"
    HOSTNAME = "hostname"
    MOUNT_PROC = "mount-proc"
    SETGROUPS = "setgroups"
    SETRESGID = "setresgid"
    SETRESUID = "setresuid"
    NO_NEW_PRIVS = "no-new-privs"
    PARENT_DEATH = "parent-death"
    FORK = "fork"
    EXEC = "exec"
    OWN_ERROR = "idrun-error"           # an IdrunError raised in a forked process
    INTERNAL = "internal"                 # anything else raised there


# What each stage was doing, for a failure no message below covers.
STAGES = {
    Stage.UNSHARE: "unshare", Stage.DENY_SETGROUPS: "writing /proc/self/setgroups",
    Stage.OWN_UID_MAP: "writing /proc/self/uid_map",
    Stage.OWN_GID_MAP: "writing /proc/self/gid_map", Stage.CHDIR: "changing directory",
    Stage.STDIO: "setting up the command's stdin/stdout/stderr",
    Stage.PASS_FD: "passing a file descriptor on",
    Stage.PRIVATE_ROOT: "making / private in the new mount namespace",
    Stage.LOOPBACK: "bringing up lo", Stage.HOSTNAME: "setting the hostname",
    Stage.MOUNT_PROC: "mounting a new /proc", Stage.SETGROUPS: "setgroups",
    Stage.SETRESGID: "switching gid", Stage.SETRESUID: "switching uid",
    Stage.NO_NEW_PRIVS: "setting no_new_privs",
    Stage.PARENT_DEATH: "arming the parent-death signal", Stage.FORK: "starting a process",
    Stage.EXEC: "exec", Stage.OWN_ERROR: "an idrun error",
    Stage.INTERNAL: "an internal error",
}

# Stages whose line is "what: strerror; hint", with facts of the launch filled in.
_MESSAGES = {
    Stage.CHDIR: ("cannot change to directory {cwd}",
                  "give an existing directory the container user may enter"),
    Stage.PRIVATE_ROOT: ("cannot make / private in the new mount namespace", None),
    Stage.MOUNT_PROC: ("cannot mount a new /proc", "--mount-proc needs --pid"),
    Stage.HOSTNAME: ("cannot set hostname {hostname!r}", "at most 64 bytes"),
    Stage.SETGROUPS: ("setgroups({groups}) failed", "every --group-add id must be mapped"),
    Stage.SETRESGID: ("cannot switch to container gid {gid}",
                      "the gid must be mapped; see --dry-run"),
    Stage.SETRESUID: ("cannot switch to container uid {uid}",
                      "the uid must be mapped; see --dry-run"),
    Stage.PARENT_DEATH: ("the parent process died before the command started",
                         "--die-with-parent ends the launch with its parent"),
}


class StepFailed(Exception):
    """A namespace-side step failed: its ``stage`` (a ``Stage`` name), the errno (0 when
    none) and a short detail. Never shown as such: always explained."""

    def __init__(self, stage: str, errno: int = 0, detail: str = "") -> None:
        super().__init__(stage, errno, detail)
        self.stage = stage
        self.errno = errno
        self.detail = detail


def step(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, an OSError from it raised as StepFailed of ``stage``."""
    try:
        return fn(*args)
    except OSError as e:
        raise StepFailed(stage, e.errno or 0) from None


# --- the report a forked process sends -------------------------------------------

def encode(exc: BaseException) -> tuple[bytes, int]:
    """A failure as ``E``, the stage name, NUL, errno (u32 LE), detail; and the exit
    status the failed process uses."""
    status = EXIT_IDRUN
    if isinstance(exc, StepFailed):
        stage, err, detail = exc.stage, exc.errno, exc.detail
        if stage == Stage.EXEC:
            status = EXIT_NOT_FOUND if err == errno.ENOENT else EXIT_NOT_EXECUTABLE
    elif isinstance(exc, IdrunError):
        stage, err, detail = Stage.OWN_ERROR, exc.exit_status, \
            f"{exc.message}\0{exc.hint or ''}"
        status = exc.exit_status
    else:
        stage, err, detail = Stage.INTERNAL, 0, f"{type(exc).__name__}: {exc}"
    return (b"E" + stage.encode() + b"\0" + (err & 0xFFFFFFFF).to_bytes(4, "little")
            + detail.encode("utf-8", "replace")), status


def decode(report: bytes, spec: "Spec | None") -> IdrunError:
    """The user's line for a report ``encode`` wrote."""
    stage, nul, rest = report[1:].partition(b"\0")
    if report[:1] != b"E" or not nul or len(rest) < 4:
        return LaunchError(f"unexpected report from a launch process: {report[:40]!r}")
    return explain(stage.decode("ascii", "replace"), int.from_bytes(rest[:4], "little"),
                   rest[4:].decode("utf-8", "replace"), spec)


def explained(exc: StepFailed, spec: "Spec | None") -> IdrunError:
    return explain(exc.stage, exc.errno, exc.detail, spec)


def explain(stage: str, err: int, detail: str, spec: "Spec | None") -> IdrunError:
    """The one table from a failed step (stage, errno, detail) to the user's line.

    ``spec`` is the launch's ``engine.spec.Spec``: the parent has it too, so a report from
    a forked process is explained exactly as the same failure in this process."""
    e = OSError(err, os.strerror(err)) if err else OSError(0, detail or "failed")
    if stage == Stage.OWN_ERROR:
        msg, _, hint = detail.partition("\0")
        cls = {EXIT_NOT_FOUND: CommandNotFound,
               EXIT_NOT_EXECUTABLE: CommandNotExecutable}.get(err, LaunchError)
        return cls(msg, hint=hint or None)
    if stage == Stage.FORK:
        why = e.strerror
        if err == errno.ENOMEM:
            why += (" (inside a new PID namespace this means its first process has "
                    "already exited; otherwise memory or the pid limit is exhausted)")
        return LaunchError(f"cannot start {detail or 'a process'}: {why}",
                           hint="check ulimit -u and free memory")
    if stage == Stage.INTERNAL or spec is None:
        return LaunchError(f"internal error: {detail or stage}")
    from ..system import diagnose
    plan, opts = spec.plan, spec.opts
    if stage == Stage.UNSHARE:
        return diagnose.unshare_error(e, spec.flags)
    if stage == Stage.DENY_SETGROUPS:
        return diagnose.write_error(e, "/proc/self/setgroups", "deny")
    if stage in (Stage.OWN_UID_MAP, Stage.OWN_GID_MAP):
        k = plan.uid if stage == Stage.OWN_UID_MAP else plan.gid
        return diagnose.write_error(e, f"/proc/self/{k.kind}_map", k.text)
    if stage == Stage.EXEC:
        return diagnose.exec_error(e, spec.argv[0], spec.path)
    if stage == Stage.LOOPBACK:
        return LaunchError(f"cannot bring up lo in the new network namespace: "
                           f"{detail or e.strerror}",
                           hint="run with --verbose; check that netlink is allowed")
    if stage in _MESSAGES:
        what, hint = _MESSAGES[stage]
        facts = {"cwd": spec.cwd, "hostname": opts.hostname, "groups": list(plan.groups),
                 "gid": plan.user_gid, "uid": plan.user_uid}
        return LaunchError(f"{what.format(**facts)}: {e.strerror}", hint=hint)
    return LaunchError(f"{STAGES.get(stage, f'launch step {stage!r}')} failed: {e.strerror}")
