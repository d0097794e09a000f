"""integration/vm/run.py hands the guests the .deb, not the checkout (issue 12).

The guests themselves are tested by `make vm-test`; these are the host-side parts that
decide what a guest gets: the image's package list, the shared snapshot, the guest-env.
A real .deb is built with dpkg-deb here (no mock): run.py reads it with dpkg-deb too.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_runner():
    spec = importlib.util.spec_from_file_location("vm_run", ROOT / "integration" / "vm" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their annotations through it
    spec.loader.exec_module(mod)
    return mod


run = _load_runner()


def test_dependency_names_take_the_first_alternative_without_version_or_arch() -> None:
    assert run.dependency_names("python3-click, python3:any (>= 3.11~), a | b, uidmap") == \
        ["python3-click", "python3", "a", "uidmap"]
    assert run.dependency_names("") == []


def _deb(tmp_path: Path, package: str = "idrun", depends: str = "python3-click, newdep (>= 1)") -> Path:
    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb missing (dpkg)")
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 9.8.7\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        f"Depends: {depends}\nDescription: test\n")
    out = tmp_path / f"{package}_9.8.7_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(out)],
                   check=True, capture_output=True)
    return out


def test_the_image_gets_the_debs_depends_after_packages_txt(tmp_path: Path) -> None:
    pkg = run.load_package(_deb(tmp_path))
    assert (pkg.name, pkg.version) == ("idrun", "9.8.7")
    listed = run.load_packages()
    got = run.image_packages(listed, pkg)
    # packages.txt's order is kept (an unchanged list keeps the cached images' key)
    assert got[:len(listed)] == listed
    assert got[len(listed):] == ["newdep"]


def test_another_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="expected 'idrun'"):
        run.load_package(_deb(tmp_path, package="other"))
    with pytest.raises(SystemExit, match="make deb"):
        run.load_package(tmp_path / "missing.deb")


def test_the_guest_gets_the_deb_and_the_tests_but_no_src(tmp_path: Path, monkeypatch) -> None:
    pkg = run.load_package(_deb(tmp_path))
    share = tmp_path / "share"
    run.snapshot_tree(share, pkg)
    assert (share / "deb" / pkg.path.name).read_bytes() == pkg.path.read_bytes()
    assert (share / "integration" / "guest" / "run-suite.sh").is_file()
    assert not (share / "src").exists()
    # the host's own IDRUN_DEB / IDRUN / IDRUN_INSTALLED never reach the guest
    monkeypatch.setenv("IDRUN_DEB", "/host/only.deb")
    monkeypatch.setenv("IDRUN", "python3 -m idrun")
    monkeypatch.setenv("IDRUN_INSTALLED", "0")
    monkeypatch.setenv("IDRUN_TEST_TIMEOUT", "300")
    env = run.guest_environment(pkg)
    assert env["IDRUN_DEB"] == f"/host/tree/deb/{pkg.path.name}"
    assert "IDRUN" not in env and "IDRUN_INSTALLED" not in env
    assert env["IDRUN_TEST_TIMEOUT"] == "300"


def test_boot_slots_let_the_longest_waiting_guest_boot_first() -> None:
    """With every slot taken, the guests that wait boot heaviest first (the full kernel set
    before the subsets), whatever order they arrived in; never more than n at a time."""
    import threading
    import time

    slots = run.BootSlots(1)
    order: list[str] = []
    running = [0]
    peak = [0]
    lock = threading.Lock()
    hold = threading.Event()

    def guest(name: str, weight: int) -> None:
        with slots.slot(weight):
            with lock:
                order.append(name)
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            if name == "first":
                hold.wait(10)
            with lock:
                running[0] -= 1

    first = threading.Thread(target=guest, args=("first", 0))
    first.start()
    while not order:
        time.sleep(0.01)
    waiters = [threading.Thread(target=guest, args=(n, w))
               for n, w in (("subset-a", 0), ("full-a", 1), ("subset-b", 0), ("full-b", 1))]
    for t in waiters:
        t.start()
        time.sleep(0.05)         # they arrive in this order, all while "first" holds the slot
    hold.set()
    for t in [first, *waiters]:
        t.join(10)
    assert order == ["first", "full-a", "full-b", "subset-a", "subset-b"]
    assert peak[0] == 1
