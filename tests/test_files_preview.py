"""``idrun map -v SRC:DST[:OPTS] --files``: the on-disk owners under SRC, read from real
files of several owners, and how the mount and the namespace show them; which inside ids
can create files (EOVERFLOW). The launch that agrees with this preview is in
integration/test_volumes.py."""
from __future__ import annotations

import os

import pytest

from testlib import idrun_json
from idrun.cli.launcher import main
from idrun.jsonout import validate

NS = ["--uidmap", "0:100000:65536"]

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="chown to several owners needs root")


def run_main(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def tree(tmp_path):
    """SRC owned by 0:0 holding five files of 501:20, two of 7:7, a 501-owned directory
    and a symlink (owned by 501) to a big directory, which must not be followed."""
    src = tmp_path / "src"
    src.mkdir()
    big = tmp_path / "big"
    big.mkdir()
    for i in range(50):
        (big / f"x{i}").write_text("")
    if os.geteuid() == 0:
        os.chown(src, 0, 0)
    for i in range(5):
        (src / f"a{i}").write_text("")
    sub = src / "sub"
    sub.mkdir()
    (sub / "b0").write_text("")
    (sub / "b1").write_text("")
    (src / "link").symlink_to(big)
    if os.geteuid() == 0:
        for p in [src / f"a{i}" for i in range(5)] + [sub]:
            os.chown(p, 501, 20)
        os.lchown(src / "link", 501, 20)
        os.chown(sub / "b0", 7, 7)
        os.chown(sub / "b1", 7, 7)
    return str(src)


@needs_root
def test_pair_preview_text(capsys, tree):
    rc, out, err = run_main(capsys, ["map", *NS, "-v", f"{tree}:/mnt:uid=501:1000", "--files"])
    assert rc == 0, err
    lines = [ln.strip() for ln in out.splitlines()]
    assert f"files under {tree}: 10 entries read" in lines
    assert "on-disk uid 501 (7 entries) → inside 1000" in lines
    assert (f"on-disk uid 0 (1 entry: {tree} itself) → unmapped by the mount's idmap, shows as "
            "65534, read-only for the command (EACCES)") in lines
    assert ("on-disk uid 7 (2 entries) → unmapped by the mount's idmap, shows as 65534, "
            "read-only for the command (EACCES)") in lines
    # a uid= pair alone: the gids keep their on-disk numbers inside
    assert "on-disk gid 20 (7 entries) → inside 20" in lines
    assert "on-disk gid 7 (2 entries) → inside 7" in lines
    assert ("the command (uid 0) cannot create files here: EOVERFLOW (the mount's idmap has no "
            "on-disk uid for it)") in lines
    assert "inside uids that can create files: 1000; EOVERFLOW for 0-999, 1001-65535" in lines
    # … and a file root creates is owned by on-disk gid 0 (issue 20 item 3's surprise)
    assert "the command (gid 0) creates files owned by on-disk gid 0" in lines


@needs_root
def test_plain_bind_through_the_namespace(capsys, tree):
    rc, out, _ = run_main(capsys, ["--dry-run", "--uidmap", "0:501:1", "--uidmap", "1:100000:1000",
                                   "-v", f"{tree}:/mnt", "--files", "--", "id"])
    assert rc == 0
    lines = [ln.strip() for ln in out.splitlines()]
    assert "on-disk uid 501 (7 entries) → inside 0" in lines
    assert (f"on-disk uid 0 (1 entry: {tree} itself) → host uid 0, which the namespace does "
            "not map: shows as 65534, only its 'other' permission bits apply") in lines
    assert "the command (uid 0) creates files owned by on-disk uid 501" in lines
    assert not any("EOVERFLOW" in ln for ln in lines)


@needs_root
def test_limit_and_the_sub_entry(capsys, tree):
    rc, out, _ = run_main(capsys, ["map", *NS, "-v", f"{tree}:/mnt:idmap", "--files=3"])
    assert rc == 0
    assert f"files under {tree}: stopped after 3 entries (--files=N reads more)" in out
    rc, out, _ = run_main(capsys, ["map", *NS, "-v", f"{tree}/sub:/mnt:idmap", "--files"])
    lines = [ln.strip() for ln in out.splitlines()]
    assert f"on-disk uid 501 (1 entry: {tree}/sub itself) → inside 501" in lines
    assert "on-disk uid 7 (2 entries) → inside 7" in lines
    assert "every uid the namespace maps can create files" in lines


@needs_root
def test_json_carries_it(capsys, tree):
    rc, out, _ = run_main(capsys, ["map", *NS, "--json", "-v",
                                   f"{tree}:/mnt:idmap=uids=0-100000-10#@1000-1000-5",
                                   "--tmpfs", "/tmp", "--files"])
    assert rc == 0
    doc = validate(idrun_json(out))
    vol, tmp = doc["mounts"]
    assert "files" not in tmp
    files = vol["files"]
    assert (files["entries"], files["limit"], files["cut"], files["unreadable"]) == \
        (10, 10000, False, 0)
    uids = {o["on_disk"]: o for o in files["owners"] if o["kind"] == "uid"}
    assert uids[0] == {"kind": "uid", "on_disk": 0, "entries": 1, "example": "",
                       "host": 100000, "inside": 0}
    assert uids[7]["inside"] == 7 and uids[7]["example"] in ("sub/b0", "sub/b1")
    assert uids[501]["host"] is None and uids[501]["inside"] is None
    create = files["create"]["uid"]
    assert create == {"can": [[0, 10], [1000, 5]], "eoverflow": [[10, 990], [1005, 64531]],
                      "runs_as": 0, "runs_as_on_disk": 0}


def test_symlinks_are_not_followed(capsys, tmp_path):
    """Runs as any user: only the caller's own files."""
    (tmp_path / "big").mkdir()
    for i in range(30):
        (tmp_path / "big" / f"x{i}").write_text("")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "link").symlink_to(tmp_path / "big")
    from idrun.system.ownerscan import count_owners
    got = count_owners(str(tmp_path / "src"), 10000)
    assert got.entries == 2 and not got.cut
    assert got.uids == {os.geteuid(): (2, "")}
    got = count_owners(str(tmp_path), 5)
    assert got.entries == 5 and got.cut


@pytest.mark.parametrize("argv,words", [
    (["map", "-r", "--files"], "none is given"),
    (["map", "-r", "-v", "/tmp:/mnt", "--files=0"], "--files=0"),
    (["-r", "-v", "/tmp:/mnt", "--files=5", "--", "true"], "only changes what --dry-run"),
    (["map", "-r", "-v", "/nonexistent-h20b:/mnt", "--files"], "No such file"),
])
def test_refused(capsys, argv, words):
    rc, out, err = run_main(capsys, argv)
    assert rc == 125 and out == ""
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


def test_create_view_splits_at_the_mount_map():
    """The pure layer: an inside id can create a file exactly when its host id has an
    on-disk id through the mount's map."""
    from idrun.mapping.ownership import create_view
    from idrun.mapping.ranges import Line
    from idrun.mapping.volumes import Mount, MountMaps
    from idrun.mapping.plan import Host, Request
    from idrun.mapping.resolve import resolve
    plan = resolve(Request(uidmap=("0:100000:65536",)), Host(rootless=False, uid=0, gid=0))
    m = Mount("volume", "/x", "/mnt", False,
              MountMaps((Line(0, 100000, 10), Line(7, 101000, 5)), (Line(0, 0, 1),)))
    c = create_view(m, plan, "uid")
    assert c.can == ((0, 10), (1000, 1005))
    assert c.cannot == ((10, 1000), (1005, 65536))
    assert c.runs_as_disk == 0
    g = create_view(m, plan, "gid")
    assert g.can == () and g.cannot == ((0, 65536),) and g.runs_as_disk is None
