"""Command line: ``idrun [OPTIONS] [--] COMMAND``, ``idrun map``, ``check``, ``show``.

Thin on purpose: options become a ``Request``; the library resolves and
launches. Every error leaves as one line on stderr with status 125 (podman's
convention), click's usage errors included.
"""
from __future__ import annotations

import sys
from typing import Callable

import click

from .errors import EXIT_IDRUN, IdrunError
from .options import (BY_DEST, CAPS, CHOICE, DECIMAL, LAUNCH, LAUNCHER,
                      MOUNT, OPTIONS, REQUEST, SECTION_TITLES, Option, options_of)
from .plan import Request

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DecimalParam(click.ParamType):
    """A decimal number from 0 to ``limit``, read by idrun's one decimal parser."""

    name = "number"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        from .syntax import decimal
        number = decimal(value)
        if number is None or number > self.limit:
            from .errors import quoted
            why = "is not a decimal number" if number is None else f"is larger than {self.limit}"
            self.fail(f"{quoted(value)} {why}", param, ctx)
        return number


# Help sections, in order, with the options each lists (from options.OPTIONS); an option
# not listed (--help) goes to the last one. --help and the man pages (manpage.py, via
# cliinfo) share these headings.
SECTIONS = {title: tuple(dict.fromkeys(o.dest for o in OPTIONS if o.section == title))
            for title in SECTION_TITLES}


def section_of(name: str | None) -> str:
    """The help section of the option whose click name is ``name``."""
    return next((t for t, names in SECTIONS.items() if name in names), "Output options")


def _show_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


class _SectionedCommand(click.Command):
    """Options listed under the headings of ``SECTIONS``."""

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        # click's own translates its help text through gettext on every run, a search
        # for message catalogues that costs a launch about 1.5 ms; same option, plain text.
        names = self.get_help_option_names(ctx)
        if not names or not self.add_help_option:
            return None
        return click.Option(names, is_flag=True, is_eager=True, expose_value=False,
                            callback=_show_help, help="Show this message and exit.")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {title: [] for title in SECTIONS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                rows[section_of(param.name)].append(record)
        for title, records in rows.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _click_option(o: Option) -> Callable:
    """The click decorator of one row of the option table."""
    if o.dest == "version":
        return click.option(*o.names, is_flag=True, expose_value=False, is_eager=True,
                            callback=_print_version, help=o.help)
    kw: dict = {"help": o.help}
    if o.value is None:
        kw["is_flag"] = True
    elif o.parse == CHOICE:
        kw["type"] = click.Choice(list(o.choices))      # click shows them as the metavar
    else:
        kw["metavar"] = o.value
        if o.parse == DECIMAL:
            kw["type"] = DecimalParam(o.limit)
    if o.multiple:
        kw["multiple"] = True
    if o.default is not None:
        kw["default"] = o.default
    if o.bare is not None:
        kw.update(is_flag=False, flag_value=o.bare)
    return click.option(*o.names, o.dest, **kw)


def table_options(command: str) -> Callable:
    """Decorate a click command with the options the table gives ``command``, in order."""
    def apply(f: Callable) -> Callable:
        for o in reversed(options_of(command)):
            f = _click_option(o)(f)
        return f
    return apply


def take_options(kw: dict, *kinds: str) -> dict:
    """The values of the options of ``kinds`` (options.REQUEST, LAUNCH, …), removed from
    ``kw``."""
    return {o.dest: kw.pop(o.dest) for o in OPTIONS if o.goes_to in kinds and o.dest in kw}


def _mount_request(kw: dict):
    """--volume/--tmpfs/--rootfs/--workdir (removed from ``kw``) as a MountRequest, or
    None when none is given (the mount modules then stay unloaded)."""
    # An empty --rootfs/--workdir is refused by the parser like -v "", not dropped.
    values = take_options(kw, MOUNT)
    if all(value == BY_DEST[dest].initial for dest, value in values.items()):
        return None
    from .volumes import MountRequest
    return MountRequest(**values)


def _request(kw: dict) -> Request:
    """The mapping options (removed from ``kw``) as a Request."""
    return Request(**take_options(kw, REQUEST))


def version_text() -> str:
    """What ``-V``/``--version`` prints: idrun's version, the Python, the native part
    (none since the C extension was removed; the line stays for scripts that read it)."""
    import platform
    from . import __version__
    return (f"idrun {__version__}\n"
            f"Python {platform.python_version()} ({sys.executable})\n"
            "native part: none (pure Python)")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


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


def _say(pre) -> None:
    """A prelaunch's notes and warnings, on stderr, before anything starts."""
    for note in pre.notes:
        click.echo(f"idrun: note: {note}", err=True)
    for w in pre.warnings:
        click.echo(f"idrun: warning: {w}", err=True)


def _verified(plan, verify: bool):
    """With --verify: the maps the kernel accepted for a throwaway namespace."""
    if not verify:
        return None
    from .engine import verify as verify_on_kernel
    return verify_on_kernel(plan)


def _verify_mounts(plan, mplan, verify: bool) -> None:
    """With --verify: build every id-mapped mount detached, then drop it again; the
    kernel's refusal (filesystem type, errno) is the usual one-line error."""
    if verify and mplan is not None:
        from .engine import idmap_userns
        from .mounts import prepare
        prepare(mplan, plan.rootless, idmap_userns, verify_only=True).release()


def _file_owners(plan, mplan, limit: int | None) -> list | None:
    """With --files: the owners under each volume's (and the rootfs') source, read now
    and translated as the mount will show them; None for a tmpfs."""
    if limit is None or mplan is None:
        return None
    from .ownerscan import count_owners
    from .ownership import preview
    return [None if m.kind == "tmpfs" else preview(m, plan, count_owners(m.src, limit))
            for m in mplan.mounts]


def _show_plan(plan, as_json: bool, verified=None, mplan=None, files: int | None = None,
               caps=None) -> None:
    import os
    from .report import mounts_dict, mounts_text, plan_dict, plan_text
    owners = _file_owners(plan, mplan, files)
    if as_json:
        from .jsonout import dumps
        d = plan_dict(plan)
        if mplan is not None:
            d.update(mounts_dict(mplan, owners))
        if caps is not None:
            from .caps import names
            d["capabilities"] = names(caps)
        if verified is not None:
            from .ranges import IdMap
            d["verified"] = {"uid_map": [list(ln) for ln in IdMap.parse(verified.uid_map)],
                             "gid_map": [list(ln) for ln in IdMap.parse(verified.gid_map)],
                             "setgroups": verified.setgroups,
                             "kernel": os.uname().release}
            if mplan is not None:
                from . import kernelfeatures
                d["verified"]["idmapped_mounts"] = sum(m.idmap is not None
                                                       for m in mplan.mounts)
                d["verified"]["kernel_features"] = kernelfeatures.features()
                d["verified"]["mount_calls"] = [kernelfeatures.how_built(m)
                                                for m in mplan.mounts]
        click.echo(dumps(d))
    else:
        click.echo(plan_text(plan))
        if mplan is not None:
            click.echo(mounts_text(mplan, owners))
        if caps is not None:
            from .caps import describe
            click.echo(f"capabilities of the command: {describe(caps)}")
        if verified is not None:
            click.echo(f"verified on Linux {os.uname().release}: a throwaway namespace took "
                       "these maps (read back from /proc):")
            for kind, text in (("uid_map", verified.uid_map), ("gid_map", verified.gid_map)):
                lines = [" ".join(ln.split()) for ln in text.splitlines()] or ["(empty)"]
                click.echo(f"  {kind}: " + "; ".join(lines))
            click.echo(f"  setgroups: {verified.setgroups}")
            if mplan is not None:
                from . import kernelfeatures
                n = sum(m.idmap is not None for m in mplan.mounts)
                click.echo(f"  id-mapped mounts: {n} built detached and dropped again")
                click.echo(f"  kernel: {kernelfeatures.summary()}")
                for m in mplan.mounts:
                    click.echo(f"  {m.origin}: {kernelfeatures.how_built(m)}")


@click.command("idrun", cls=_SectionedCommand,
               context_settings=dict(_CONTEXT, allow_interspersed_args=False),
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
    from .options import check_output_flags, launch_options
    from .prelaunch import prelaunch
    check_output_flags(as_json=as_json, verify=verify, dry_run=dry_run,
                       json_status_fd=kw["json_status_fd"], files=files,
                       sources=bool(kw["volumes"] or kw["rootfs"]))
    opts = launch_options(**take_options(kw, LAUNCH, CAPS))
    request = _request(kw)
    if not any(getattr(request, o.dest) for o in OPTIONS if o.chooses_mapping):
        _check_late_options(command)
    # --userns=auto: this process (which becomes the command, or waits for it) owns
    # the lease; a failed launch gives it back, a finished one leaves it to be reclaimed.
    pre = prelaunch(request, opts, _mount_request(kw), hold=not dry_run)
    try:
        _say(pre)
        if dry_run:
            _verify_mounts(pre.plan, pre.mounts, verify)
            _show_plan(pre.plan, as_json, _verified(pre.plan, verify), pre.mounts, files,
                       pre.opts.caps)
            return
        from . import engine
        from .launch import default_shell
        try:
            spec = engine.build_spec(pre.plan, list(command) or [default_shell()], pre.opts,
                                     pass_fds=range(3, 3 + opts.preserve_fds))
        except (ValueError, TypeError, OSError) as e:
            raise IdrunError(f"cannot start the command: {e}",
                             "check the command line and --preserve-fds") from None
        engine.run_cli(spec)
    except BaseException:
        pre.release()
        raise

SUBCOMMANDS = ("map", "check", "show")


def __getattr__(name: str):
    # The subcommands live in their own modules, built only when used.
    if name in ("map_command", "check_command", "show_command"):
        return _subcommand(name[:-len("_command")])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _subcommand(name: str) -> click.Command:
    if name == "map":
        from .mapcmd import map_command
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
            from .errors import quoted
            message = f"idrun help: no command {quoted(args[1])}"
            hint = (f"the commands are {', '.join(SUBCOMMANDS)}; 'idrun help' shows the "
                    "launcher's options")
            return _fail(args, f"idrun: error: {message}; hint: {hint}", message, hint,
                         EXIT_IDRUN)
        args = args[1:2] + ["--help"]
    # A first word naming a subcommand selects it; anything else is the launcher,
    # whose command comes after its options (or after "--").
    if args and args[0] in SUBCOMMANDS:
        cmd, args, prog = _subcommand(args[0]), args[1:], f"idrun {args[0]}"
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
        from .jsonout import dumps, error_doc
        click.echo(dumps(error_doc(message, hint, status)))
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
