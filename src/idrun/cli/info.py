"""The command line as data, read from the click commands (``cli/launcher.py``) and
the option table (``options.OPTIONS``, whose rows say how a shell completes each value).

The man pages (``manpage.py``) and the shell completions (``completion.py``)
are generated from this at build time, so an option added to the CLI appears
in both without anyone editing them. Not on the launch path.
"""
from __future__ import annotations

import inspect
from typing import NamedTuple

import click

from ..options import LAUNCHER, Option, options_of


class OptionInfo(NamedTuple):
    names: tuple[str, ...]          # every spelling, short ones first: ("-r", "--map-root-user")
    metavar: str | None             # None for a flag
    help: str
    section: str                    # the --help heading it is listed under
                                    # (options.SECTION_TITLES)
    kind: str | None = None         # how a shell completes the value (Option.complete)
    choices: tuple[str, ...] = ()   # the words it offers (Option.words)
    multiple: bool = False
    optional_value: bool = False    # --files or --files=N: a shell never takes the next word

    @property
    def takes_value(self) -> bool:
        return self.metavar is not None

    @property
    def takes_next_word(self) -> bool:
        """Whether the word after the option is its value (not for --files[=N])."""
        return self.takes_value and not self.optional_value

    @property
    def long(self) -> str:
        return self.names[-1]


class CommandInfo(NamedTuple):
    sub: str | None                 # None for the launcher, else "map", "check", "show"
    help: str
    epilog: str
    options: tuple[OptionInfo, ...]
    arguments: tuple[str, ...]      # metavars of the positional arguments

    @property
    def prog(self) -> str:
        return "idrun" if self.sub is None else f"idrun {self.sub}"


def _option(param: click.Option, section: str, row: Option | None) -> OptionInfo:
    """One click option, completed as its table row (None for --help) says."""
    names = tuple(sorted(param.opts + param.secondary_opts, key=lambda o: (o.startswith("--"), o)))
    if row is None or row.value is None:
        metavar, kind, choices = None, None, ()
    else:
        kind, choices = row.complete, row.words
        metavar = param.metavar or ("|".join(choices) if choices else param.type.name.upper())
    return OptionInfo(names=names, metavar=metavar, help=param.help or "",
                      section=section,
                      kind=kind, choices=choices, multiple=bool(param.multiple),
                      optional_value=bool(getattr(param, "_flag_needs_value", False)))


def describe(cmd: click.Command, sub: str | None) -> CommandInfo:
    from .options import section_of
    ctx = click.Context(cmd, info_name="idrun" if sub is None else f"idrun {sub}",
                        **cmd.context_settings)
    command = sub or LAUNCHER       # its name in the option table
    rows = {o.dest: o for o in options_of(command)}
    options, arguments = [], []
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            options.append(_option(param, section_of(command, param.name),
                                   rows.get(param.name)))
        elif isinstance(param, click.Argument):
            arguments.append(param.metavar or param.name.upper())
    return CommandInfo(sub=sub, help=inspect.cleandoc(cmd.help or ""), epilog=cmd.epilog or "",
                       options=tuple(options), arguments=tuple(arguments))


def commands() -> list[CommandInfo]:
    """The launcher first, then each subcommand in ``cli.SUBCOMMANDS`` order."""
    from .launcher import SUBCOMMANDS, subcommand, launch_command
    return [describe(launch_command, None)] + [describe(subcommand(s), s) for s in SUBCOMMANDS]
