"""The integration suite's helpers (testlib/ is the one helper package of both test
trees): who the caller is, its sub-ids, shadow's helpers, the maps a process sees, and
``Idrun``, which runs the idrun under test. The suite's files import it as
``import testlib.integration as it``; integration/conftest.py builds its fixtures from it.
Only pytest and the standard library are used (the guests have nothing else).
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import grp
import shlex
import shutil
import stat
import subprocess
import sys
import time
from typing import Iterable, Sequence

import pytest

# What both trees share, re-exported so that ``it.<name>`` reaches it too.
from testlib import (  # noqa: F401
    alive, children_of, descendants_of, env_missing, idrun_json, kill_quietly,
    no_new_children, proc_stat, procs_with, shared_dir, strict)

UNDER_TEST = shlex.split(os.environ.get("IDRUN", "idrun"))
# Generous: the QEMU guests run under TCG, where a Python start takes seconds.
TIMEOUT = float(os.environ.get("IDRUN_TEST_TIMEOUT", "120"))
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAP_SETGID = 6
CAP_SETUID = 7


# --------------------------------------------------------------------------- environment

def privileged() -> bool:
    """euid 0 with CAP_SETUID and CAP_SETGID: idrun writes maps itself."""
    if os.geteuid() != 0:
        return False
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
                return bool(caps >> CAP_SETUID & 1 and caps >> CAP_SETGID & 1)
    return False


def overflow_id(kind: str) -> int:
    try:
        with open(f"/proc/sys/kernel/overflow{kind}") as f:
            return int(f.read())
    except OSError:
        return 65534


@dataclasses.dataclass(frozen=True)
class Caller:
    uid: int
    gid: int
    name: str
    groups: tuple[int, ...]
    privileged: bool


def _caller() -> Caller:
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Caller(uid, gid, name, tuple(sorted(set(os.getgroups()))), privileged())


CALLER = _caller()


def read_subids(path: str, caller: Caller = CALLER) -> list[tuple[int, int]]:
    """The caller's (start, count) ranges in file order (owner by name or uid)."""
    out = []
    try:
        with open(path) as f:
            for raw in f:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split(":")
                if len(parts) != 3 or parts[0] not in (caller.name, str(caller.uid)):
                    continue
                try:
                    start, count = int(parts[1]), int(parts[2])
                except ValueError:
                    continue
                if count > 0:
                    out.append((start, count))
    except FileNotFoundError:
        pass
    return out


@dataclasses.dataclass(frozen=True)
class SubIds:
    """The caller's delegated ranges and the rootless intermediate tables."""
    uid_file_order: tuple[tuple[int, int], ...]
    gid_file_order: tuple[tuple[int, int], ...]

    @property
    def uid(self) -> list[tuple[int, int]]:
        return sorted(self.uid_file_order)

    @property
    def gid(self) -> list[tuple[int, int]]:
        return sorted(self.gid_file_order)

    def total(self, kind: str) -> int:
        return sum(c for _, c in getattr(self, kind))

    @property
    def common_total(self) -> int:
        """Sub-ids available on both sides (a value copied to both must fit both)."""
        return min(self.total("uid"), self.total("gid"))

    def intermediate(self, kind: str) -> list[list[int]]:
        own = CALLER.uid if kind == "uid" else CALLER.gid
        table = [[0, own, 1]]
        nxt = 1
        for start, count in getattr(self, kind):
            table.append([nxt, start, count])
            nxt += count
        return table

    def compose(self, kind: str, container_lines: Iterable[Sequence[int]]) -> list[list[int]]:
        """container → intermediate lines to host lines, split at intermediate extents."""
        table = self.intermediate(kind)
        out = []
        for inside, inter, count in container_lines:
            while count:
                for i_start, host, i_count in table:
                    if i_start <= inter < i_start + i_count:
                        n = min(count, i_start + i_count - inter)
                        out.append([inside, host + inter - i_start, n])
                        inside, inter, count = inside + n, inter + n, count - n
                        break
                else:
                    raise AssertionError(f"intermediate {kind} {inter} is not delegated")
        return sorted(out)

    def host_ids(self, kind: str) -> set[int]:
        return {h for s, c in getattr(self, kind) for h in range(s, s + c)}


def find_helper(name: str) -> str | None:
    for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return shutil.which(name)


def helper_usable(path: str | None) -> bool:
    if not path:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & stat.S_ISUID and st.st_uid == 0:
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def world_usable(path: str) -> bool:
    """Every directory on the path is searchable, and the file executable, by anyone."""
    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def inside_python_path() -> str | None:
    """A python3 that any (mapped) id can run inside a namespace."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        if cand and os.path.exists(cand) and world_usable(cand):
            return cand
    return None


def os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


# --------------------------------------------------------------------------- maps

def parse_map(text: str) -> list[list[int]]:
    """/proc/PID/uid_map text (padded columns) as [[inside, outside, count], ...]."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            rows.append([int(x) for x in line.split()])
    return rows


def translate_out(lines: Sequence[Sequence[int]], inside_id: int) -> int | None:
    """Host (outside) id of an inside id, or None when unmapped."""
    for inside, outside, count in lines:
        if inside <= inside_id < inside + count:
            return outside + inside_id - inside
    return None


def translate_in(lines: Sequence[Sequence[int]], outside_id: int, kind: str) -> int:
    """Inside id of an outside id, the overflow id when unmapped."""
    for inside, outside, count in lines:
        if outside <= outside_id < outside + count:
            return inside + outside_id - outside
    return overflow_id(kind)


INSIDE_REPORT = ("cat /proc/self/uid_map; echo @@; cat /proc/self/gid_map; echo @@; "
                 "cat /proc/self/setgroups; echo @@; id -u; echo @@; id -g; echo @@; id -G")


@dataclasses.dataclass
class InsideView:
    uid_map: list[list[int]]
    gid_map: list[list[int]]
    setgroups: str
    uid: int
    gid: int
    groups: set[int]

    @classmethod
    def parse(cls, out: str) -> "InsideView":
        parts = out.split("@@\n")
        assert len(parts) == 6, f"unexpected output from inside:\n{out}"
        return cls(parse_map(parts[0]), parse_map(parts[1]), parts[2].strip(),
                   int(parts[3]), int(parts[4]), {int(g) for g in parts[5].split()})


def expected_groups(plan: dict) -> set[int]:
    """What `id -G` must print inside, as a set, for a resolved plan."""
    gid = plan["user"]["gid"]
    if plan["setgroups"] == "allow":
        return {gid, *plan["groups"]}
    # setgroups denied: the supplementary groups cannot be changed, they are the
    # caller's, seen through the gid map (unmapped ones as the overflow gid).
    return {gid, *(translate_in(plan["gid_map"], g, "gid") for g in CALLER.groups)}


# --------------------------------------------------------------------------- running idrun

def status_of(returncode: int) -> int:
    """A shell's view of an exit status: death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def show_result(p: subprocess.CompletedProcess) -> str:
    cmd = shlex.join(p.args)
    if len(cmd) > 600:
        cmd = cmd[:300] + " … " + cmd[-250:]
    return (f"\n$ {cmd}\nexit {p.returncode}\n"
            f"--- stdout\n{p.stdout}--- stderr\n{p.stderr}")


class Idrun:
    """The idrun under test, run as a user would run it."""

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = list(prefix)
        self._plans: dict[tuple[str, ...], str] = {}

    def argv(self, opts: Sequence[str] = (), command: Sequence[str] | None = None) -> list[str]:
        argv = self.prefix + list(opts)
        if command is not None:
            argv += ["--"] + list(command)
        return argv

    def run(self, opts: Sequence[str], command: Sequence[str] | None, *,
            timeout: float = TIMEOUT, cwd: str = "/", env: dict | None = None,
            input: str | None = None, wrap: Sequence[str] = ()) -> subprocess.CompletedProcess:
        """Run ``idrun OPTS -- COMMAND`` (optionally under ``wrap``, e.g. setpriv)."""
        argv = list(wrap) + self.argv(opts, command)
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  cwd=cwd, env=env, stdin=subprocess.DEVNULL
                                  if input is None else None, input=input)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"timed out after {timeout}s: {shlex.join(argv)}\n"
                        f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}")

    def ok(self, opts: Sequence[str], command: Sequence[str], **kw) -> str:
        """Run and require exit 0; return stdout."""
        p = self.run(opts, command, **kw)
        assert p.returncode == 0, show_result(p)
        return p.stdout

    def sh(self, opts: Sequence[str], script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(opts, ["sh", "-c", script], **kw)

    def inside(self, opts: Sequence[str], **kw) -> InsideView:
        return InsideView.parse(self.ok(opts, ["sh", "-c", INSIDE_REPORT], **kw))

    def map_run(self, opts: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return self.run(["map", *opts, "--json"], None, **kw)

    def plan(self, opts: Sequence[str], **kw) -> dict:
        """What `idrun map OPTS --json` resolves (must be valid). Cached per options
        for the session when run with the default environment (the sub-id files do
        not change during a run); each call returns a fresh copy."""
        key = tuple(opts) if not kw else None
        if key is None or key not in self._plans:
            p = self.map_run(opts, **kw)
            assert p.returncode == 0, show_result(p)
            if key is None:
                return idrun_json(p.stdout)
            self._plans[key] = p.stdout
        return idrun_json(self._plans[key])

    def popen(self, opts: Sequence[str], command: Sequence[str], **kw) -> subprocess.Popen:
        kw.setdefault("cwd", "/")
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.Popen(self.argv(opts, command), **kw)


def assert_refused(p: subprocess.CompletedProcess, marker: str | None = None) -> None:
    """idrun's own refusal: exit 125, one clear message, no traceback, nothing ran."""
    assert p.returncode == 125, show_result(p)
    assert "Traceback" not in p.stderr, show_result(p)
    assert "idrun" in p.stderr and p.stderr.strip(), show_result(p)
    if marker is not None:
        assert not os.path.exists(marker), f"the command ran although idrun refused:{show_result(p)}"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def unused_host_id(kind: str, avoid: Iterable[tuple[int, int]] = ()) -> int:
    """A host id that is neither the caller's nor delegated to it."""
    taken = [(CALLER.uid if kind == "uid" else CALLER.gid, 1), *avoid]
    cand = 5000
    while any(s <= cand < s + c for s, c in taken):
        cand += 7919
    return cand


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


BUSYBOX_APPLETS = ("sh", "id", "ls", "cat", "stat", "touch", "grep", "wc", "echo", "true",
                   "mount", "umount", "mkdir")


def busybox_root(base: str) -> str:
    """A minimal root filesystem under ``base``/root: the static busybox and its applets
    in bin/ (for --rootfs). Without busybox-static the test cannot run: a skip, or a
    failure under CI (every test machine installs it: make deps, the guests' and the
    box's package lists)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        env_missing("busybox-static is not installed (make deps installs it)")
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    for applet in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(root, "bin", applet))
    os.chmod(root, 0o755)       # reachable by the unprivileged pass whatever the umask
    return root
