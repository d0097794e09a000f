"""The options, help sections and output helpers shared by the launcher,
``idrun map``, ``check`` and ``show``.
"""
import sys
from typing import Callable

import click

from ..mapping.plan import Request
from ..options import (BY_DEST, CHOICE, DECIMAL, MOUNT, OPTIONS, REQUEST, SECTION_TITLES, Option,
                       options_of)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DecimalParam(click.ParamType):
    """A decimal number from 0 to ``limit``, read by idrun's one decimal parser."""

    name = "number"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        from ..mapping.syntax import decimal
        number = decimal(value)
        if number is None or number > self.limit:
            from ..errors import quoted
            why = "is not a decimal number" if number is None else f"is larger than {self.limit}"
            self.fail(f"{quoted(value)} {why}", param, ctx)
        return number


def section_of(command: str, name: str | None) -> str:
    """The help section (options.SECTION_TITLES) of ``command``'s option whose click name
    is ``name``, from the table; an option it lacks (--help) goes under the command's
    last heading. --help and the man pages (manpage.py, via info.py) share them."""
    rows = options_of(command)
    return next((o.section for o in rows if o.dest == name),
                max((o.section for o in rows), key=SECTION_TITLES.index))


def _show_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


class SectionedCommand(click.Command):
    """Options listed under the table's headings (options.SECTION_TITLES); the command's
    name is its name in the table (options.LAUNCHER, MAP, CHECK, SHOW)."""

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        # click's own translates its help text through gettext on every run, a search
        # for message catalogues that costs a launch about 1.5 ms; same option, plain text.
        names = self.get_help_option_names(ctx)
        if not names or not self.add_help_option:
            return None
        return click.Option(names, is_flag=True, is_eager=True, expose_value=False,
                            callback=_show_help, help="Show this message and exit.")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {title: [] for title in SECTION_TITLES}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                rows[section_of(self.name, param.name)].append(record)
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


def version_text() -> str:
    """What ``-V``/``--version`` prints: idrun's version, the Python, the native part
    (none since the C extension was removed; the line stays for scripts that read it)."""
    import platform
    from .. import __version__
    return (f"idrun {__version__}\n"
            f"Python {platform.python_version()} ({sys.executable})\n"
            "native part: none (pure Python)")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def verified_maps(plan, verify: bool):
    """With --verify: the maps the kernel accepted for a throwaway namespace."""
    if not verify:
        return None
    from ..engine.run import verify as verify_on_kernel
    return verify_on_kernel(plan)


def verify_mounts(plan, mplan, verify: bool) -> None:
    """With --verify: build every id-mapped mount detached, then drop it again; the
    kernel's refusal (filesystem type, errno) is the usual one-line error."""
    if verify and mplan is not None:
        from ..engine.run import idmap_userns
        from ..engine.mounts import prepare
        prepare(mplan, plan.rootless, idmap_userns, verify_only=True).release()


def _file_owners(plan, mplan, limit: int | None) -> list | None:
    """With --files: the owners under each volume's (and the rootfs') source, read now
    and translated as the mount will show them; None for a tmpfs."""
    if limit is None or mplan is None:
        return None
    from ..system.ownerscan import count_owners
    from ..mapping.ownership import preview
    return [None if m.kind == "tmpfs" else preview(m, plan, count_owners(m.src, limit))
            for m in mplan.mounts]


def show_plan(plan, as_json: bool, verified=None, mplan=None, files: int | None = None,
               caps=None) -> None:
    import os
    from ..mapping.report import mounts_dict, mounts_text, plan_dict, plan_text
    owners = _file_owners(plan, mplan, files)
    if as_json:
        from ..jsonout import dumps
        d = plan_dict(plan)
        if mplan is not None:
            d.update(mounts_dict(mplan, owners))
        if caps is not None:
            from ..system.caps import names
            d["capabilities"] = names(caps)
        if verified is not None:
            from ..mapping.ranges import IdMap
            d["verified"] = {"uid_map": [list(ln) for ln in IdMap.parse(verified.uid_map)],
                             "gid_map": [list(ln) for ln in IdMap.parse(verified.gid_map)],
                             "setgroups": verified.setgroups,
                             "kernel": os.uname().release}
            if mplan is not None:
                from ..system import kernelfeatures
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
            from ..system.caps import describe
            click.echo(f"capabilities of the command: {describe(caps)}")
        if verified is not None:
            click.echo(f"verified on Linux {os.uname().release}: a throwaway namespace took "
                       "these maps (read back from /proc):")
            for kind, text in (("uid_map", verified.uid_map), ("gid_map", verified.gid_map)):
                lines = [" ".join(ln.split()) for ln in text.splitlines()] or ["(empty)"]
                click.echo(f"  {kind}: " + "; ".join(lines))
            click.echo(f"  setgroups: {verified.setgroups}")
            if mplan is not None:
                from ..system import kernelfeatures
                n = sum(m.idmap is not None for m in mplan.mounts)
                click.echo(f"  id-mapped mounts: {n} built detached and dropped again")
                click.echo(f"  kernel: {kernelfeatures.summary()}")
                for m in mplan.mounts:
                    click.echo(f"  {m.origin}: {kernelfeatures.how_built(m)}")
