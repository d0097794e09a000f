"""``idrun map``: resolve and validate a mapping, start nothing.

Its own module, as ``check`` and ``show`` are, so a launch does not build this
command's options; it shares the launcher's option groups and plan output (cli).
"""
from __future__ import annotations

import click

from .cli import (_CONTEXT, _SectionedCommand, _cap_options, _files_option, _mapping_options,
                  _mount_options, _mount_request, _request, _say, _show_plan, _verified,
                  _verify_mounts)
from .errors import IdrunError


@click.command("map", cls=_SectionedCommand, context_settings=_CONTEXT)
@_mapping_options
@click.option("--rootless", is_flag=True,
              help="Resolve as an unprivileged user would, even as root.")
@click.option("--caller", metavar="USER[:GID]",
              help="Resolve for this caller (login name or uid; GID defaults to the user's "
                   "primary gid) instead of you. A caller other than 0 implies --rootless.")
@click.option("--subuid-file", metavar="FILE", help="Read FILE instead of /etc/subuid.")
@click.option("--subgid-file", metavar="FILE", help="Read FILE instead of /etc/subgid.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--verify", is_flag=True,
              help="Also have the kernel take the maps: a throwaway namespace gets them "
                   "written as a launch would, they are read back, nothing is run. With "
                   "mounts, each id-mapped one is built and dropped, and a line says what "
                   "this kernel can do (mount_setattr, id-mapped mounts) and how it builds "
                   "each mount.")
@_mount_options
@_files_option
@_cap_options
def map_command(rootless: bool, caller: str | None, subuid_file: str | None,
                subgid_file: str | None, as_json: bool, verify: bool, files: int | None,
                **kw) -> None:
    """Resolve and validate a mapping without starting anything.

    Prints the exact uid_map/gid_map lines idrun would write; rootless, also the
    intermediate table (0 = you, then your sub-id ranges sorted by start) and
    the newuidmap/newgidmap arguments. Exit 0 when valid, 125 with the reason
    when not.
    """
    from .hostinfo import parse_caller
    from .options import launch_options
    from .prelaunch import prelaunch
    if verify and (rootless or caller or subuid_file or subgid_file):
        raise IdrunError("--verify checks the mapping on this kernel as you; it cannot "
                         "simulate another caller or sub-id file",
                         "drop --rootless/--caller/--subuid-file/--subgid-file, or run "
                         "--verify as that user")
    if files is not None:
        from .options import check_files
        check_files(files, bool(kw["volumes"] or kw["rootfs"]))
    who = parse_caller(caller) if caller else None
    # Only root resolves rootful: any other caller would run idrun rootless.
    opts = launch_options(cap_add=kw.pop("cap_add"), cap_drop=kw.pop("cap_drop"))
    pre = prelaunch(_request(kw), opts, _mount_request(kw), hold=False,
                    rootless=True if rootless or (who and who[0] != 0) else None,
                    caller=who, subuid_file=subuid_file, subgid_file=subgid_file)
    _say(pre)
    plan, mplan = pre.plan, pre.mounts
    _verify_mounts(plan, mplan, verify)
    _show_plan(plan, as_json, _verified(plan, verify), mplan, files, pre.opts.caps)
