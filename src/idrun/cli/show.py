"""``idrun show [PID]``: a process's uid_map, gid_map and setgroups as a table.

Outside ids are shown as the kernel gives them to the reader: relative to the
namespace ``idrun show`` runs in (for a process in the same namespace, relative
to its parent). ``--translate ID`` maps one id both ways through each map.
"""
from __future__ import annotations

import os

import click

from ..errors import IdrunError, quoted
from ..mapping.ranges import KINDS, IdMap, Line
from ..mapping.report import table
from ..mapping.syntax import decimal
from ..options import SHOW
from ..system import procfs
from .options import CONTEXT, SectionedCommand, table_options


def _process(pid: str) -> tuple[int, str, str | None]:
    """PID's number, name (comm) and user namespace (``user:[INODE]``)."""
    real = os.getpid() if pid == "self" else int(pid)
    return real, procfs.comm(pid), procfs.userns_inode(pid)


def _describe(pid: str) -> str:
    real, comm, ns = _process(pid)
    return f"process {real} ({comm}), {ns or 'user:[?]'}"


def _inode(ns: str | None) -> int | None:
    digits = (ns or "").removeprefix("user:[").removesuffix("]")
    return int(digits) if digits.isdigit() else None


def _table(kind: str, lines: list[Line]) -> list[str]:
    out = [f"{kind}_map:"]
    if not lines:
        out.append("  (empty: not written; every id shows as the overflow id)")
        return out
    rows: list[tuple] = [("INSIDE", "OUTSIDE", "COUNT", "RANGES")]
    for ln in lines:
        span = (f"{ln.inside}-{ln.inside_end - 1} -> {ln.outside}-{ln.outside_end - 1}"
                if ln.count > 1 else f"{ln.inside} -> {ln.outside}")
        rows.append((ln.inside, ln.outside, ln.count, span))
    # Ten digits hold any id, so the columns line up across maps and invocations.
    return out + table(rows, "rrrl", sep=("  ", "  ", "   "), min_width=(10, 10, 10))


def _translation(kind: str, lines: IdMap, ident: int) -> str:
    out_id = lines.outward(ident)
    in_id = lines.inward(ident)
    a = f"inside {ident} = outside {out_id}" if out_id is not None else \
        f"inside {ident} is not mapped"
    b = f"outside {ident} = inside {in_id}" if in_id is not None else \
        f"outside {ident} is not mapped (shows as the overflow id)"
    return f"{kind} {ident}: {a}; {b}"


def read_process(pid: str) -> dict:
    try:
        uid_map = procfs.read_map("uid", pid)
        gid_map = procfs.read_map("gid", pid)
    except FileNotFoundError:
        raise IdrunError(f"no process {pid}", "give the pid of a running process") from None
    except PermissionError as e:
        raise IdrunError(f"cannot read the maps of process {pid}: {e.strerror}",
                         "run as the process's owner or root") from None
    return {"pid": os.getpid() if pid == "self" else int(pid), "uid_map": uid_map,
            "gid_map": gid_map, "setgroups": procfs.read_setgroups(pid)}


@click.command("show", cls=SectionedCommand, context_settings=CONTEXT)
@click.argument("pid", required=False, default="self")
@table_options(SHOW)
def show_command(pid: str, ident: int | None, as_json: bool, leases: bool) -> None:
    """Show PID's uid_map, gid_map and setgroups (default: this process)."""
    if leases:
        _show_leases(as_json)
        return
    if pid != "self":
        number = decimal(pid)
        if number is None:
            raise IdrunError(f"idrun show: {quoted(pid)} is not a pid",
                             "give a decimal process id")
        # pid_max is at most 2**22 (PID_MAX_LIMIT): a longer number is no process,
        # and must not become a path longer than the kernel takes.
        if number > 4194304:
            raise IdrunError(f"no process {quoted(pid)}", "give the pid of a running process")
        pid = str(number)
    info = read_process(pid)
    if as_json:
        from ..jsonout import dumps
        _, comm, ns = _process(pid)
        doc = {"pid": info["pid"], "process": comm,
               "userns": {"link": ns, "inode": _inode(ns)},
               "setgroups": info["setgroups"],
               "uid_map": [ln.as_list() for ln in info["uid_map"]],
               "gid_map": [ln.as_list() for ln in info["gid_map"]]}
        if ident is not None:
            doc["translate"] = {
                kind: {"inside_to_outside": info[f"{kind}_map"].outward(ident),
                       "outside_to_inside": info[f"{kind}_map"].inward(ident)}
                for kind in KINDS}
        click.echo(dumps(doc))
        return
    out = [_describe(pid)]
    out += _table("uid", info["uid_map"])
    out += _table("gid", info["gid_map"])
    out.append(f"setgroups: {info['setgroups'] or 'n/a'}")
    if ident is not None:
        out.append(_translation("uid", info["uid_map"], ident))
        out.append(_translation("gid", info["gid_map"], ident))
    click.echo("\n".join(out))


def _show_leases(as_json: bool) -> None:
    from ..system.hostinfo import privileged
    from ..system.leases import leases_text, live_leases
    info = live_leases(rootless=not privileged())
    if as_json:
        from ..jsonout import dumps
        click.echo(dumps(info))
    else:
        click.echo(leases_text(info))
