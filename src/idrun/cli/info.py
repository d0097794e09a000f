"""The command line as data, read from the click definitions in ``cli/launcher.py``.

The man pages (``manpage.py``) and the shell completions (``completion.py``)
are generated from this at build time, so an option added to the CLI appears
in both without anyone editing them. Not on the launch path.
"""
from __future__ import annotations

import inspect
from typing import NamedTuple

import click

# Value kinds a shell can complete.
NONE, WORDS, USERS, FILES, DIRS = "none", "words", "users", "files", "dirs"
# -v SRC:DST[:OPTS]: a host path, then a path inside (nothing to offer), then these words.
VOLUME = "volume"
VOLUME_OPTIONS = ("ro", "rw", "idmap", "idmap=", "uid=", "gid=")

# --userns is free text (modes with options), so its mode names are listed here;
# tests/test_completion.py checks each one is accepted by the resolver.
USERNS_MODES = ("host", "keep-id", "nomap", "auto")

# Options whose value is a user name (the launcher's --user is UID[:GID], not a name).
_USER_NAME_PARAMS = {"subuidname", "subgidname"}
_USER_NAME_IN = {("check", "user")}


class OptionInfo(NamedTuple):
    names: tuple[str, ...]          # every spelling, short ones first: ("-r", "--map-root-user")
    metavar: str | None             # None for a flag
    help: str
    section: str                    # the --help heading it is listed under (cli.SECTIONS),
                                    # "Options" for a command without headings
    kind: str = NONE                # how a shell completes the value
    choices: tuple[str, ...] = ()   # the candidates when kind is WORDS (VOLUME: its OPTS)
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


def _value_kind(sub: str | None, param: click.Option) -> tuple[str, tuple[str, ...]]:
    if isinstance(param.type, click.Choice):
        return WORDS, tuple(str(c) for c in param.type.choices)
    if param.name == "userns":
        return WORDS, USERNS_MODES
    if param.name == "volumes":
        return VOLUME, VOLUME_OPTIONS
    if param.name in _USER_NAME_PARAMS or (sub, param.name) in _USER_NAME_IN:
        return USERS, ()
    meta = (param.metavar or "").upper().split("[")[0]     # "DIR[:idmap]" is a DIR
    if isinstance(param.type, click.Path):
        return (DIRS if param.type.dir_okay and not param.type.file_okay else FILES), ()
    if meta in ("FILE", "PATH") or meta.endswith("FILE"):
        return FILES, ()
    if meta in ("DIR", "DIRECTORY"):
        return DIRS, ()
    return NONE, ()


def _option(sub: str | None, param: click.Option, section: str) -> OptionInfo:
    names = tuple(sorted(param.opts + param.secondary_opts, key=lambda o: (o.startswith("--"), o)))
    if param.is_flag or param.count:
        metavar, kind, choices = None, NONE, ()
    else:
        kind, choices = _value_kind(sub, param)
        metavar = param.metavar or ("|".join(choices) if choices else param.type.name.upper())
    return OptionInfo(names=names, metavar=metavar, help=param.help or "",
                      section=section,
                      kind=kind, choices=choices, multiple=bool(param.multiple),
                      optional_value=bool(getattr(param, "_flag_needs_value", False)))


def describe(cmd: click.Command, sub: str | None) -> CommandInfo:
    from .options import SectionedCommand, section_of
    ctx = click.Context(cmd, info_name="idrun" if sub is None else f"idrun {sub}",
                        **cmd.context_settings)
    sectioned = isinstance(cmd, SectionedCommand)
    options, arguments = [], []
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            section = section_of(param.name) if sectioned else "Options"
            options.append(_option(sub, param, section))
        elif isinstance(param, click.Argument):
            arguments.append(param.metavar or param.name.upper())
    return CommandInfo(sub=sub, help=inspect.cleandoc(cmd.help or ""), epilog=cmd.epilog or "",
                       options=tuple(options), arguments=tuple(arguments))


def commands() -> list[CommandInfo]:
    """The launcher first, then each subcommand in ``cli.SUBCOMMANDS`` order."""
    from .launcher import SUBCOMMANDS, subcommand, launch_command
    return [describe(launch_command, None)] + [describe(subcommand(s), s) for s in SUBCOMMANDS]
