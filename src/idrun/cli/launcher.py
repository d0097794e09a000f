"""Command line: ``idrun [OPTIONS] [--] COMMAND``, ``idrun map``, ``check``, ``show``.

Thin on purpose: options become a ``Request``; the library resolves and
launches. Every error leaves as one line on stderr with status 125 (podman's
convention), click's usage errors included.
"""
from __future__ import annotations

import sys
from typing import Callable

import click

from ..errors import EXIT_IDRUN, IdrunError
from ..mapping.plan import Request
from ..options import (BY_DEST, CAPS, CHOICE, DECIMAL, LAUNCH, LAUNCHER, MOUNT, OPTIONS, REQUEST,
                       SECTION_TITLES, Option, options_of)
from .options import (CONTEXT, SectionedCommand, mount_request, request_from, say, show_plan,
                      table_options, take_options, verified_maps, verify_mounts)


# The launcher's long options that describe a mapping, and whether each takes a value;
# not -r/-c, which many commands take themselves (sh -c).
_MAPPING_OPTS = {o.long: o.value is not None for o in OPTIONS if o.chooses_mapping}


def _check_late_options(command: tuple[str, ...]) -> None:
    """Without a mapping of its own, idrun would run the default one and hand a mapping
    option typed after the command to the command ('idrun id --uidmap 0:1:1'): refuse
    that, unless '--' said the command starts there, and show the line meant."""
    ctx = click.get_current_context()
    args = (ctx.obj or {}).get("args")
    if not args or not command:         # not run through main(): the words are unknown
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


@click.command("idrun", cls=SectionedCommand,
               context_settings=dict(CONTEXT, allow_interspersed_args=False),
               epilog="Other commands: 'idrun map --help' (resolve and validate a mapping), "
                      "'idrun check --help' (diagnose rootless use on this host), "
                      "'idrun show --help' (show a process's maps). "
                      "Exit status: the command's own; 125 idrun's error; 126 not executable; "
                      "127 not found; 128+N killed by signal N.")
@table_options(LAUNCHER)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def launch_command(command: tuple[str, ...], dry_run: bool, as_json: bool, verify: bool,
                   files: int | None, **kw) -> None:
    """Run COMMAND (default: your shell) in a new user namespace.

    Without a mapping option the default is podman unshare's rootless (0 = you, 1… =
    your sub-ids) and, as root, root alone mapped to itself; 'idrun map' shows it.

    \b
    Examples:
      idrun --uidmap 0:1000:1 -- id           # as root: host uid 1000 is root inside
      idrun -r -- id                          # rootless: you are root inside
      idrun --userns keep-id -- id            # rootless: you keep your uid, sub-ids around it
      idrun --uidmap 0:1:65536 -- id          # rootless: container 0… = your sub-ids
      idrun map --userns keep-id              # show what a mapping resolves to
    """
    from ..options import check_output_flags, launch_options
    from ..engine.prelaunch import prelaunch
    check_output_flags(as_json=as_json, verify=verify, dry_run=dry_run,
                       json_status_fd=kw["json_status_fd"], files=files,
                       sources=bool(kw["volumes"] or kw["rootfs"]))
    opts = launch_options(**take_options(kw, LAUNCH, CAPS))
    request = request_from(kw)
    if not any(getattr(request, o.dest) for o in OPTIONS if o.chooses_mapping):
        _check_late_options(command)
    # --userns=auto: this process (which becomes the command, or waits for it) owns
    # the lease; a failed launch gives it back, a finished one leaves it to be reclaimed.
    pre = prelaunch(request, opts, mount_request(kw), hold=not dry_run)
    try:
        say(pre)
        if dry_run:
            verify_mounts(pre.plan, pre.mounts, verify)
            show_plan(pre.plan, as_json, verified_maps(pre.plan, verify), pre.mounts, files,
                       pre.opts.caps)
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

SUBCOMMANDS = ("map", "check", "show")


def __getattr__(name: str):
    # The subcommands live in their own modules, built only when used.
    if name in ("map_command", "check_command", "show_command"):
        return subcommand(name[:-len("_command")])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def subcommand(name: str) -> click.Command:
    if name == "map":
        from .map import map_command
        return map_command
    if name == "check":
        from .check import check_command
        return check_command
    from .show import show_command
    return show_command


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["help"]:
        # 'idrun help [SUBCOMMAND]' is '--help' of that command; a command named
        # help still runs as 'idrun -- help'.
        if args[1:2] and args[1] not in SUBCOMMANDS:
            from ..errors import quoted
            message = f"idrun help: no command {quoted(args[1])}"
            hint = (f"the commands are {', '.join(SUBCOMMANDS)}; 'idrun help' shows the "
                    "launcher's options")
            return _fail(args, f"idrun: error: {message}; hint: {hint}", message, hint,
                         EXIT_IDRUN)
        args = args[1:2] + ["--help"]
    # A first word naming a subcommand selects it; anything else is the launcher,
    # whose command comes after its options (or after "--").
    if args and args[0] in SUBCOMMANDS:
        cmd, args, prog = subcommand(args[0]), args[1:], f"idrun {args[0]}"
    else:
        cmd, prog = launch_command, "idrun"
    try:
        if prog in ("idrun", "idrun map"):
            args = _peer_spellings(cmd, args)
        rv = cmd.main(args, prog_name=prog, standalone_mode=False, obj={"args": args})
        return rv if isinstance(rv, int) else 0
    except IdrunError as e:
        return _fail(args, f"idrun: error: {e}", e.message, e.hint, e.exit_status)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        return _fail(args, "idrun: aborted", "aborted", None, EXIT_IDRUN)
    except click.ClickException as e:
        hint = f"see '{prog} --help'"
        # click ends its sentences with '.'; ours continue with '; hint: …'.
        message = e.format_message().rstrip(".")
        return _fail(args, f"idrun: error: {message}; hint: {hint}", message, hint, EXIT_IDRUN)


def _peer_spellings(cmd: click.Command, args: list[str]) -> list[str]:
    """unshare's, bubblewrap's and podman's spellings of idrun's options (peers.py)."""
    options = [p for p in cmd.params if isinstance(p, click.Option)]
    known = {o for p in options for o in (*p.opts, *p.secondary_opts)}
    known.update(("--", "-h", "--help"))
    valued = [o for p in options if not p.is_flag for o in (*p.opts, *p.secondary_opts)]
    # Most command lines spell only idrun's own options: then peers.py stays unloaded.
    own = args[:args.index("--")] if "--" in args else args
    if all(w[:1] != "-" or w in known or w.partition("=")[0] in valued for w in own):
        return args
    from .peers import translate
    return translate(args, frozenset(valued),
                     "".join(o[1] for o in valued if len(o) == 2 and o[0] == "-"))


def _fail(args: list[str], line: str, message: str, hint: str | None, status: int) -> int:
    """Report an error: one line on stderr and, under --json, one object on stdout."""
    click.echo(line, err=True)
    # Imports only under --json: this also runs in a child that has already
    # dropped its ids inside the namespace, where the library may be unreadable.
    own = args[:args.index("--")] if "--" in args else args
    if "--json" in own:
        from ..jsonout import dumps, error_doc
        click.echo(dumps(error_doc(message, hint, status)))
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
