"""The man pages generated from the click options: every option of every command
is on its page, the sections the issue asks for are there, and groff renders the
pages without a warning."""
from __future__ import annotations

import os
import shutil
import subprocess

import click
import pytest

from idrun import manpage
from idrun.cli import _subcommand, launch_command

PAGES = {"idrun": None, "idrun-map": "map", "idrun-check": "check", "idrun-show": "show"}


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("man")
    paths = manpage.write_all(out)
    assert sorted(p.name for p in paths) == sorted(f"{n}.1" for n in PAGES)
    return {p.stem: p.read_text() for p in paths}


def rendered(page: str) -> str:
    """The page as man shows it, as plain text."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (man-db brings it)")
    res = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=200n", "-ww"],
                         input=page, capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert res.returncode == 0 and not res.stderr, res.stderr
    return res.stdout


@pytest.mark.parametrize("name,sub", PAGES.items())
def test_every_option_is_on_the_page(pages, name, sub):
    cmd = launch_command if sub is None else _subcommand(sub)
    text = rendered(pages[name])
    ctx = click.Context(cmd, **cmd.context_settings)
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            for opt in param.opts + param.secondary_opts:
                assert opt in text, f"{opt} is missing from {name}(1)"
            assert param.help and " ".join(param.help.split()[:3]) in " ".join(text.split())


def test_launcher_sections(pages):
    text = rendered(pages["idrun"])
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "MAPPING OPTIONS", "OPTIONS",
                    "MAPPING SYNTAX", "EXIT STATUS", "FILES", "ENVIRONMENT", "EXAMPLES",
                    "SEE ALSO"):
        assert f"\n{section}\n" in text, section
    for fact in ("/etc/subuid", "/etc/subgid", "IDRUN_NEWUIDMAP", "125", "126", "127",
                 "idrun --uidmap 0:1000:1 -- id", "idrun-map(1)"):
        assert fact in text, fact
    # mapping options are grouped apart from the launcher's own, as --help lists them
    mapping = text.split("\nMAPPING OPTIONS\n")[1].split("\nOPTIONS\n")
    assert "--uidmap" in mapping[0] and "--net" not in mapping[0]
    assert "--net" in mapping[1]


def test_missing_option_is_detected(pages):
    """The check above can fail: a page without an option does not pass it."""
    broken = pages["idrun-show"].replace("\\-\\-translate", "")
    assert "--translate" not in rendered(broken)


def test_man_reads_the_page(pages, tmp_path):
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed")
    path = tmp_path / "idrun-map.1"
    path.write_text(pages["idrun-map"])
    res = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100"))
    assert res.returncode == 0, res.stderr
    assert "--subuid-file" in res.stdout.replace("‐", "-")
