"""Shared fixtures of the integration suite: run the installed idrun as users do.

The suite knows nothing about how idrun was installed or started: it runs the
command prefix in ``$IDRUN`` (default ``idrun`` on PATH), as whichever user runs
pytest. ``integration/guest/run-suite.sh`` runs it once as root and once as an
unprivileged user with sub-ids.

Markers
  root      needs CAP_SETUID/CAP_SETGID (the root pass); skipped otherwise.
  rootless  needs an unprivileged caller (the unprivileged pass); skipped as root.

A test that needs something of the environment (newuidmap, sub-ids for the
caller, a usable python3 inside the namespace, ...) asks through
``env_missing()``: a skip normally, a failure under ``CI=true``, so CI never passes
by skipping the real-kernel tests.
Only pytest and the standard library are used (the guests have nothing else).
"""
from __future__ import annotations

import dataclasses
import os
import platform
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

# The helpers this suite shares with tests/ (process-leak checks, the --json reader);
# testlib is on sys.path through pyproject.toml's pytest `pythonpath`.
from testlib import (  # noqa: F401  (re-exported to the tests through `it`)
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


def _show(p: subprocess.CompletedProcess) -> str:
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
        assert p.returncode == 0, _show(p)
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
            assert p.returncode == 0, _show(p)
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
    assert p.returncode == 125, _show(p)
    assert "Traceback" not in p.stderr, _show(p)
    assert "idrun" in p.stderr and p.stderr.strip(), _show(p)
    if marker is not None:
        assert not os.path.exists(marker), f"the command ran although idrun refused:{_show(p)}"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------- pytest hooks

def pytest_configure(config: pytest.Config) -> None:
    # The suite sends these signals on purpose. Started under nohup (or by any parent
    # that ignores them), idrun and its command would inherit SIG_IGN, and the kernel
    # drops an ignored signal even for sigwaitinfo: reset them for the suite's children.
    import signal
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGTERM, signal.SIGWINCH):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    config.addinivalue_line("markers", "root: needs root (CAP_SETUID/CAP_SETGID); "
                                       "runs in the root pass")
    config.addinivalue_line("markers", "rootless: needs an unprivileged caller; "
                                       "runs in the unprivileged pass")
    config.addinivalue_line("markers", "permutation: one more case of a parametrized test "
                                       "whose kernel path another case already covers; "
                                       "deselect with -m 'not permutation' where every "
                                       "launch is slow (QEMU TCG guests)")
    config.addinivalue_line("markers", "soak: a long randomized run (a few minutes); the "
                                       "host passes run it, the VM guests (-m kernel) do not")
    # Written on the tests whose outcome depends on the kernel (map writes, limits,
    # setgroups, ownership, nesting, namespaces, signals). Under QEMU's TCG every launch
    # costs seconds, so the guests skip what only exercises idrun's own user-space logic
    # (argument errors, exit-status permutations), which the host pass covers.
    config.addinivalue_line("markers", "kernel: depends on the kernel's behaviour; the set "
                                       "the VM guests run (-m 'kernel and not permutation')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") and not CALLER.privileged:
            item.add_marker(pytest.mark.skip(
                reason=f"needs root with CAP_SETUID/CAP_SETGID (running as {CALLER.name}); "
                       f"covered by the root pass"))
        if item.get_closest_marker("rootless") and CALLER.privileged:
            item.add_marker(pytest.mark.skip(
                reason="rootless case: runs in the unprivileged pass, not as root"))


def _environment() -> dict[str, str]:
    newuidmap = find_helper("newuidmap")
    info = {
        "kernel": os.uname().release,
        "distribution": os_release(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "pytest": pytest.__version__,
        "user": f"{CALLER.name} (uid {CALLER.uid}, gid {CALLER.gid}, groups "
                f"{','.join(map(str, CALLER.groups)) or 'none'}; "
                f"{'privileged' if CALLER.privileged else 'rootless'})",
        "IDRUN": shlex.join(UNDER_TEST),
        "newuidmap": (f"{newuidmap} ({'setuid/caps' if helper_usable(newuidmap) else 'NOT usable'})"
                      if newuidmap else "not installed"),
        "subuid": ",".join(f"{s}:{c}" for s, c in read_subids("/etc/subuid")) or "none",
        "subgid": ",".join(f"{s}:{c}" for s, c in read_subids("/etc/subgid")) or "none",
        "strict (CI)": "yes" if strict() else "no",
    }
    try:
        p = subprocess.run(UNDER_TEST + ["--version"], capture_output=True, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        first = p.stdout.strip().splitlines()[:1]
        info["idrun"] = first[0] if p.returncode == 0 and first else \
            f"exit {p.returncode}: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        info["idrun"] = f"cannot run: {e}"
    return info


_ENV_KEY = pytest.StashKey[dict]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    info = config.stash.setdefault(_ENV_KEY, _environment())
    return [f"idrun integration on kernel {info['kernel']}, {info['distribution']}, "
            f"python {info['python']}, user {info['user']}"]


@pytest.fixture(scope="session", autouse=True)
def environment(pytestconfig: pytest.Config) -> dict[str, str]:
    """Reports the kernel, distribution, Python and user this run is on."""
    info = pytestconfig.stash.setdefault(_ENV_KEY, _environment())
    print("\nidrun integration environment:")
    for k, v in info.items():
        print(f"  {k}: {v}")
    return info


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    info = config.stash.get(_ENV_KEY, None) or _environment()
    terminalreporter.write_sep("-", "idrun integration environment")
    for k, v in info.items():
        terminalreporter.write_line(f"{k}: {v}")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def idrun() -> Idrun:
    return Idrun(UNDER_TEST)


@pytest.fixture(scope="session")
def caller() -> Caller:
    return CALLER


@pytest.fixture(scope="session")
def subids() -> SubIds:
    """The rootless caller's sub-ids and working helpers; else env_missing()."""
    if CALLER.privileged:
        pytest.skip("rootless case: runs in the unprivileged pass, not as root")
    for name in ("newuidmap", "newgidmap"):
        path = find_helper(name)
        if path is None:
            env_missing(f"{name} is not installed (Debian/Ubuntu: apt-get install uidmap)")
        if not helper_usable(path):
            env_missing(f"{path} is neither setuid root nor has file capabilities")
    uids, gids = read_subids("/etc/subuid"), read_subids("/etc/subgid")
    if not uids:
        env_missing(f"{CALLER.name} (uid {CALLER.uid}) has no range in /etc/subuid")
    if not gids:
        env_missing(f"{CALLER.name} (uid {CALLER.uid}) has no range in /etc/subgid")
    ids = SubIds(tuple(uids), tuple(gids))
    if ids.common_total < 2048:
        env_missing(f"{CALLER.name} needs at least 2048 sub-uids and sub-gids "
                    f"(has {ids.total('uid')}/{ids.total('gid')})")
    return ids


@pytest.fixture(scope="session")
def basic_opts() -> list[str]:
    """A mapping that works in this pass without sub-ids: used where the mapping
    itself is not what is tested. Root: a range of unprivileged host ids (so the
    command really changes credentials); rootless: -r."""
    if CALLER.privileged:
        return ["--uidmap", "0:300000:65536"]
    return ["-r"]


@pytest.fixture(scope="session")
def inside_python() -> str:
    path = inside_python_path()
    if path is None:
        env_missing("no python3 that an unprivileged id can execute "
                    "(tried /usr/bin/python3, /usr/local/bin/python3, sys.executable)")
    return path


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


_THIS = sys.modules[__name__]


@pytest.fixture(scope="session")
def it():
    """This module, so tests reach the helpers above without importing a conftest
    (``from conftest import`` breaks under --import-mode=importlib, or when another
    conftest.py is collected in the same run); what both trees share is in testlib."""
    return _THIS
