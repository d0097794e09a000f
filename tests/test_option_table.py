"""The option table (options.OPTIONS) and what is built from it agree: the click
options of the launcher, ``idrun map``, ``check`` and ``show``, the API's keywords and
docstring, the shell completions' value kinds,
``LaunchOptions``, the mapping and mount requests, ``ns_flags`` and ``--verify``'s
reset list. Every row is reachable from each of them, and none of them has a name
the table lacks."""
from __future__ import annotations

import subprocess
import sys

import click
import pytest

from idrun import api, options
from idrun.cli import launcher
from idrun.system import syscalls
from idrun.cli.options import DecimalParam
from idrun.cli.info import describe
from idrun.engine.steps import LaunchOptions
from idrun.cli.map import map_command
from idrun.cli.check import check_command
from idrun.cli.show import show_command
from idrun.options import (BY_DEST, CAPS, CHECK, CHOICE, CLI, COMPLETE_KINDS, DECIMAL, HOST,
                           LAUNCH, LAUNCHER, MAP, MOUNT, OPTIONS, REQUEST, SECTION_TITLES, SHOW,
                           VERIFY_RESET, options_of)
from idrun.mapping.plan import Request
from idrun.mapping.volumes import MountRequest

COMMANDS = {LAUNCHER: launcher.launch_command, MAP: map_command, CHECK: check_command,
            SHOW: show_command}
# LaunchOptions' fields that launch_options derives rather than takes from an option.
DERIVED_FIELDS = ("mounts", "caps", "cap_added")


def _click_options(cmd: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in cmd.params if isinstance(p, click.Option)}


def test_rows_are_well_formed():
    seen = set()
    for o in OPTIONS:
        for command in o.commands or ("api",):
            assert (o.dest, command) not in seen, f"{o.dest} twice for {command}"
            seen.add((o.dest, command))
        assert o.section in SECTION_TITLES, o
        assert o.goes_to in (REQUEST, LAUNCH, CAPS, MOUNT, HOST, CLI), o
        assert o.help.endswith("."), o.dest
        assert all(n.startswith("-") for n in o.names), o.names
        assert o.commands or o.api, f"{o.dest} is reachable from nowhere"
        for other in (o.implies, o.needs):
            assert other is None or (other in BY_DEST and BY_DEST[other].value is None), o
        if o.clone is not None:
            assert isinstance(getattr(syscalls, o.clone), int), o.clone
        if o.parse == DECIMAL:
            assert o.limit > 0 and o.value is not None, o
        if o.parse == CHOICE:
            assert o.choices, o


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_cli_has_exactly_the_table_options(command):
    params = _click_options(COMMANDS[command])    # cmd.params: without --help
    rows = {o.dest: o for o in options_of(command)}
    assert set(params) == set(rows)
    assert list(params) == [o.dest for o in options_of(command)]   # the table's order
    for dest, param in params.items():
        o = rows[dest]
        assert tuple(param.opts) == o.names, dest
        assert param.multiple == o.multiple, dest
        assert param.help == o.help, dest
        if o.value is None:
            assert param.is_flag, dest
            continue
        assert not param.is_flag or o.bare is not None, dest
        if o.parse == CHOICE:
            assert tuple(param.type.choices) == o.choices, dest
        else:
            assert param.metavar == o.value, dest
        if o.parse == DECIMAL:
            assert isinstance(param.type, DecimalParam) and param.type.limit == o.limit


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_cli_defaults_are_the_table_defaults(command):
    ctx = COMMANDS[command].make_context("idrun", [], resilient_parsing=True)
    for o in options_of(command):
        if o.dest != "version":
            assert ctx.params[o.dest] == o.initial, o.dest


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_each_option_under_its_table_section(command):
    # Also: none falls into the last section for want of one (--cap-add did, in
    # "Output options").
    info = describe(COMMANDS[command], None if command == LAUNCHER else command)
    sections = {o.long: o.section for o in options_of(command)}
    for opt in info.options:
        if opt.long != "--help":
            assert opt.section == sections[opt.long], opt.long
    help_text = COMMANDS[command].get_help(click.Context(COMMANDS[command]))
    for title in set(sections.values()):
        assert f"\n{title}:\n" in help_text, title
    if command in (CHECK, SHOW):
        assert set(sections.values()) == {"Options"}    # as their pages have always had
        return
    assert sections["--cap-add"] == "Process options"
    process = help_text.index("Process options:")
    assert process < help_text.index("--cap-add") < help_text.index("Sharing directories:")


def test_every_option_with_a_value_says_how_a_shell_completes_it():
    for o in OPTIONS:
        if o.value is None:
            assert o.complete is None and not o.words, o
            continue
        assert o.complete in COMPLETE_KINDS, o
        if o.complete == CHOICE:
            assert o.words, o
    # the completion scripts' kinds are the table's, option by option
    for info in (describe(cmd, None if name == LAUNCHER else name)
                 for name, cmd in COMMANDS.items()):
        rows = {o.long: o for o in options_of(info.sub or LAUNCHER)}
        for opt in info.options:
            row = rows.get(opt.long)
            assert opt.kind == (row.complete if row else None), opt.long
            assert opt.choices == (row.words if row else ()), opt.long


def test_the_api_takes_exactly_the_table_keywords():
    api_rows = {o.dest for o in OPTIONS if o.api and o.goes_to != CLI}
    assert api._spawn_options() == api_rows
    # plan_for spells its keywords out (for editors and help()): they must be the
    # table's mapping and host options.
    from idrun.keywords import keywords_of
    assert keywords_of(api.plan_for) == {o.dest for o in OPTIONS
                                        if o.api and o.goes_to in (REQUEST, HOST)}
    assert set(api._NS_OPTIONS) == {o.dest for o in OPTIONS
                                    if o.api and o.goes_to in (LAUNCH, CAPS)}
    assert set(api._MOUNT_OPTIONS) == {o.dest for o in OPTIONS if o.goes_to == MOUNT}
    # Each is documented where users read about spawn and run.
    for dest in api_rows:
        assert f"``{dest}``" in api.spawn.__doc__, dest
    assert "@KEYWORDS@" not in api.spawn.__doc__


def test_no_keyword_of_the_api_is_unknown_to_the_table():
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such'"):
        api.spawn(["true"], no_such=True)
    for o in OPTIONS:
        if not o.api and o.goes_to != CLI:      # --preserve-fds, --json-status-fd: CLI only
            with pytest.raises(TypeError, match=repr(o.dest)):
                api.spawn(["true"], **{o.dest: o.initial})


def test_launch_options_fields_are_the_table_launch_options():
    table = [(o.dest, o.initial) for o in OPTIONS if o.goes_to == LAUNCH]
    assert LaunchOptions._fields == tuple(d for d, _ in table) + DERIVED_FIELDS
    for dest, default in table:
        assert LaunchOptions._field_defaults[dest] == default, dest
    # launch_options takes them and the capability options, nothing else.
    given = {o.dest: o.initial for o in OPTIONS if o.goes_to in (LAUNCH, CAPS)}
    assert options.launch_options(**given) == LaunchOptions()
    with pytest.raises(TypeError, match="'mounts'"):
        options.launch_options(mounts=None)


def test_requests_are_the_table_mapping_and_mount_options():
    assert Request._fields == tuple(o.dest for o in OPTIONS if o.goes_to == REQUEST)
    assert MountRequest._fields == tuple(o.dest for o in OPTIONS if o.goes_to == MOUNT)


def _set(o):
    """A value other than the default for a launch option row."""
    return {None: True}.get(o.value, "x") if o.parse != DECIMAL else 1


def test_each_namespace_row_asks_for_its_flag_and_verify_resets_it():
    for o in OPTIONS:
        if o.clone is None:
            continue
        opts = LaunchOptions(**{o.dest: _set(o)})
        assert opts.ns_flags == getattr(syscalls, o.clone), o.dest
        assert o.dest in VERIFY_RESET, o.dest
    everything = LaunchOptions(**{o.dest: _set(o) for o in OPTIONS if o.goes_to == LAUNCH
                                  and o.value is None})
    assert everything.ns_flags
    reset = everything._replace(**VERIFY_RESET, mounts=None)
    assert reset.ns_flags == 0 and not reset.fork and not reset.pid


def test_implications_and_needs_come_from_the_table():
    for o in OPTIONS:
        if o.implies:
            given = {o.dest: "box" if o.value else True}
            if o.needs:
                given[o.needs] = True
            assert getattr(options.launch_options(**given), o.implies), o.dest
        if o.needs:
            from idrun.errors import IdrunError
            with pytest.raises(IdrunError, match=f"{o.long} needs {BY_DEST[o.needs].long}"):
                options.launch_options(**{o.dest: True})


def test_the_table_loads_no_click():
    res = subprocess.run([sys.executable, "-c", "import sys, idrun.options, idrun.engine.steps; "
                          "print('click' in sys.modules)"],
                         capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "False", res.stdout + res.stderr


def test_each_peer_spelling_reaches_its_row():
    from idrun.cli.launcher import _peer_spellings
    for o in OPTIONS:
        for p in o.peers:
            if len(p) == 1:
                words, want = [f"-U{p}", "id"], [o.long, "id"]
            elif p.endswith("="):
                words, want = [f"{p}private", "id"], [o.long, "id"]
            elif o.value:
                words, want = [p, "/x", "id"], [o.long, "/x", "id"]
            else:
                words, want = [p, "id"], [o.long, "id"]
            assert _peer_spellings(launcher.launch_command, words) == want, p
