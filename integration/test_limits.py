"""The kernel's map limits: 340 lines, fewer than 4096 bytes, one write.

A map at the limit works and is seen whole inside; one line or one byte more is
refused by idrun itself with exit 125 before anything starts (the command would
create a marker file, which must not exist afterwards).
"""
from __future__ import annotations

import os

import pytest
import testlib.integration as it


def render(lines) -> str:
    return "".join(f"{a} {b} {c}\n" for a, b, c in lines)


def uidmap_opts(lines) -> list[str]:
    opts = []
    for a, b, c in lines:
        opts += ["--uidmap", f"{a}:{b}:{c}"]
    return opts


def root_lines(n: int, base: int = 1000) -> list[tuple[int, int, int]]:
    """n one-id lines that cannot merge (container 2i -> host base+2i)."""
    return [(2 * i, base + 2 * i, 1) for i in range(n)]


def bytes_lines(total: int) -> list[tuple[int, int, int]]:
    """Lines (root) whose rendering is exactly `total` bytes (4000 < total < 4100)."""
    lines = [(1000000 + 2 * i, 1000000 + 2 * i, 1) for i in range(226)]  # 18 bytes each
    used = len(render(lines))
    assert used == 4068
    # one more line of 10+1+10+1+k+1 bytes: k digits of count
    k = total - used - 23
    assert 1 <= k <= 9
    lines.append((2000000000, 2000000000, 10 ** (k - 1)))
    assert len(render(lines)) == total
    return lines


def check_fits(idrun, opts, nlines):
    plan = idrun.plan(opts)
    assert len(plan["uid_map"]) == nlines and len(plan["gid_map"]) == nlines
    view = idrun.inside(opts)
    assert view.uid_map == plan["uid_map"]
    assert view.gid_map == plan["gid_map"]
    assert (view.uid, view.gid) == (plan["user"]["uid"], plan["user"]["gid"])


def check_refused(idrun, opts, shared_dir, why):
    """Refused with exit 125, for the reason `why` (a word of the message)."""
    marker = os.path.join(shared_dir, "ran")
    assert idrun.map_run(opts).returncode == 125
    p = idrun.run(opts, ["touch", marker])
    it.assert_refused(p, marker)
    assert why in p.stderr, p.stderr


@pytest.mark.kernel
@pytest.mark.root
def test_root_340_lines_work(idrun):
    lines = root_lines(340)
    assert len(render(lines)) < 4096
    check_fits(idrun, uidmap_opts(lines), 340)


@pytest.mark.root
def test_root_341_lines_refused(idrun, shared_dir):
    lines = root_lines(341)
    assert len(render(lines)) < 4096  # the line count alone is what is wrong
    check_refused(idrun, uidmap_opts(lines), shared_dir, "340")


@pytest.mark.kernel
@pytest.mark.root
def test_root_4095_bytes_work(idrun):
    lines = bytes_lines(4095)
    check_fits(idrun, uidmap_opts(lines) + ["--user", "1000000:1000000"], len(lines))


@pytest.mark.root
def test_root_4096_bytes_refused(idrun, shared_dir):
    lines = bytes_lines(4096)
    assert len(lines) <= 340  # the size alone is what is wrong
    check_refused(idrun, uidmap_opts(lines) + ["--user", "1000000:1000000"], shared_dir,
                  "4096")


@pytest.mark.root
def test_root_large_map_refused_on_gid_side_only(idrun, shared_dir):
    """A valid uid map does not let an oversized gid map through."""
    opts = ["--uidmap", "0:100000:65536"] + [
        x.replace("--uidmap", "--gidmap") for x in uidmap_opts(root_lines(341))]
    check_refused(idrun, opts, shared_dir, "340")


@pytest.mark.rootless
def test_rootless_341_lines_refused(idrun, subids, shared_dir):
    opts = uidmap_opts((2 * i, 2 * i + 1, 1) for i in range(341))
    check_refused(idrun, opts, shared_dir, "340")


@pytest.mark.rootless
def test_rootless_4096_bytes_refused(idrun, subids, shared_dir):
    """Host-id lines (what newuidmap would write) of 4096 bytes or more: refused."""
    container = [(1000000 + 2 * i, 2 * i + 1, 1) for i in range(300)]
    host_u = subids.compose("uid", container)
    host_g = subids.compose("gid", container)
    assert len(host_u) <= 340
    if len(render(host_u)) < 4096 or len(render(host_g)) < 4096:
        pytest.skip("sub-ids too short to reach 4096 bytes in 300 lines")
    check_refused(idrun, uidmap_opts(container) + ["--user", "1000000:1000000"],
                  shared_dir, "4096")


@pytest.mark.kernel
@pytest.mark.rootless
def test_rootless_300_lines_work(idrun, subids):
    container = [(2 * i, 2 * i + 1, 1) for i in range(300)]
    if len(render(subids.compose("uid", container))) >= 4096:
        pytest.skip("sub-ids too long for 300 lines in 4096 bytes")
    check_fits(idrun, uidmap_opts(container), 300)
