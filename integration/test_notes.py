"""What a launch prints on stderr (issue 20): nothing when it does what was asked, a
note only for a likely mistake; everything else belongs to idrun map, --dry-run and
--verbose."""
from __future__ import annotations

import pytest


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
