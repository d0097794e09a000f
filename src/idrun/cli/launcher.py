"""Command line: ``idrun [OPTIONS] [--] COMMAND``, ``idrun map``, ``check``, ``show``.

Thin on purpose: options become a ``Request``; the library resolves and
launches. Every error leaves as one line on stderr with status 125 (podman's
convention), click's usage errors included.
"""
from __future__ import annotations

import sys

import click

from ..errors import EXIT_IDRUN, IdrunError
from ..options import LAUNCHER
from .options import CONTEXT, SectionedCommand, table_options
from .plain import SUBCOMMANDS, fail as _fail, launch


@click.command("idrun", cls=SectionedCommand,
               context_settings=dict(CONTEXT, allow_interspersed_args=False),
               epilog="Other commands: 'idrun map --help' (resolve and validate a mapping), "
                      "'idrun check --help' (diagnose rootless use on this host), "
                      "'idrun show --help' (show a process's maps). "
                      "Exit status: the command's own; 125 idrun's error; 126 not executable; "
                      "127 not found; 128+N killed by signal N.")
@table_options(LAUNCHER)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def launch_command(command: tuple[str, ...], **kw) -> None:
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
    # The launch itself is the plain path's (plain.py), which reads argv without click.
    launch(kw, command, (click.get_current_context().obj or {}).get("args"))


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
