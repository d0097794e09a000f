"""Every IDRUN_* environment variable is listed, with its meaning, in one place: the table
under README.md's "Environment variables". A name the tree reads that the table lacks, or
a row for a name nothing reads any more, fails here."""
from __future__ import annotations

import functools
import re
import subprocess

from testlib.unit import ROOT

NAME = re.compile(r"\bIDRUN(?:_[A-Z0-9_]*[A-Z0-9])?\b")
HEADING = "### Environment variables"


def _table() -> tuple[set[str], str]:
    """The names in the table's first column, and README.md without the table."""
    text = (ROOT / "README.md").read_text()
    start = text.index(HEADING)
    end = text.index("\n#", start + len(HEADING))
    names = set()
    for line in text[start:end].splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`(IDRUN[A-Z0-9_]*)`", line.split("|")[1]))
    return names, text[:start] + text[end:]


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, text=True, check=True)
    this = "tests/test_environment_names.py"   # names the merged-away names on purpose
    return [f for f in out.stdout.splitlines() if f not in ("README.md", this)]


@functools.cache
def _used() -> dict[str, str]:
    """Each IDRUN_* name in the tree, with the first file that names it."""
    _, readme = _table()
    used = {n: "README.md" for n in NAME.findall(readme)}
    for rel in _tree_files():
        path = ROOT / rel
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for n in NAME.findall(text):
            used.setdefault(n, rel)
    return used


def test_every_idrun_variable_is_in_the_readme_table():
    listed, _ = _table()
    used = _used()
    # "IDRUN" alone is also the project's name in prose; the table lists it as a variable
    missing = {n: f for n, f in used.items() if n not in listed and n != "IDRUN"}
    assert not missing, ("IDRUN_* names read in the tree but missing from README.md's "
                         f"\"Environment variables\" table: {missing}")


def test_the_readme_table_lists_no_name_nobody_reads():
    listed, _ = _table()
    assert {"IDRUN_LEASE_DIR", "IDRUN_DEB", "IDRUN_VM_ACCEL"} <= listed, listed
    stale = listed - set(_used())
    assert not stale, f"README.md lists IDRUN_* names nothing in the tree reads: {sorted(stale)}"


def test_merged_names_are_gone():
    """The names merged into one (mirrors, caches, the .deb, CI, the VM driver) stay gone."""
    gone = {"IDRUN_VM_MIRROR", "IDRUN_VM_SECURITY_MIRROR", "IDRUN_DEBIAN_SECURITY_MIRROR",
            "IDRUN_VM_CACHE", "IDRUN_VAGRANT_CACHE", "IDRUN_VAGRANT_DEB", "IDRUN_REQUIRE_ALL",
            "IDRUN_VM_DRIVER", "IDRUN_TEST_PYTHON", "IDRUN_INTEGRATION"}
    assert not gone & set(_used())
