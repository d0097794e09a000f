"""The rootless path's setuid helpers (newuidmap/newgidmap) when they cannot work, and
`idrun show` inside the namespace they mapped. (What `idrun check` says about them is
the CLI's contract: tests/test_check_show.py.)

A helper that is missing, lacks its setuid bit, or fails is refused or reported before
the command runs (exit 125, one line, nothing left behind). A failing setuid-root
helper can only be made by root: `integration/guest/run-suite.sh` makes one (a copy of
false(1)) for the unprivileged pass and names it in $IDRUN_IT_FAILING_NEWUIDMAP.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest
import testlib.integration as it

SUBID_MAP = ["--uidmap", "0:0:1", "--uidmap", "1:1:10"]
ST_NOSUID = 2


def _with_helper(path: str) -> dict[str, str]:
    return dict(os.environ, IDRUN_NEWUIDMAP=path)


@pytest.fixture
def plain_helper():
    """A copy of newuidmap the caller made: without its setuid bit."""
    d = tempfile.mkdtemp(prefix="idrun-helpers-", dir="/tmp")
    os.chmod(d, 0o755)
    plain = os.path.join(d, "newuidmap-plain")
    shutil.copy(shutil.which("newuidmap") or "/usr/bin/newuidmap", plain)
    os.chmod(plain, 0o755)
    yield plain
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def failing_helper() -> str:
    path = os.environ.get("IDRUN_IT_FAILING_NEWUIDMAP")
    if not path or not os.path.isfile(path):
        it.env_missing("no setuid-root failing helper: run-suite.sh makes one as root and "
                       "sets IDRUN_IT_FAILING_NEWUIDMAP")
    if os.statvfs(path).f_flag & ST_NOSUID:
        it.env_missing(f"{path} is on a nosuid mount")
    return path


@pytest.mark.rootless
def test_rootless_missing_helper(idrun, subids, shared_dir):
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(SUBID_MAP, ["touch", marker], env=_with_helper("/nonexistent/newuidmap"))
    it.assert_refused(p, marker)
    assert "/nonexistent/newuidmap" in p.stderr, p.stderr


@pytest.mark.rootless
def test_rootless_helper_without_setuid_bit(idrun, subids, shared_dir, plain_helper):
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(SUBID_MAP, ["touch", marker], env=_with_helper(plain_helper))
    it.assert_refused(p, marker)
    assert "neither setuid root nor has cap_setuid" in p.stderr, p.stderr


@pytest.mark.rootless
def test_rootless_failing_helper_fails_closed(idrun, subids, shared_dir, failing_helper):
    marker = os.path.join(shared_dir, "ran")
    tag = f"idrun-fail-{uuid.uuid4().hex}"
    p = idrun.run(SUBID_MAP, ["sh", "-c", f"touch {marker}; : {tag}"],
                  env=_with_helper(failing_helper))
    it.assert_refused(p, marker)
    assert failing_helper in p.stderr and "exit 1" in p.stderr, p.stderr
    assert "argv: newuidmap" in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert it.procs_with(tag) == []


@pytest.mark.rootless
def test_rootless_show_inside(idrun, subids):
    """`idrun show` run inside translates an inside id to the host's."""
    out = idrun.ok(["--uidmap", "0:0:1", "--uidmap", "1:1:100"],
                   [*idrun.prefix, "show", "--translate", "1"])
    host = subids.compose("uid", [[1, 1, 1]])[0][1]
    assert f"inside 1 = outside {host}" in out, out
