"""The README and `make help` as a reader meets them: no empty heading, no paragraph
that starts with a stray blank, every phase of `make test` named by `make help`."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the Markdown outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((number, line))
    return out


def test_readme_has_no_empty_heading():
    lines = [(n, ln) for n, ln in prose_lines((ROOT / "README.md").read_text()) if ln.strip()]
    for (n, line), (_, following) in zip(lines, lines[1:]):
        if line.startswith("#") and following.startswith("#"):
            depth = len(line) - len(line.lstrip("#"))
            assert len(following) - len(following.lstrip("#")) > depth, \
                f"README.md:{n}: heading {line!r} has no text under it"


def test_readme_paragraphs_start_at_the_margin():
    lines = prose_lines((ROOT / "README.md").read_text())
    for (_, before), (n, line) in zip(lines, lines[1:]):
        # a paragraph's first line (after a blank line or a closing fence) starts at column 0
        if line[:1] == " " and line.strip() and not before.strip():
            assert re.match(r" {2,}[-*\d]", line), f"README.md:{n}: {line!r} starts with a blank"


def test_make_help_names_every_test_phase():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    phases = re.search(r"^TEST_PHASES := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert phases
    res = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    test_line = next(ln for ln in res.stdout.splitlines() if ln.startswith("make test "))
    for phase in phases.group(1).split():
        assert phase in test_line, (phase, test_line)
