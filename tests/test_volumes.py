"""--volume, --tmpfs, --rootfs, --workdir: parsing and validation, pure."""
from __future__ import annotations

import pytest

from idrun.errors import IdrunError, MapValidationError
from idrun.mapping.plan import Host, Request, SubidSet, SubidRange
from idrun.mapping.ranges import Line
from idrun.mapping.resolve import resolve
from idrun.mapping.volumes import (IDMAP_CUSTOM, IDMAP_NS, MountRequest, owner_warning,
                                   parse_rootfs, parse_tmpfs, parse_volume, resolve_mounts)

ROOT = Host(rootless=False, uid=0, gid=0, login="root")
NS = resolve(Request(uidmap=("0:100000:65536",)), ROOT)


def mounts(*volumes, plan=NS, **kw):
    return resolve_mounts(MountRequest(volumes=volumes, **kw), plan)


def uid_lines(*volumes, plan=NS):
    return [list(ln) for ln in mounts(*volumes, plan=plan).mounts[0].idmap.uid]


def test_plain_and_options():
    v = parse_volume("/src:/dst")
    assert (v.src, v.dst, v.readonly, v.idmap) == ("/src", "/dst", False, "")
    assert parse_volume("rel:/dst:ro").readonly
    assert parse_volume("/a:/b:idmap,ro").idmap == IDMAP_NS
    v = parse_volume("/a:/b:uid=501:1000,gid=20:1000")
    assert v.idmap == IDMAP_CUSTOM
    assert [(e.disk, e.target, e.inside) for e in v.uids] == [(501, 1000, True)]
    assert [(e.disk, e.target) for e in v.gids] == [(20, 1000)]


BAD = [
    ("/a", "has no DST"),
    (":/b", "SRC is empty"),
    ("/a:", "DST is empty"),
    ("/a:b", 'DST "b" is not an absolute path'),
    ("/a:/b:rox", 'unknown option "rox" at column 7'),
    ("/a:/b:ro,", "unknown option an empty option at column 10"),
    ("/a:/b:ro,rw", "rw at column 10 repeats"),
    ("/a:/b:idmap,idmap", "idmap at column 13 is given twice"),
    ("/a:/b:idmap,uid=1:2", "conflicts with the plain idmap"),
    ("/a:/b:uid=501", "uid=501 at column 7 is not HOST:INSIDE"),
    ("/a:/b:uid=x:1", 'host id "x" is not a decimal number'),
    ("/a:/b:uid=1:4294967296", "larger than 4294967295"),
    ("/a:/b:idmap=uids=0-1", 'uids triplet 1 "0-1" at column 18 has 2 fields'),
    ("/a:/b:idmap=users=0-1-1", 'idmap part "users=0-1-1" at column 13'),
    ("/a:/b:idmap=uids=0-1-1;uids=2-3-1", "gives uids= twice"),
    ("/a:/b:idmap=uids=0-1-0", "count 0"),
    ("/a:/b:idmap=uids=0-1-1#5-6-x", 'uids triplet 2 "5-6-x" count "x"'),
]


@pytest.mark.parametrize("value,message", BAD)
def test_bad_volume_one_line(value, message):
    with pytest.raises(IdrunError) as e:
        parse_volume(value)
    text = str(e.value)
    assert message in text and "\n" not in text and e.value.exit_status == 125
    assert "hint:" in text


def test_tmpfs_and_rootfs():
    t = parse_tmpfs("/scratch:size=64m,mode=1777,noexec")
    assert (t.dst, t.data, t.flags, t.idmap) == ("/scratch", "size=64m,mode=1777", 0x8, False)
    assert parse_tmpfs("/x:idmap").idmap
    with pytest.raises(IdrunError, match='unknown option "bogus" at column 4'):
        parse_tmpfs("/x:bogus")
    assert parse_rootfs("/r:idmap") == ("/r", True, '--rootfs "/r:idmap"')
    with pytest.raises(IdrunError, match='unknown option "ro" at column 4'):
        parse_rootfs("/r:ro")


def test_plain_idmap_is_the_namespace_map():
    m = mounts("/a:/b:idmap").mounts[0]
    assert m.idmap.uid == (Line(0, 100000, 65536),) == m.idmap.gid


def test_multipass_examples():
    # -u 501:1000: the inside id 1000 is pushed down to host 101000.
    assert uid_lines("/a:/b:uid=501:1000") == [[501, 101000, 1]]
    # -u 501:1000 -u 502:1000: two host ids on one instance id.
    with pytest.raises(MapValidationError) as e:
        mounts("/a:/b:uid=501:1000,uid=502:1000")
    assert "uid=501:1000 and uid=502:1000" in str(e.value) and "inside uid 1000" in str(e.value)
    # -u 501:1000 -u 502:1001: fine.
    assert uid_lines("/a:/b:uid=501:1000,uid=502:1001") == [[501, 101000, 1], [502, 101001, 1]]
    # One host id for two instance ids.
    with pytest.raises(MapValidationError, match="uid=501:1000 and uid=501:1001 both map "
                                                 "on-disk"):
        mounts("/a:/b:uid=501:1000,uid=501:1001")


def test_podman_custom_and_at():
    assert uid_lines("/a:/b:idmap=uids=0-120000-10#10-130000-5") == [
        [0, 120000, 10], [10, 130000, 5]]
    assert uid_lines("/a:/b:idmap=uids=@501-1000-1") == [[501, 101000, 1]]
    m = mounts("/a:/b:idmap=gids=0-100005-1").mounts[0]
    assert m.idmap.uid == (Line(0, 100000, 65536),)     # kind not given: the namespace's
    assert m.idmap.gid == (Line(0, 100005, 1),)
    with pytest.raises(MapValidationError, match="triplet 1 .* and .*triplet 2 .* on-disk"):
        mounts("/a:/b:idmap=uids=0-120000-10#5-130000-10")
    with pytest.raises(MapValidationError, match="both show files as host uid 200005"):
        mounts("/a:/b:idmap=uids=0-200000-10#100-200005-1;gids=0-1-1",
               plan=resolve(Request(userns="host"), ROOT))


def test_host_target_not_mapped_is_refused_like_the_pair():
    """Issue 20.6: idmap=uids=501-1000-1 showed files as 65534 silently, where the pair
    uid=501:70000 (an inside id the namespace does not map) is refused."""
    with pytest.raises(MapValidationError, match="host uid 1000 is not mapped by the launched "
                                                 "namespace, so files owned on disk by uid "
                                                 "501 would show as nobody"):
        mounts("/a:/b:idmap=uids=501-1000-1")
    with pytest.raises(MapValidationError, match="host gid 165536 is not mapped .* on disk "
                                                 "by gid 65536"):
        mounts("/a:/b:idmap=gids=0-100000-65537")


def test_limits():
    with pytest.raises(MapValidationError, match="reaches 4294967295"):
        mounts("/a:/b:idmap=uids=4294967290-0-10")
    many = "#".join(f"{i * 2}-{100000 + i * 2}-1" for i in range(341))
    with pytest.raises(MapValidationError, match="341 lines; the kernel accepts at most 340"):
        mounts(f"/a:/b:idmap=uids={many}")


def test_inside_id_not_mapped():
    with pytest.raises(MapValidationError, match="inside uid 70000 is not mapped by the "
                                                 "launched namespace"):
        mounts("/a:/b:uid=1:70000")


def test_rootless_idmap_refused_with_alternatives():
    host = Host(rootless=True, uid=1000, gid=1000, login="alice",
                subuid=SubidSet("/etc/subuid", (SubidRange(100000, 65536, 1),)),
                subgid=SubidSet("/etc/subgid", (SubidRange(100000, 65536, 1),)))
    plan = resolve(Request(map_root_user=True), host)
    assert mounts("/a:/b", plan=plan).mounts[0].idmap is None
    for kw in ({"volumes": ("/a:/b:idmap",)}, {"volumes": ("/a:/b:uid=1:0",)},
               {"rootfs": "/r:idmap"}, {"tmpfs": ("/t:idmap",)}):
        with pytest.raises(MapValidationError) as e:
            resolve_mounts(MountRequest(**kw), plan)
        assert "CAP_SYS_ADMIN" in str(e.value) and "keep-id:uid=N" in str(e.value)


def test_no_userns_plain_idmap_refused():
    with pytest.raises(MapValidationError, match="no user namespace"):
        mounts("/a:/b:idmap", plan=resolve(Request(userns="host"), ROOT))


def test_duplicate_destination_and_warnings():
    with pytest.raises(IdrunError, match="both mount on /b"):
        mounts("/a:/b", "/c:/b/")
    mp = mounts("/a:/b:idmap")
    # A note for idrun map/--dry-run/--verbose, not a warning on every launch (issue 20.2).
    assert any("real host root" in n for n in mp.notes) and not mp.warnings
    m = mounts("/a:/b:uid=501:1000").mounts[0]
    assert "uid 0" in owner_warning(m, 0, 0)
    assert owner_warning(m, 501, 0) is None       # gid 0 is in the namespace's gid map
    with pytest.raises(IdrunError, match="--workdir"):
        resolve_mounts(MountRequest(workdir="rel"), NS)


def test_own_ids_rootless_get_the_keep_id_command():
    """Issue 20.5: a rootless pair of the caller's own uid was refused with "drop idmap";
    the hint is now the exact command that works."""
    host = Host(rootless=True, uid=2402, gid=2402, login="alice",
                subuid=SubidSet("/etc/subuid", (SubidRange(100000, 65536, 1),)),
                subgid=SubidSet("/etc/subgid", (SubidRange(100000, 65536, 1),)))
    plan = resolve(Request(uidmap=("0:1:65536",)), host)
    with pytest.raises(MapValidationError) as e:
        mounts("/home/alice/p:/mnt:uid=2402:1000", plan=plan)
    assert "hint: your own ids need no id-mapped mount: run idrun --userns keep-id:uid=1000 " \
           "-v /home/alice/p:/mnt (instead of" in str(e.value)
    with pytest.raises(MapValidationError) as e:
        mounts("/p:/mnt:uid=2402:1000,gid=2402:1000,ro", plan=plan)
    assert "--userns keep-id:uid=1000,gid=1000 -v /p:/mnt:ro" in str(e.value)
    with pytest.raises(MapValidationError) as e:
        mounts("/p:/mnt:uid=501:1000", plan=plan)       # not the caller's: no such command
    assert "keep-id:uid=N" in str(e.value)


def test_creation_warnings():
    """Issue 20.3: -v SRC:DST:uid=501:1000 under --uidmap 0:100000:65536 as root inside:
    creating a file fails with EOVERFLOW; as --user 1000 it gets on-disk gid 0."""
    w = mounts("/a:/b:uid=501:1000").warnings
    assert len(w) == 1 and "inside uid 0, which the idmap cannot store on disk" in w[0]
    assert "EOVERFLOW" in w[0] and "uid=HOST:0" in w[0]
    assert not mounts("/a:/b:uid=501:1000,ro").warnings
    plan = resolve(Request(uidmap=("0:100000:65536",), user="1000"), ROOT)
    w = mounts("/a:/b:uid=501:1000", plan=plan).warnings
    assert len(w) == 1 and "owned on disk by uid 501 and gid 0 (root's group)" in w[0]
    plan = resolve(Request(uidmap=("0:100000:65536",), user="1000:1000"), ROOT)
    assert not mounts("/a:/b:uid=501:1000", plan=plan).warnings
    assert not mounts("/a:/b:uid=501:1000,gid=20:0", plan=resolve(
        Request(uidmap=("0:100000:65536",), user="1000"), ROOT)).warnings
    w = mounts("/a:/b:uid=501:1000,gid=20:5", plan=plan).warnings
    assert len(w) == 1 and "inside gid 1000" in w[0]
