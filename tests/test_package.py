"""The artefacts users install: the Debian package built by `make deb` (dpkg-buildpackage,
then lintian) and the wheel.

The .deb is not installed system-wide (other work on this machine shares its
/usr): it is extracted with `dpkg -x` into a throwaway root, its contents and
control fields are checked, and its /usr/bin/idrun runs from there with Debian's
python3 and Debian's python3-click/-prctl/-pyroute2, one real launch included.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from testlib.unit import ROOT, is_root
from idrun.cli.info import commands

DEBIAN_PYTHON = "/usr/bin/python3"
DEB_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEPENDS = ("python3-click", "python3-prctl", "python3-pyroute2", "uidmap")


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if shutil.which("dpkg-buildpackage") is None and not is_root():
        pytest.skip("dpkg-buildpackage is missing and only root can install it (make deb-deps)")
    out = tmp_path_factory.mktemp("deb")
    res = subprocess.run(["make", "-s", "-C", str(ROOT), "deb", f"DEB_BUILD={out}/build",
                          f"DEB_OUT={out}"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    debs = list(out.glob("idrun_*_all.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def deb_root(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_control_fields(deb):
    depends = [d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")]
    for pkg in DEPENDS:
        assert pkg in depends, (pkg, depends)
    assert deb_field(deb, "Architecture") == "all"
    assert deb_field(deb, "Package") == "idrun"


def test_contents(deb_root):
    usr = deb_root / "usr"
    assert os.access(usr / "bin" / "idrun", os.X_OK)
    # Our own launcher, not the console script pybuild generates (which imports re).
    assert (usr / "bin" / "idrun").read_text() == (ROOT / "debian" / "idrun.launcher").read_text()
    for page in ("idrun", "idrun-map", "idrun-check", "idrun-show"):
        assert (usr / "share" / "man" / "man1" / f"{page}.1.gz").is_file(), page
    assert (usr / "share" / "bash-completion" / "completions" / "idrun").is_file()
    assert (usr / "share" / "zsh" / "vendor-completions" / "_idrun").is_file()
    assert (usr / "share" / "fish" / "vendor_completions.d" / "idrun.fish").is_file()
    pkg = usr / "lib" / "python3" / "dist-packages" / "idrun"
    shipped = {p.name for p in pkg.iterdir()}
    source = {p.name for p in (ROOT / "src" / "idrun").iterdir()
              if p.suffix in (".py", ".json", ".typed")}
    assert source <= shipped, source - shipped
    assert not [p for p in deb_root.rglob("*") if p.suffix in (".so", ".c", ".o")]


def test_man_pages_list_every_option(deb_root):
    man1 = deb_root / "usr" / "share" / "man" / "man1"
    for info in commands():
        page = "idrun" if info.sub is None else f"idrun-{info.sub}"
        text = gzip.decompress((man1 / f"{page}.1.gz").read_bytes()).decode()
        for opt in info.options:
            for name in opt.names:
                assert name.replace("-", "\\-") in text, (page, name)


def test_installed_bash_completion(deb_root):
    from test_completion import complete
    script = str(deb_root / "usr" / "share" / "bash-completion" / "completions" / "idrun")
    assert complete(script, "idrun --userns ") == ["host", "keep-id", "nomap", "auto"]
    assert complete(script, "idrun sh") == ["show"]


def run_packaged(deb_root: Path, *args: str) -> subprocess.CompletedProcess:
    """The package's /usr/bin/idrun with its own module (not this checkout's)."""
    env = {"PATH": DEB_PATH, "LC_ALL": "C.UTF-8",
           "PYTHONPATH": str(deb_root / "usr" / "lib" / "python3" / "dist-packages")}
    return subprocess.run([DEBIAN_PYTHON, str(deb_root / "usr" / "bin" / "idrun"), *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_packaged_command_runs(deb_root):
    res = run_packaged(deb_root, "-V")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("idrun ") and "native part: none" in res.stdout
    # the entry point runs the package's module, not the checkout's
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import idrun; print(idrun.__file__)"], capture_output=True,
        text=True, env={"PYTHONPATH": str(deb_root / "usr/lib/python3/dist-packages")}, cwd="/")
    assert probe.stdout.startswith(str(deb_root)), probe.stdout + probe.stderr


def test_packaged_launch(deb_root):
    if not is_root():
        pytest.skip("the launch with --uidmap 0:0:1 needs root")
    res = run_packaged(deb_root, "--uidmap", "0:0:1", "--", "sh", "-c", "cat /proc/self/uid_map")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "0", "1"]


def test_wheel(tmp_path):
    """The wheel is pure Python and carries the schema and the py.typed marker."""
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("idrun-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("idrun/schema.json", "idrun/py.typed", "idrun/cli/launcher.py"):
        assert member in names
    assert not [n for n in names if n.endswith((".so", ".c"))]


def test_versions_agree():
    """idrun.__version__ is the one version: pyproject reads it, debian/changelog repeats it."""
    import idrun
    first = (ROOT / "debian" / "changelog").read_text().split("\n", 1)[0]
    assert first.startswith(f"idrun ({idrun.__version__})"), first
    assert 'attr = "idrun.__version__"' in (ROOT / "pyproject.toml").read_text()
