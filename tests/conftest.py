"""Fixtures of tests/: the pure core, the CLI contract and the API contract.

What a real namespace does is integration/'s (run as root and as ``idrun-test``);
the tests here that launch at all do it to check the library's and the CLI's own
contract (the API's return values, the engine's fault handling, `check --user`).

* Tests marked ``privileged`` launch for real (usually as root). They skip
  with a reason elsewhere; under ``CI=true`` (the rule integration/
  applies too, ``testlib.strict()``) such a skip is turned into a failure, so CI
  cannot go green without having run them.
* ``testuser``: the unprivileged user ``idrun-test`` with sub-ids and a venv under
  /opt built by ``scripts/testenv.sh`` (root's home is mode 700, so nothing under
  /root is usable by that user). The script is idempotent, locked, and quick when
  the sources did not change, so every xdist worker may call it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema  # noqa: F401  (a test dependency here: idrun_json always validates)
import pytest

# testlib is on sys.path through pyproject.toml's pytest `pythonpath`.
from testlib import no_new_children, shared_dir, strict  # noqa: F401  (fixtures)
from testlib.unit import ROOT, TEST_USER, TestUser, first_range, is_root, run, idrun_argv


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "privileged: launches for real (usually needs root); under CI=true a skip counts as a failure. ('kernel' is integration/'s "
                   "marker: the outcome depends on the kernel version)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if strict() and rep.skipped and item.get_closest_marker("privileged") is not None \
            and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = ("privileged test skipped under CI=true, which "
                        f"counts as a failure: {reason}")


@pytest.fixture
def root() -> None:
    """Skip (or, under CI, fail) unless running as root."""
    if not is_root():
        pytest.skip("needs root: writes id maps of other users and creates the test user")


@pytest.fixture
def idrun(root):
    """Run the idrun CLI as root: ``idrun("--uidmap", "0:1000:1", "--", "id")``."""
    def _idrun(*args: str, **kw) -> subprocess.CompletedProcess:
        return run(idrun_argv() + list(args), **kw)
    return _idrun


@pytest.fixture(scope="session")
def _testenv() -> TestUser | str:
    """Build the test user and venv once per worker; a string explains why not."""
    if not is_root():
        return "needs root to create the test user and its venv"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing"
    res = run(["bash", str(ROOT / "scripts" / "testenv.sh")], timeout=600)
    if res.returncode != 0:
        pytest.fail(f"scripts/testenv.sh failed:\n{res.stdout}\n{res.stderr}")
    python = res.stdout.strip().splitlines()[-1]
    pw = pwd.getpwnam(TEST_USER)
    return TestUser(TEST_USER, pw.pw_uid, pw.pw_gid, pw.pw_dir, python,
                    str(Path(python).with_name("idrun")),
                    first_range("/etc/subuid", TEST_USER, pw.pw_uid),
                    first_range("/etc/subgid", TEST_USER, pw.pw_uid))


# Tests that run as the test user put its sub-ids to use; a --userns auto lease drawn from
# that same pool stays live while any process uses them (issue 19). The xdist workers
# therefore share this lock: testuser holds it shared, testuser_ids_alone exclusively.
IDS_LOCK = "/run/idrun-test-subids.lock"


@contextlib.contextmanager
def _ids_lock(mode: int, timeout: float = 300.0):
    fd = os.open(IDS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{IDS_LOCK}: held for {timeout:.0f} s by another worker")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def testuser(_testenv):
    """The unprivileged user with sub-ids and a venv it can run idrun from."""
    if isinstance(_testenv, str):
        pytest.skip(_testenv)
    with _ids_lock(fcntl.LOCK_SH):
        yield _testenv


@pytest.fixture
def testuser_ids_alone(_testenv):
    """The test user, while no other test of this run uses its sub-ids."""
    if isinstance(_testenv, str):
        pytest.skip(_testenv)
    with _ids_lock(fcntl.LOCK_EX):
        yield _testenv
