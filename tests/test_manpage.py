"""The man pages generated from the click options: every option of every command
is on its page, the sections the issue asks for are there, and groff renders the
pages without a warning."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from idrun.cli import manpage
from idrun.cli.launcher import subcommand, launch_command

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
    cmd = launch_command if sub is None else subcommand(sub)
    text = rendered(pages[name])
    ctx = click.Context(cmd, **cmd.context_settings)
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            for opt in param.opts + param.secondary_opts:
                assert opt in text, f"{opt} is missing from {name}(1)"
            assert param.help and " ".join(param.help.split()[:3]) in " ".join(text.split())


def sections(text: str) -> dict[str, str]:
    """A rendered page's sections: heading → body."""
    out: dict[str, str] = {}
    title = None
    for line in text.split("\n"):
        if line and not line[0].isspace() and line.isupper() and "(" not in line:
            title = line.strip()
            out[title] = ""
        elif title is not None:
            out[title] += line + "\n"
    return out


def test_launcher_sections(pages):
    text = rendered(pages["idrun"])
    assert list(sections(text)) == [
        "NAME", "SYNOPSIS", "DESCRIPTION", "MAPPING OPTIONS", "NAMESPACES", "PROCESS OPTIONS",
        "SHARING DIRECTORIES", "OUTPUT OPTIONS", "MAPPING SYNTAX", "EXIT STATUS", "FILES",
        "ENVIRONMENT", "EXAMPLES", "SEE ALSO"]
    for fact in ("/etc/subuid", "/etc/subgid", "IDRUN_NEWUIDMAP", "125", "126", "127",
                 "idrun --uidmap 0:1000:1 -- id", "idrun-map(1)"):
        assert fact in text, fact
    # the options sit under the headings --help gives them
    parts = sections(text)
    assert "--uidmap" in parts["MAPPING OPTIONS"] and "--net" not in parts["MAPPING OPTIONS"]
    assert "--net" in parts["NAMESPACES"]
    sharing = parts["SHARING DIRECTORIES"]
    for fact in ("--volume", "--tmpfs", "--rootfs", "--workdir", "idmap=uids=", "uid=HOST:INSIDE",
                 "EOVERFLOW", "--files"):
        assert fact in sharing, fact
    assert "--volume" not in parts["OUTPUT OPTIONS"]
    for fact in ("/run/idrun", "$XDG_RUNTIME_DIR/idrun", "~/.local/state/idrun"):
        assert fact in parts["FILES"], fact


def test_help_headings_match_the_page(pages):
    """--help and idrun(1) list the same options under the same headings."""
    from click.testing import CliRunner
    helptext = CliRunner().invoke(launch_command, ["--help"]).output
    parts = sections(rendered(pages["idrun"]))
    headings = [ln[:-1] for ln in helptext.splitlines() if ln and ln.endswith(":")
                and not ln[0].isspace()]
    assert headings[:5] == ["Mapping options", "Namespaces", "Process options",
                            "Sharing directories", "Output options"]
    for heading in headings[:5]:
        block = helptext.split(f"\n{heading}:\n")[1].split("\n\n")[0]
        for opt in re.findall(r"^  (?:-\w, )?(--[\w-]+)", block, re.M):
            assert opt in parts[heading.upper()], (opt, heading)


def test_environment_lists_every_variable_idrun_reads(pages):
    """Every environment variable the package reads (a string constant passed to
    os.environ.get or named *_ENV/ENV_*) is on idrun(1)."""
    src = Path(manpage.__file__).parents[1]     # the package, above cli/
    names = set()
    for path in src.rglob("*.py"):
        if path.name == "manpage.py":
            continue
        text = path.read_text()
        names |= set(re.findall(r'environ\.get\("([A-Z_]+)"', text))
        names |= set(re.findall(r'^\w*ENV\w* = "([A-Z_]+)"', text, re.M))
        names |= set(re.findall(r'"(IDRUN_[A-Z_]+)"', text))
    assert {"IDRUN_AUTO_USER", "IDRUN_LEASE_DIR", "XDG_RUNTIME_DIR", "SHELL"} <= names
    env = sections(rendered(pages["idrun"]))["ENVIRONMENT"]
    for name in names:
        assert name in env, name


def test_check_page_has_only_its_own_sections(pages):
    parts = sections(rendered(pages["idrun-check"]))
    assert "MAPPING OPTIONS" not in parts and "MAPPING SYNTAX" not in parts
    assert "--user" in parts["OPTIONS"]
    # the exit status says what the description says: 0 when own-id launches work,
    # even if sub-id mappings do not; 1 when not even those work
    status = " ".join(parts["EXIT STATUS"].split())
    assert "own ids" in status and "sub-id mappings" in status and "not even those" in status
    assert "IDRUN_LEASE_DIR" not in parts["ENVIRONMENT"]
    show = sections(rendered(pages["idrun-show"]))
    assert "MAPPING SYNTAX" not in show and "EXIT STATUS" in show
    assert "IDRUN_LEASE_DIR" in show["ENVIRONMENT"]


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
