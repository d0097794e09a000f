"""Kernel smoke checks for the VM runner (integration/vm/run.py).

They do not use idrun at all: they prove that the kernel and userland the
suite runs on can create user namespaces, for root and for an unprivileged
user with subordinate ids, so a failure elsewhere in the suite can be told
apart from a broken environment.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess

import pytest


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _parse_map(text: str) -> list[tuple[int, int, int]]:
    rows = []
    for line in text.splitlines():
        inner, outer, count = (int(f) for f in line.split())
        rows.append((inner, outer, count))
    return rows


@pytest.mark.kernel
def test_proc_self_uid_map_readable():
    with open("/proc/self/uid_map") as f:
        rows = _parse_map(f.read())
    assert rows, "/proc/self/uid_map is empty"
    assert all(count > 0 for _, _, count in rows)


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) not installed")
def test_unshare_map_root_user():
    p = _run("unshare", "--user", "--map-root-user", "id", "-u")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0"


def _subid_start(path: str, user: str, uid: int) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                name, start, _count = line.strip().split(":")
                if name in (user, str(uid)):
                    return int(start)
    except (FileNotFoundError, ValueError):
        return None
    return None


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() == 0, reason="checks the unprivileged newuidmap path")
@pytest.mark.skipif(shutil.which("newuidmap") is None, reason="uidmap package not installed")
def test_unprivileged_subordinate_range_maps():
    uid = os.geteuid()
    user = pwd.getpwuid(uid).pw_name
    start = _subid_start("/etc/subuid", user, uid)
    if start is None:
        pytest.skip(f"{user} has no /etc/subuid entry")
    p = _run("unshare", "--user", "--map-users=auto", "--map-groups=auto",
             "cat", "/proc/self/uid_map")
    assert p.returncode == 0, p.stderr
    rows = _parse_map(p.stdout)
    assert any(outer == start and count >= 65535 for _, outer, count in rows), p.stdout
