"""``idrun map``: resolve and validate a mapping, start nothing.

Its own module, as ``check`` and ``show`` are, so a launch does not build this
command's options; its options are the table's (options.OPTIONS, as the launcher's), its
plan output the launcher's (cli).
"""
from __future__ import annotations

import click

from ..errors import IdrunError
from ..options import CAPS, MAP
from .options import CONTEXT, SectionedCommand, show_plan, table_options, verified_maps, verify_mounts
from .plain import mount_request, request_from, say, take_options


@click.command("map", cls=SectionedCommand, context_settings=CONTEXT)
@table_options(MAP)
def map_command(rootless: bool, caller: str | None, subuid_file: str | None,
                subgid_file: str | None, as_json: bool, verify: bool, files: int | None,
                **kw) -> None:
    """Resolve and validate a mapping without starting anything.

    Prints the exact uid_map/gid_map lines idrun would write; rootless, also the
    intermediate table (0 = you, then your sub-id ranges sorted by start) and
    the newuidmap/newgidmap arguments. Exit 0 when valid, 125 with the reason
    when not.
    """
    from ..system.hostinfo import parse_caller
    from ..options import launch_options
    from ..engine.prelaunch import prelaunch
    if verify and (rootless or caller or subuid_file or subgid_file):
        raise IdrunError("--verify checks the mapping on this kernel as you; it cannot "
                         "simulate another caller or sub-id file",
                         "drop --rootless/--caller/--subuid-file/--subgid-file, or run "
                         "--verify as that user")
    if files is not None:
        from ..options import check_files
        check_files(files, bool(kw["volumes"] or kw["rootfs"]))
    who = parse_caller(caller) if caller else None
    # Only root resolves rootful: any other caller would run idrun rootless.
    opts = launch_options(**take_options(kw, CAPS))
    pre = prelaunch(request_from(kw), opts, mount_request(kw), hold=False,
                    rootless=True if rootless or (who and who[0] != 0) else None,
                    caller=who, subuid_file=subuid_file, subgid_file=subgid_file)
    say(pre)
    plan, mplan = pre.plan, pre.mounts
    verify_mounts(plan, mplan, verify)
    show_plan(plan, as_json, verified_maps(plan, verify), mplan, files, pre.opts.caps)
