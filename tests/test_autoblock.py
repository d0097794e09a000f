"""--userns=auto: option parsing, block choice (pure) and lease files (this process's
own /proc entries; no namespace is created here)."""
from __future__ import annotations

import os

import pytest

from idrun.mapping import autoblock
from idrun.system import leases
from idrun.errors import MapSyntaxError, RegistryError, SubidError
from idrun.mapping.plan import AutoBlock, Host, Request, SubidRange, SubidSet
from idrun.mapping.resolve import resolve


def _host(start: int = 100000, count: int = 65536) -> Host:
    return Host(rootless=True, uid=1000, gid=1000,
                subuid=SubidSet("/etc/subuid", (SubidRange(start, count, 1),)),
                subgid=SubidSet("/etc/subgid", (SubidRange(start, count, 1),)))


def _lines(plan, kind="uid"):
    return [list(ln) for ln in plan.kind(kind).lines]


def test_parse_options():
    opts = autoblock.parse_auto("auto:size=10,uidmapping=5:0:1,gidmapping=0:@100003:2")
    assert opts.size == 10 and len(opts.uidmapping) == 1 and len(opts.gidmapping) == 1
    assert autoblock.parse_auto("auto") == autoblock.AutoOptions()
    for bad, match in (("auto:size=0", "at least 1"), ("auto:size=x", "not a decimal"),
                       ("auto:foo=1", 'unknown option "foo"'), ("auto:size", '"=value"'),
                       ("auto:uidmapping=u0:0:1", "flags are not allowed"),
                       ("auto:uidmapping=0:0:0", "amount is 0")):
        with pytest.raises(MapSyntaxError, match=match):
            autoblock.parse_auto(bad)


def test_forced_mappings_skip_container_ids_and_host_ids():
    """podman: the block fills container 0… around the forced lines' container ids,
    and never contains their host ids."""
    plan = resolve(Request(userns="auto:size=10,uidmapping=5:0:1,gidmapping=0:@100003:2"),
                   _host())
    assert _lines(plan) == [[0, 100000, 5], [5, 1000, 1], [6, 100005, 5]]
    assert _lines(plan, "gid") == [[0, 100003, 12]]   # 100003-4 forced, block from 100005


def test_block_from_the_registry_is_used():
    block = AutoBlock(((101024, 1024),), ((102048, 1024),), ("auto: why",), ("careful",))
    plan = resolve(Request(userns="auto"), _host()._replace(auto_block=block))
    assert _lines(plan) == [[0, 101024, 1024]] and _lines(plan, "gid") == [[0, 102048, 1024]]
    assert "auto: why" in plan.notes and "careful" in plan.warnings


def test_pick_prefers_a_quiet_contiguous_block():
    pick = autoblock.pick("uid", [(100, 200), (300, 400)], "pool", 50,
                          held=[(100, 120)], busy=[(125, 126)])
    assert pick.ranges == ((126, 50),) and "skipping 1" in pick.reason and pick.warning is None
    spread = autoblock.pick("uid", [(100, 130), (300, 330)], "pool", 40)
    assert spread.ranges == ((100, 30), (300, 10)) and "2 runs" in spread.reason
    busy = autoblock.pick("uid", [(100, 150)], "pool", 50, busy=[(110, 111)])
    assert busy.ranges == ((100, 50),) and busy.warning


def test_exhaustion_lists_free_sizes():
    with pytest.raises(SubidError, match=r"free sizes 60, 30 \(90 in all\); 110 uids held"):
        autoblock.pick("uid", [(100, 200), (300, 400)], "pool", 91,
                       held=[(100, 200), (330, 340)])
    with pytest.raises(SubidError, match="nothing is free"):
        autoblock.pick("uid", [(100, 200)], "pool", 1, held=[(100, 200)])
    with pytest.raises(SubidError, match="has none"):
        autoblock.pick("uid", [], "pool", 1)


def test_rootless_pool_needs_both_files():
    host = _host()._replace(subgid=SubidSet("/etc/subgid"))
    assert autoblock.pool(host, "uid")[0] == []


def test_lease_text_round_trip_and_garbage():
    me = leases.owner_of(os.getpid())
    lease = leases.Lease("/x/uid-5.lease", me, ((5, 10), (20, 3)), ((7, 1),))
    assert leases.parse_lease(lease.text(), lease.path) == lease
    for junk in ("", "idrun-lease 1\n", lease.text()[:-1], lease.text().replace("uid 5", "uid x"),
                 lease.text().replace("10 20", "0 20"), lease.text() + "more\n",
                 lease.text().replace("owner", "ownr")):
        assert leases.parse_lease(junk, "p") is None, junk


def test_owner_liveness_uses_start_time_and_boot():
    me = leases.owner_of(os.getpid())
    assert leases._alive(me, me.boot)
    assert not leases._alive(me._replace(start=me.start + 1), me.boot)
    assert not leases._alive(me, "another-boot")


def test_registry_dir_checks(tmp_path, monkeypatch):
    path = tmp_path / "reg"
    monkeypatch.setenv(leases.ENV_DIR, str(path))
    assert leases.registry_dir(True) == str(path)
    fd = leases._open_dir(str(path), True, create=True)
    assert fd is not None
    os.close(fd)
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    path.chmod(0o750)
    with pytest.raises(RegistryError, match="has mode 0750"):
        leases._open_dir(str(path), True, create=True)
    assert leases._open_dir(str(tmp_path / "missing"), True, create=False) is None


def test_reserve_hold_writes_and_release_removes(tmp_path, monkeypatch):
    monkeypatch.setenv(leases.ENV_DIR, str(tmp_path / "reg"))
    host = _host(3000000000, 4096)
    request = Request(userns="auto:size=1024")
    h1, l1 = leases.reserve_auto_block(request, host, hold=True)
    h2, l2 = leases.reserve_auto_block(request, host, hold=True)
    assert h1.auto_block.uid == ((3000000000, 1024),)
    assert h2.auto_block.uid == ((3000001024, 1024),)
    preview, none = leases.reserve_auto_block(request, host, hold=False)
    assert none is None and preview.auto_block.uid == ((3000002048, 1024),)
    assert "auto: size 1024 (size=)" in preview.auto_block.notes
    default, _ = leases.reserve_auto_block(Request(userns="auto"), host, hold=False)
    said = [n for n in default.auto_block.notes if n.startswith("auto: size")]
    assert said == ["auto: size 1024 by podman's rule without size=: the image's highest id "
                    "+ 1, at least auto-userns-min-size (1024); idrun has no image"], said
    leases.release(l1)
    assert not os.path.exists(l1.path) and os.path.exists(l2.path)
    h3, l3 = leases.reserve_auto_block(request, host, hold=True)
    assert h3.auto_block.uid == ((3000000000, 1024),)
    info = leases.live_leases(rootless=True)
    assert sorted(item["uid"][0][0] for item in info["leases"]) == [3000000000, 3000001024]
    assert "pid" in leases.leases_text(info)


@pytest.mark.privileged
def test_api_spawn_hands_the_lease_to_the_child(root, testuser_ids_alone, tmp_path, monkeypatch):
    """idrun.spawn: the caller owns the lease until the child exists, then the child;
    a failed spawn leaves no lease behind."""
    import subprocess

    import idrun
    from idrun.errors import CommandNotFound
    from idrun.system.hostinfo import AUTO_USER_ENV
    # Root's pool is the sub-ids of the user containers, which only the integration runner
    # delegates: take the test user's (scripts/testenv.sh makes them), so this runs on a
    # fresh machine too, whatever ran before it.
    monkeypatch.setenv(AUTO_USER_ENV, testuser_ids_alone.name)
    monkeypatch.setenv(leases.ENV_DIR, str(tmp_path / "reg"))
    proc = idrun.spawn(["sh", "-c", "read x; cat /proc/self/uid_map"], userns="auto",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        info = leases.live_leases(rootless=False)
        assert [item["pid"] for item in info["leases"]] == [proc.pid]
        held = info["leases"][0]["uid"]
    finally:
        out, _ = proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 0
    inside, outside, count = (int(x) for x in out.split())
    assert [[outside, count]] == held and inside == 0
    start, size = testuser_ids_alone.subuid
    assert start <= outside and outside + count <= start + size    # from the pool it named
    assert leases.live_leases(rootless=False)["leases"] == []    # its owner is gone
    with pytest.raises(CommandNotFound):
        idrun.spawn(["/nonexistent/cmd"], userns="auto")
    # The failed spawn reclaimed the dead child's lease and gave its own back.
    assert [n for n in os.listdir(tmp_path / "reg") if n.endswith(".lease")] == []


def test_root_pool_owner_is_configurable():
    ranges = SubidSet("/etc/subuid", (SubidRange(5000000, 4096, 3),))
    host = Host(rootless=False, uid=0, gid=0, auto_owner="pool",
                named_subuid={"pool": ranges}, named_subgid={"pool": ranges})
    assert autoblock.pool(host, "uid") == ([(5000000, 5004096)], "/etc/subuid (user pool)")
    with pytest.raises(SubidError, match='user "containers"'):
        autoblock.pool(host._replace(auto_owner="containers"), "gid")


def test_show_leases_json_matches_the_schema(tmp_path, monkeypatch, capsys):
    from testlib import idrun_json
    from idrun.cli.launcher import main
    monkeypatch.setenv(leases.ENV_DIR, str(tmp_path / "reg"))
    _, lease = leases.reserve_auto_block(Request(userns="auto"), _host(3000000000, 4096),
                                         hold=True)
    assert main(["show", "--leases", "--json"]) == 0
    doc = idrun_json(capsys.readouterr().out)
    assert [item["pid"] for item in doc["leases"]] == [os.getpid()]
    assert doc["leases"][0]["uid"] == [[3000000000, 1024]]
    leases.release(lease)
