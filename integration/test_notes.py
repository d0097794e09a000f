"""What a launch prints on stderr (issue 20): nothing when it does what was asked, a
note only for a likely mistake; everything else belongs to idrun map, --dry-run and
--verbose."""
from __future__ import annotations

import pytest
import testlib.integration as it


@pytest.mark.rootless
def test_standard_rootless_launch_is_silent(idrun, subids, caller):
    """podman's standard map, 0:1:N, contains the caller's uid as an intermediate id;
    it printed two notes about that uid on every launch."""
    n = subids.common_total
    p = idrun.run(["--uidmap", f"0:1:{n}"], ["id", "-u"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0" and p.stderr == ""


@pytest.mark.rootless
def test_rootless_likely_host_id_gets_its_note_on_a_launch(idrun, subids, caller):
    """A range starting at the caller's own uid is likely meant as the host uid: a
    launch says so (once the caller's uid fits in the intermediate ids)."""
    if caller.uid > subids.common_total or caller.uid != caller.gid:
        pytest.skip("the caller's uid is beyond its intermediate ids")
    p = idrun.run(["--uidmap", f"0:{caller.uid}:1"], ["true"])
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("idrun: note: "), p.stderr
    assert f"from uid/gid {caller.uid} is intermediate {caller.uid}" in p.stderr


@pytest.mark.rootless
def test_userns_auto_notes_only_with_verbose(idrun, subids):
    p = idrun.run(["--userns", "auto:size=16"], ["true"])
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    p = idrun.run(["--verbose", "--userns", "auto:size=16"], ["true"])
    assert p.returncode == 0, p.stderr
    assert "idrun: note: auto: " in p.stderr
    p = idrun.run(["--dry-run", "--userns", "auto:size=16"], None)
    assert p.returncode == 0, p.stderr
    assert "note: auto: " in p.stdout


def test_bare_idrun_runs_the_default_mapping_silently(idrun, caller):
    """Issue 20.13: no mapping was refused. The default runs the command as root inside,
    prints nothing on stderr, and is what idrun map shows."""
    plan = idrun.plan([])
    p = idrun.run([], ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map"])
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    out = p.stdout.split("\n", 2)
    assert out[:2] == ["0", "0"]
    assert [[int(x) for x in ln.split()] for ln in out[2].splitlines()] == plan["uid_map"]
    if caller.privileged:
        assert plan["uid_map"] == [[0, 0, 1]] and plan["setgroups"] == "deny"
    else:
        assert plan["uid_map"][0] == [0, caller.uid, 1]
    assert any(n.startswith("no mapping given: the default") for n in plan["notes"])


def _run_on_pty(idrun, opts, owner=None, wrap=()):
    """idrun OPTS -- true with stdin on a fresh pty of mode 0620 (owned by ``owner`` when
    given, which needs root), as a terminal kept across su/runuser would be."""
    import os
    import subprocess
    master, slave = os.openpty()
    try:
        os.fchmod(slave, 0o620)
        if owner is not None:
            os.fchown(slave, owner, -1)
        return subprocess.run([*wrap, *idrun.argv(opts, ["true"])], stdin=slave,
                              capture_output=True, text=True, timeout=120, cwd="/")
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.root
def test_terminal_warning_only_when_its_owner_is_unmapped_as_root(idrun):
    """Issue 20.4: the stdin warning advised '-r' although -r was given. As root, -r maps
    root: a pty of root's is fine, another user's is named with advice that fits."""
    p = _run_on_pty(idrun, ["-r"], owner=0)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = _run_on_pty(idrun, ["-r"], owner=4242)
    assert p.returncode == 0, p.stderr
    assert "warning: stdin is /dev/pts/" in p.stderr and "owned by uid 4242" in p.stderr
    assert "map host uid 4242 too (e.g. --uidmap 4242:4242:1" in p.stderr
    assert "-r" not in p.stderr.split("(", 1)[1]
    p = _run_on_pty(idrun, ["--uidmap", "0:0:1", "--uidmap", "4242:4242:1"], owner=4242)
    assert p.returncode == 0 and p.stderr == "", p.stderr


@pytest.mark.root
def test_terminal_of_root_under_a_rootless_user(idrun):
    """runuser/su - as an ordinary user keeps root's pty: rootless -r cannot map it, and
    the warning says so instead of advising -r."""
    import shutil
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        it.env_missing("setpriv(1) (util-linux) is not installed")
    wrap = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    p = _run_on_pty(idrun, ["-r"], owner=0, wrap=wrap)
    if p.returncode != 0 and "idrun:" not in p.stderr:
        it.env_missing(f"idrun does not start as nobody here: {p.stderr[-300:]}")
    assert p.returncode == 0, p.stderr
    assert "owned by uid 0" in p.stderr and "uid 0 owns it, not you" in p.stderr, p.stderr
    assert "e.g. -r" not in p.stderr


@pytest.mark.rootless
def test_own_terminal_rootless(idrun, subids):
    p = _run_on_pty(idrun, ["-r"])
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = _run_on_pty(idrun, ["--uidmap", f"0:1:{subids.common_total}"])
    assert p.returncode == 0, p.stderr
    assert "map your own uid (rootless: intermediate 0" in p.stderr, p.stderr
