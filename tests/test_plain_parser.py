"""The plain launch's parser (cli/plain.py, issue 23 goal 1) against click's.

A corpus generated from the option table (every launcher option, ``--opt=v`` and
``--opt v``, short forms and bunches, repeats, ``--``, bad and missing values, unknown
options, peer spellings, options after the command) is read by both. Where the plain
parser takes an argv, click must take it too and both must describe the same launch
(the checked LaunchOptions, Request and MountRequest ``plain.prepare`` builds, or the
same refusal); where it does not, the console's ``main`` must answer exactly as
click's does. Nothing here launches: a refusal comes before anything starts, and an
accepted argv is only prepared.
"""
import gc
import os
import signal
import subprocess
import sys

import click
import pytest

from idrun.cli import plain

# idrun.console is the command's entry point: importing it turns the garbage collector
# off and makes SIGINT end the process; not so for the test process that imports it.
_sigint = signal.getsignal(signal.SIGINT)
from idrun import console  # noqa: E402
gc.enable()
signal.signal(signal.SIGINT, _sigint)
from idrun.cli.launcher import _peer_spellings, launch_command, main as click_main
from idrun.errors import IdrunError
from idrun.options import CHOICE, CLI, DECIMAL, LAUNCHER, OPTIONS

ROWS = [o for o in OPTIONS if LAUNCHER in o.commands and o.goes_to != CLI]
CMD = ["--", "true"]

# A value each option takes (anything for TEXT: prepare() refuses what the resolver
# would, the same for both), and ones its parser refuses.
_GOOD = {"uidmap": "0:0:1", "gidmap": "0:0:1", "userns": "host", "user": "0:0",
         "group_add": "5", "subuidname": "root", "subgidname": "root", "hostname": "box",
         "cap_add": "net_admin", "cap_drop": "ALL", "volumes": "/tmp:/mnt:ro",
         "tmpfs": "/scratch", "rootfs": "/", "workdir": "/tmp", "json_status_fd": "1",
         "preserve_fds": "0"}


def good_values(o) -> list[str]:
    if o.parse == CHOICE:
        return list(o.choices)
    return [_GOOD.get(o.dest, "v")]


def bad_values(o) -> list[str]:
    if o.parse == DECIMAL:
        return ["x", "-1", str(o.limit + 1), "", "1x"]
    if o.parse == CHOICE:
        return ["maybe", "", "ALLOW"]
    return []


def corpus() -> tuple[list[list[str]], list[list[str]]]:
    """(argvs the plain parser must take, argvs it must leave to click)."""
    fast: list[list[str]] = []
    slow: list[list[str]] = []
    shorts = [o for o in ROWS if any(len(n) == 2 for n in o.names)]
    for o in ROWS:
        for name in o.names:
            if o.value is None:
                fast += [[name, *CMD], [name, name, *CMD], [name, "true", "x"]]
                slow += [[f"{name}=1", *CMD], [f"{name}=", *CMD]]
                continue
            for v in good_values(o):
                fast += [[name, v, *CMD], [name, v, "true"], [name, v]]
                if name[:2] == "--":
                    fast += [[f"{name}={v}", *CMD], [f"{name}={v}", f"{name}={v}", *CMD]]
                else:
                    fast += [[f"{name}{v}", *CMD]]
                fast += [[name, v, name, v, *CMD]]
            if o.parse not in (CHOICE, DECIMAL):
                # A value that looks like an option is still the value, as click reads it.
                fast += [[name, "--pid", *CMD]]
            slow += [[name]]                                # the value missing
            for v in bad_values(o):
                slow += [[name, v, *CMD]]
                if name[:2] == "--":
                    slow += [[f"{name}={v}", *CMD]]
    for o in ROWS:                                          # after the command
        for name in o.names:
            if name[:2] == "--":
                slow += [["true", name, *good_values(o)[:1]] if o.value else ["true", name]]
                fast += [["--", "true", name, *good_values(o)[:1]]]
    flags = "".join(n[1] for o in shorts for n in o.names if len(n) == 2 and o.value is None)
    valued = [n[1] for o in shorts for n in o.names if len(n) == 2 and o.value is not None]
    fast += [[f"-{flags}", *CMD], [f"-{flags[::-1]}", *CMD]]
    for ch in valued:
        v = good_values(next(o for o in ROWS if f"-{ch}" in o.names))[0]
        fast += [[f"-{flags}{ch}{v}", *CMD], [f"-{flags}{ch}", v, *CMD]]
        slow += [[f"-{flags}{ch}"]]
    fast += [["true"], ["--"], ["--", "--", "x"], ["-r", "sh", "-c", "id"], ["-r", "-", "x"],
             ["-r", ""], ["--uidmap", "0:0:1", "--pid", "--fork", "--mount-proc", "--uts",
                          "--hostname", "b", "-v", "/tmp:/mnt", "--", "sh", "-c", "id"],
             ["--mount-proc", *CMD], ["--hostname", "x" * 65, *CMD],
             ["--preserve-fds", "900", *CMD], ["--json-status-fd", "987", *CMD],
             ["--uidmap", "nonsense", *CMD], ["-u", "nobody:", *CMD], ["-v", "", *CMD],
             ["--cap-add", "NOPE", *CMD], ["id", "--", "x"]]
    slow += [[], ["-h"], ["--help"], ["-r", "--help"], ["-V"], ["--version"], ["help"],
             ["help", "map"], ["map"], ["map", "-r"], ["check"], ["show", "1"],
             ["--dry-run", *CMD], ["--json", *CMD], ["--verify", *CMD], ["--files", *CMD],
             ["--nope", *CMD], ["-X", *CMD], ["-rX", *CMD], ["-r=", *CMD], ["---r", *CMD],
             ["--map-root", *CMD],                      # click takes no abbreviations
             ["-U", *CMD], ["-Ur", *CMD], ["--unshare-net", *CMD], ["--pid=host", *CMD],
             ["--net=none", *CMD], ["--network", "none", *CMD], ["--bind", "/a", "/b", *CMD],
             ["-n", *CMD], ["--chdir", "/tmp", *CMD], ["id", "--uidmap", "0:1:1"],
             ["id", "--uidmap=0:1:1"], ["id", "--pid"]]
    return fast, slow


FAST, SLOW = corpus()


def click_reads(args: list[str]):
    """What click's path makes of ``args``: ("ok", params, command, translated argv), or
    ("refused",) when click or the peer spellings refuse (main() then tells)."""
    try:
        words = _peer_spellings(launch_command, list(args))
        ctx = launch_command.make_context("idrun", list(words), obj={"args": words})
    except (click.ClickException, click.exceptions.Exit, IdrunError):
        return ("refused",)
    params = dict(ctx.params)
    return ("ok", params, tuple(params.pop("command")), words)


def prepared(kw: dict, command: tuple[str, ...], args: list[str]):
    try:
        return plain.prepare(dict(kw), command, args)
    except IdrunError as e:
        return ("refused", str(e), e.exit_status)


def both_mains(capsys, args: list[str]):
    """(status, stderr, stdout) of the console's main and of click's, for a refusal."""
    got = []
    for m in (console.main, click_main):
        status = m(list(args))
        out, err = capsys.readouterr()
        got.append((status, err, out))
    return got


def test_corpus_is_generated_from_every_launcher_option():
    names = {w.partition("=")[0] for argv in FAST for w in argv}
    for o in ROWS:
        assert set(o.names) <= names, o
    assert len(FAST) > 150 and len(SLOW) > 60


@pytest.mark.parametrize("args", FAST, ids=repr)
def test_plain_parser_reads_as_click_does(args, capsys):
    mine = plain.parse(list(args))
    assert mine is not None, f"the plain parser left {args} to click"
    theirs = click_reads(args)
    assert theirs[0] == "ok", f"the plain parser took {args}, which click refuses"
    kw, command = mine
    _, params, ccommand, words = theirs
    assert (kw, command) == (params, ccommand)
    a, b = prepared(kw, command, args), prepared(params, ccommand, words)
    assert a == b
    if a[0] == "refused":
        # Refused after parsing (before anything starts): the same line, the same status.
        plain_got, click_got = both_mains(capsys, args)
        assert plain_got == click_got
        assert plain_got[0] == a[2] and plain_got[1] == f"idrun: error: {a[1]}\n"


@pytest.mark.parametrize("args", SLOW, ids=repr)
def test_what_the_plain_parser_is_not_sure_of_goes_to_click(args, capsys, monkeypatch):
    assert plain.parse(list(args)) is None
    theirs = click_reads(args)
    capsys.readouterr()                 # what click printed (--help) while reading
    refused = theirs[0] == "refused" or prepared(*theirs[1:3], theirs[3])[0] == "refused"
    if refused and args[:1] not in (["show"], ["check"]):
        # main() would not launch: compare what each says (click's path for both).
        calls = []
        real = click_main

        def spy(argv):
            calls.append(argv)
            return real(argv)
        monkeypatch.setattr("idrun.cli.launcher.main", spy)
        plain_got = console.main(list(args))
        p_out, p_err = capsys.readouterr()
        click_got = real(list(args))
        c_out, c_err = capsys.readouterr()
        assert calls == [list(args)]
        assert (plain_got, p_err, p_out) == (click_got, c_err, c_out)


def test_completion_goes_to_click(monkeypatch):
    assert plain.parse(["-r", "--", "true"]) is not None
    monkeypatch.setenv("_IDRUN_COMPLETE", "bash_complete")
    assert plain.parse(["-r", "--", "true"]) is None


@pytest.mark.skipif(sys.version_info >= (3, 14),
                    reason="3.14 defers annotations: idrun.hints takes typing's NamedTuple there")
def test_plain_launch_imports_nothing_costly():
    """The modules a plain launch loads (parsing, resolving, launching) import none of
    click, typing, re, inspect, enum, json, dataclasses, argparse, collections."""
    code = ("import idrun.console; from idrun.cli.plain import parse, prepare; "
            "kw, cmd = parse(['--uidmap', '0:0:1', '--pid', '-v', '/tmp:/mnt', '--', 'true']); "
            "prepare(kw, cmd, []); "
            "import idrun.engine.prelaunch, idrun.engine.run, idrun.engine.spec, "
            "idrun.mapping.resolve, idrun.system.hostinfo, idrun.system.preconditions, "
            "idrun.system.diagnose, idrun.system.newidmap, idrun.mapping.subids, "
            "idrun.mapping.volumes, idrun.engine.mounts, idrun.system.kernelfeatures")
    costly = {"click", "typing", "re", "inspect", "enum", "json", "dataclasses", "argparse",
              "collections"}

    def loaded(code: str) -> set[str]:
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return {line.rpartition("|")[2].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    base = loaded("pass")
    assert not costly & base, f"the interpreter alone loads {costly & base}: nothing to test"
    assert loaded("import typing, re, click") & costly >= {"click", "typing", "re", "collections"}
    assert not costly & loaded(code)
