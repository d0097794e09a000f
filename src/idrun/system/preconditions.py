"""What must hold before a launch, judged once for ``idrun check`` and for every launch.

Each check returns a ``Check`` (OK/WARN/FAIL with a fix). ``require`` runs the ones
a given launch depends on and raises the first failure as a LaunchError, so
``idrun check`` can never call ready what a launch refuses, or the reverse.
Only cheap reads (the status dict the caller already has, one stat, sysctls on
failure paths) so the launch path stays fast.
"""
from __future__ import annotations

import os
import sys

from ..errors import IdrunError, LaunchError
from ..mapping.plan import HELPERS
from . import procfs

OK, WARN, FAIL = "OK", "WARN", "FAIL"


class Check:
    """One line of ``idrun check``: OK/WARN/FAIL, what was seen, and the fix. A plain
    class: this module is on every launch, where a NamedTuple costs more to define."""

    __slots__ = ("name", "status", "detail", "fix")

    def __init__(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.name = name
        self.status = status      # OK | WARN | FAIL
        self.detail = detail
        self.fix = fix

    def _asdict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "fix": self.fix}

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {self.status!r}, {self.detail!r}, {self.fix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Check) and self._asdict() == other._asdict()


def threads(status: dict[str, str]) -> Check:
    """unshare(CLONE_NEWUSER) is refused (EINVAL) in a multi-threaded process."""
    n = int(status.get("Threads", "1"))
    threading = sys.modules.get("threading")
    if threading is not None:
        n = max(n, threading.active_count())
    if n > 1:
        return Check("threads", FAIL, f"idrun must be single-threaded before unshare; {n} "
                     "threads are running", "something started a thread before the launch "
                     "(an extension or plugin); use idrun.spawn() from threaded programs")
    return Check("threads", OK, "single-threaded")


def no_new_privs(status: dict[str, str]) -> Check:
    if status.get("NoNewPrivs", "0") == "1":
        return Check("no_new_privs", FAIL, "NoNewPrivs is set for this process, so the kernel "
                     "ignores the setuid bit of newuidmap/newgidmap; only your own id could be "
                     "mapped", "run idrun outside NoNewPrivileges=/sandboxes, or use "
                     "--map-root-user")
    return Check("no_new_privs", OK, "not set")


def dumpable() -> Check:
    """newuidmap requires /proc/<pid> to be owned by the caller's real ids, which holds
    only while the process is dumpable and real == effective ids."""
    st = os.stat("/proc/self")
    if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
        return Check("dumpable", FAIL, f"/proc/{os.getpid()} is owned by {st.st_uid}:"
                     f"{st.st_gid}, not by your real ids {os.getuid()}:{os.getgid()}, so "
                     "newuidmap would refuse it (process not dumpable, or real and effective "
                     "ids differ)", "run idrun directly, not from a setuid/setgid program")
    return Check("dumpable", OK, "this process's /proc entry is owned by its real user")


def helper(kind: str, override: str | None = None):
    """(Check, Helper or None) for newuidmap (kind "uid") or newgidmap ("gid")."""
    from . import newidmap
    tool = HELPERS[kind]
    try:
        h = newidmap.find(kind, override)
    except IdrunError as e:
        return Check(tool, FAIL, e.message, e.hint or ""), None
    how = "setuid root" if h.setuid_root and not h.nosuid_mount else "file caps"
    source = ""
    env = newidmap.OVERRIDE_ENV[kind]
    if override:
        source = " (chosen by option)"
    elif os.environ.get(env):
        source = f" (chosen by {env})"
    return Check(tool, OK, f"{h.path}{source}: {how} ({h.describe()})"), h


def userns_limit() -> Check:
    limit = procfs.sysctl_int("user/max_user_namespaces")
    if limit is None:
        return Check("user namespaces", WARN, "user.max_user_namespaces is unreadable")
    if limit == 0:
        return Check("user namespaces", FAIL, "disabled: user.max_user_namespaces = 0",
                     "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d)")
    return Check("user namespaces", OK, f"enabled, user.max_user_namespaces = {limit}")


def unprivileged_clone() -> Check | None:
    if procfs.sysctl("kernel/unprivileged_userns_clone") == "0":
        return Check("unprivileged userns", FAIL,
                     "kernel.unprivileged_userns_clone = 0 forbids unprivileged users",
                     "sysctl -w kernel.unprivileged_userns_clone=1")
    return None


def apparmor() -> Check | None:
    aa = procfs.sysctl("kernel/apparmor_restrict_unprivileged_userns")
    if aa == "1":
        return Check("AppArmor", FAIL, "kernel.apparmor_restrict_unprivileged_userns = 1: "
                     "unprivileged user namespaces are refused without a profile",
                     "add an AppArmor profile allowing 'userns,' for idrun's python, or "
                     "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    if aa is not None:
        return Check("AppArmor", OK, f"kernel.apparmor_restrict_unprivileged_userns = {aa}")
    return None


def _raise(check: Check) -> None:
    if check.status == FAIL:
        raise LaunchError(check.detail, hint=check.fix or None)


def require(uses_helper: dict[str, str | None], new_user_ns: bool,
            status: dict[str, str]) -> dict:
    """Every precondition of one launch; raises the first failure as a LaunchError.

    ``uses_helper`` maps each kind written by newuidmap/newgidmap to its explicit
    path (or None). Returns kind -> newidmap.Helper for those kinds.
    """
    helpers = {}
    for kind, override in uses_helper.items():
        check, h = helper(kind, override)
        _raise(check)
        helpers[kind] = h
    if helpers:
        _raise(no_new_privs(status))
        _raise(dumpable())
    if new_user_ns:
        _raise(threads(status))
    return helpers
