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

import os
import platform
import shlex
import subprocess
import sys

import pytest

# The helpers live in testlib/ (on sys.path through pyproject.toml's pytest `pythonpath`).
from testlib import no_new_children, shared_dir  # noqa: F401  (fixtures)
from testlib.integration import (
    CALLER, TIMEOUT, UNDER_TEST, Caller, Idrun, SubIds, env_missing, find_helper,
    helper_usable, inside_python_path, os_release, read_subids, strict)


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


@pytest.fixture
def no_mount_left():
    """Fails the test when a mount it made is left in the host's mount namespace
    (the files that build mounts use it for every test)."""
    def mounts() -> set[str]:
        with open("/proc/self/mountinfo") as f:
            return {" ".join(line.split()[3:5]) for line in f}
    before = mounts()
    yield
    assert mounts() - before == set(), "a mount was left in the host's mount namespace"


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
