"""The plain launch, ``idrun [OPTIONS] [--] COMMAND``, parsed without click.

Importing click (and what it imports: typing, inspect, enum, uuid, datetime, gettext)
costs a launch about as much as everything else idrun does. The launcher's options
are data (options.OPTIONS), so this parser is generated from the same rows the click
options are: no second list. It takes only an argv it is sure of, and reads it as
click would (``--opt=v`` and ``--opt v``, repeats, flags, bunched short flags,
``-uVALUE``, ``--``, the command from the first word that is not an option).
Anything else goes to click unchanged (console.main), which then accepts it or says what is wrong
exactly as before: help, ``--version``, the subcommands, the output options
(``--dry-run`` and what goes with it), an unknown option or another tool's spelling
(peers.py), a value its parser refuses, a missing value, an idrun option after the
command, an empty argv, completion. Both paths then run ``launch`` with the same
values; tests/test_plain_parser.py checks they agree on a generated corpus.

No click, typing, re, enum or json here or in what it imports before the launch.
"""
import os
import sys

from ..errors import EXIT_IDRUN, IdrunError
from ..options import CHOICE, CLI, DECIMAL, LAUNCHER, MOUNT, OPTIONS, REQUEST, BY_DEST

# The launcher's subcommands: a first word naming one (or "help") is click's.
SUBCOMMANDS = ("map", "check", "show")
# The environment variable click's shell completion runs under (prog name "idrun").
_COMPLETE_VAR = "_IDRUN_COMPLETE"

_LAUNCHER_ROWS = tuple(o for o in OPTIONS if LAUNCHER in o.commands)
# The rows this parser takes: all the launcher's but the output options (--dry-run,
# --json, --verify, --files, --version), which only change what is printed.
_ROWS = tuple(o for o in _LAUNCHER_ROWS if o.goes_to != CLI)
_BY_NAME = {name: o for o in _ROWS for name in o.names}
# What click passes the launcher's callback for an option not given.
_INITIAL = {o.dest: o.initial for o in _LAUNCHER_ROWS if o.dest != "version"}
# Every long spelling of the launcher: one typed after the command is left to click
# (and to check_late_options), though only a mapping option there is ever refused.
_LAUNCHER_LONG = frozenset(n for o in _LAUNCHER_ROWS for n in o.names if n[:2] == "--")
# The launcher's long options that describe a mapping, and whether each takes a value;
# not -r/-c, which many commands take themselves (sh -c).
_MAPPING_OPTS = {o.long: o.value is not None for o in OPTIONS if o.chooses_mapping}


def parse(args: list[str]) -> tuple[dict, tuple[str, ...]] | None:
    """The launcher's option values (by dest, as click passes them) and the command, or
    None when click is to read ``args``."""
    if not args or args[0] in SUBCOMMANDS or args[0] == "help" or _COMPLETE_VAR in os.environ:
        return None
    params = dict(_INITIAL)
    i, n = 0, len(args)
    dashes = False
    while i < n:
        word = args[i]
        if word == "--":
            i += 1
            dashes = True
            break
        if word[:1] != "-" or len(word) == 1:    # "" and "-" are words too, as for click
            break
        if word[1] == "-":
            name, eq, value = word.partition("=")
            o = _BY_NAME.get(name)
            if o is None:
                return None
            if o.value is None:
                if eq:
                    return None                 # click: does not take a value
                params[o.dest] = True
                i += 1
                continue
            if not eq:
                if i + 1 == n:
                    return None                 # click: requires an argument
                i += 1
                value = args[i]
            if not _take(params, o, value):
                return None
            i += 1
            continue
        # Short options, bunched as click reads them: flags, then at most one that
        # takes the rest of the word (or the next word) as its value.
        j = 1
        while j < len(word):
            o = _BY_NAME.get("-" + word[j])
            if o is None:
                return None
            if o.value is None:
                params[o.dest] = True
                j += 1
                continue
            value = word[j + 1:]
            if not value:
                if i + 1 == n:
                    return None
                i += 1
                value = args[i]
            if not _take(params, o, value):
                return None
            break
        i += 1
    command = tuple(args[i:])
    if not dashes and any(w.partition("=")[0] in _LAUNCHER_LONG for w in command[1:]):
        return None
    return params, command


def _take(params: dict, o, value: str) -> bool:
    """Store ``value`` of option ``o`` as click's type would; False where click refuses."""
    if o.parse == DECIMAL:
        from ..mapping.syntax import decimal
        number = decimal(value)
        if number is None or number > o.limit:
            return False
        value = number
    elif o.parse == CHOICE and value not in o.choices:
        return False
    params[o.dest] = params[o.dest] + (value,) if o.multiple else value
    return True


def take_options(kw: dict, *kinds: str) -> dict:
    """The values of the options of ``kinds`` (options.REQUEST, LAUNCH, …), removed from
    ``kw``."""
    return {o.dest: kw.pop(o.dest) for o in OPTIONS if o.goes_to in kinds and o.dest in kw}


def mount_request(kw: dict):
    """--volume/--tmpfs/--rootfs/--workdir (removed from ``kw``) as a MountRequest, or
    None when none is given (the mount modules then stay unloaded)."""
    # An empty --rootfs/--workdir is refused by the parser like -v "", not dropped.
    values = take_options(kw, MOUNT)
    if all(value == BY_DEST[dest].initial for dest, value in values.items()):
        return None
    from ..mapping.volumes import MountRequest
    return MountRequest(**values)


def request_from(kw: dict):
    """The mapping options (removed from ``kw``) as a Request."""
    from ..mapping.plan import Request
    return Request(**take_options(kw, REQUEST))


def say(pre) -> None:
    """A prelaunch's notes and warnings, on stderr, before anything starts."""
    for note in pre.notes:
        _line(sys.stderr, f"idrun: note: {note}")
    for w in pre.warnings:
        _line(sys.stderr, f"idrun: warning: {w}")


def _line(stream, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def check_late_options(args: list[str] | None, command: tuple[str, ...]) -> None:
    """Without a mapping of its own, idrun would run the default one and hand a mapping
    option typed after the command to the command ('idrun id --uidmap 0:1:1'): refuse
    that, unless '--' said the command starts there, and show the line meant.
    ``args``: idrun's words, None when unknown (then nothing is checked)."""
    if not args or not command:
        return
    start = len(args) - len(command)
    if start > 0 and args[start - 1] == "--":
        return
    moved: list[str] = []
    rest: list[str] = [command[0]]
    i = 1
    while i < len(command):
        word = command[i]
        name = word.partition("=")[0]
        if name in _MAPPING_OPTS:
            takes = _MAPPING_OPTS[name] and "=" not in word
            moved += command[i:i + 1 + takes]
            i += 1 + takes
        else:
            rest.append(word)
            i += 1
    if not moved:
        return
    import shlex
    before = args[:start]
    raise IdrunError(
        f"{moved[0]} comes after the command {shlex.quote(command[0])}, so it belongs to "
        "that command, and idrun got no mapping",
        "put idrun's options before the command: "
        f"{shlex.join(['idrun', *before, *moved, '--', *rest])} (or, if the command takes "
        f"{moved[0]} itself: {shlex.join(['idrun', *before, '--', *command])})")


def prepare(kw: dict, command: tuple[str, ...], args: list[str] | None):
    """The launch request the options ``kw`` (by dest; consumed) describe: the output
    flags, the LaunchOptions, the mapping Request and the MountRequest, checked. The
    one place both parsers' values become a launch."""
    from ..options import CAPS, LAUNCH, check_output_flags, launch_options
    out = {d: kw.pop(d) for d in ("dry_run", "as_json", "verify", "files")}
    check_output_flags(json_status_fd=kw["json_status_fd"],
                       sources=bool(kw["volumes"] or kw["rootfs"]), **out)
    opts = launch_options(**take_options(kw, LAUNCH, CAPS))
    request = request_from(kw)
    if not any(getattr(request, o.dest) for o in OPTIONS if o.chooses_mapping):
        check_late_options(args, command)
    return out, opts, request, mount_request(kw)


def launch(kw: dict, command: tuple[str, ...], args: list[str] | None) -> None:
    """Launch (or, with --dry-run, show) what the parsed options ``kw`` ask for."""
    from ..engine.prelaunch import prelaunch
    out, opts, request, mounts = prepare(kw, command, args)
    # --userns=auto: this process (which becomes the command, or waits for it) owns
    # the lease; a failed launch gives it back, a finished one leaves it to be reclaimed.
    pre = prelaunch(request, opts, mounts, hold=not out["dry_run"])
    try:
        say(pre)
        if out["dry_run"]:
            from .options import show_plan, verified_maps, verify_mounts
            verify_mounts(pre.plan, pre.mounts, out["verify"])
            show_plan(pre.plan, out["as_json"], verified_maps(pre.plan, out["verify"]),
                      pre.mounts, out["files"], pre.opts.caps)
            return
        from ..engine import run
        from ..engine.spec import build_spec
        from ..engine.steps import default_shell
        try:
            spec = build_spec(pre.plan, list(command) or [default_shell()], pre.opts,
                              pass_fds=range(3, 3 + opts.preserve_fds))
        except (ValueError, TypeError, OSError) as e:
            raise IdrunError(f"cannot start the command: {e}",
                             "check the command line and --preserve-fds") from None
        run.run_cli(spec)
    except BaseException:
        pre.release()
        raise


def fail(args: list[str], line: str, message: str, hint: str | None, status: int) -> int:
    """Report an error: one line on stderr and, under --json, one object on stdout."""
    _line(sys.stderr, line)
    # Imports only under --json: this also runs in a child that has already
    # dropped its ids inside the namespace, where the library may be unreadable.
    own = args[:args.index("--")] if "--" in args else args
    if "--json" in own:
        from ..jsonout import dumps, error_doc
        _line(sys.stdout, dumps(error_doc(message, hint, status)))
    return status


def launch_main(kw: dict, command: tuple[str, ...], args: list[str]) -> int:
    """The exit status of a plain launch ``parse`` read from ``args`` (when the command
    is not exec'd): an error is one line, as click's path reports it."""
    try:
        launch(kw, command, args)
    except IdrunError as e:
        return fail(args, f"idrun: error: {e}", e.message, e.hint, e.exit_status)
    except (EOFError, KeyboardInterrupt):
        # As click's main does with them.
        _line(sys.stderr, "")
        return fail(args, "idrun: aborted", "aborted", None, EXIT_IDRUN)
    return 0
