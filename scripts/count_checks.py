#!/usr/bin/env python3
"""Count the checks of the two test trees at a git revision (default: the work tree).

    scripts/count_checks.py [REV]

For tests/ and integration/: the test cases pytest collects (test functions times
their parametrize cases; collected, not run, so root/rootless cases both count) and
the `assert` statements in the tree's .py files (conftests included), and those of
testlib/, the helper package both trees import.
A revision is read from `git archive` into a scratch directory, so the work tree is
not touched. Used for issue 13's before/after figures.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("tests", "integration")
HELPERS = "testlib"


def asserts(tree: Path) -> int:
    n = 0
    for path in sorted(tree.rglob("*.py")):
        n += sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(path.read_text())))
    return n


def collected(checkout: Path, tree: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"), IDRUN=f"{sys.executable} -m idrun")
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                        "-p", "no:cacheprovider", "-p", "no:xdist", tree],
                       cwd=checkout, env=env, capture_output=True, text=True)
    ids = [ln for ln in p.stdout.splitlines() if "::" in ln]
    if p.returncode != 0 or not ids:
        sys.exit(f"collecting {tree} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return len(ids)


def count(checkout: Path) -> dict[str, tuple[int, int]]:
    out = {t: (collected(checkout, t), asserts(checkout / t)) for t in TREES}
    if (checkout / HELPERS).is_dir():   # older revisions kept the helpers in the trees
        out[HELPERS] = (0, asserts(checkout / HELPERS))
    return out


def main(argv: list[str]) -> int:
    rev = argv[1] if len(argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="count-checks-") as tmp:
        checkout = ROOT
        if rev is not None:
            checkout = Path(tmp)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        result = count(checkout)
    label = rev or "work tree"
    total_cases = sum(c for c, _ in result.values())
    total_asserts = sum(a for _, a in result.values())
    for tree, (cases, n) in result.items():
        print(f"{label}: {tree}/: {cases} test cases, {n} asserts")
    print(f"{label}: total: {total_cases} test cases, {total_asserts} asserts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
