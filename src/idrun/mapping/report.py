"""How a plan is shown to people (tables) and to programs (a JSON-ready dict)."""
from __future__ import annotations

from typing import Sequence

from .plan import HELPERS, WRITER_HELPER, KindPlan, Plan
from .ranges import KINDS, IdMap, Line



def _triples(lines: tuple[Line, ...] | list[Line]) -> list[list[int]]:
    return [ln.as_list() for ln in lines]


def helper_argv(kp: KindPlan, helper: str | None = None, target: str = "PID") -> list[str] | None:
    """The exact newuidmap/newgidmap command line, or None when no helper runs."""
    if kp.writer != WRITER_HELPER:
        return None
    return [helper or HELPERS[kp.kind], target] + kp.helper_args()


def plan_dict(plan: Plan, helpers: dict[str, str] | None = None) -> dict:
    helpers = helpers or {}
    out: dict = {
        "mode": plan.mode,
        "userns": plan.userns,
        "caller": {"uid": plan.caller_uid, "gid": plan.caller_gid},
        "uid_map": _triples(plan.uid.lines),
        "gid_map": _triples(plan.gid.lines),
        "container_map": {"uid": _triples(plan.uid.container),
                          "gid": _triples(plan.gid.container)},
        "writer": {"uid": plan.uid.writer, "gid": plan.gid.writer},
        "setgroups": plan.setgroups,
        "user": {"uid": plan.user_uid, "gid": plan.user_gid},
        "groups": list(plan.groups),
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
    }
    if plan.rootless:
        out["intermediate"] = {"uid": _triples(plan.uid.intermediate),
                               "gid": _triples(plan.gid.intermediate)}
        out["newuidmap"] = helper_argv(plan.uid, helpers.get("uid"))
        out["newgidmap"] = helper_argv(plan.gid, helpers.get("gid"))
    return out


def _three_step_rows(kp: KindPlan) -> list[tuple[int, int, int, int]]:
    """(container, intermediate, host, count) rows, one per run of consecutive host ids.

    A container line is cut wherever its intermediate ids cross from one
    intermediate line (sub-id range) to the next, because the host ids jump
    there: one row per line would show host ids the mapping does not use.
    """
    inter = IdMap(kp.intermediate)
    pieces, _ = inter.split(kp.container, translate=False)
    return [(p.inside, p.outside, inter.outward(p.outside), p.count) for p in pieces]


def table(rows: Sequence[Sequence[object]], align: str, indent: str = "  ",
          sep: str | Sequence[str] = "  ", min_width: Sequence[int] = ()) -> list[str]:
    """The one text table of idrun's output: a line per row, columns as wide as their
    widest cell (at least ``min_width``), aligned right ("r") or left ("l") by
    ``align``; ``sep`` goes between columns (one string, or one per gap). A left
    aligned last column is not padded, so no line ends in blanks."""
    cells = [[str(x) for x in row] for row in rows]
    widths = [max([len(row[i]) for row in cells] + [min_width[i] if i < len(min_width) else 0])
              for i in range(len(align))]
    seps = [sep] * (len(align) - 1) if isinstance(sep, str) else list(sep)
    last = len(align) - 1
    out = []
    for row in cells:
        parts = [x.rjust(w) if a == "r" else (x if i == last else x.ljust(w))
                 for i, (x, w, a) in enumerate(zip(row, widths, align))]
        out.append(indent + parts[0] + "".join(s + p for s, p in zip(seps, parts[1:])))
    return out


def _table(rows: list[tuple], header: tuple) -> list[str]:
    return table([header, *rows], "r" * len(header))


def plan_text(plan: Plan, helpers: dict[str, str] | None = None) -> str:
    helpers = helpers or {}
    out = [f"mode: {plan.mode} (caller uid {plan.caller_uid}, gid {plan.caller_gid})"]
    if not plan.userns:
        out.append("no user namespace: the command runs with the caller's own ids")
    for kp in (plan.uid, plan.gid):
        k = kp.kind
        if plan.rootless:
            out.append(f"{k} intermediate map (intermediate → host):")
            out += _table([(ln.inside, ln.outside, ln.count) for ln in kp.intermediate],
                          ("intermediate", "host", "count"))
            out.append(f"{k} map (container → intermediate → host):")
            out += _table(_three_step_rows(kp), ("container", "intermediate", "host", "count"))
        else:
            out.append(f"{k} map (container → host):")
            out += _table([(ln.inside, ln.outside, ln.count) for ln in kp.container],
                          ("container", "host", "count"))
        if not kp.lines:
            out.append(f"{k}_map: not written")
            continue
        out.append(f"{k}_map to write ({kp.writer}):")
        out += ["  " + line for line in kp.text.splitlines()]
        argv = helper_argv(kp, helpers.get(k))
        if argv:
            out.append("  $ " + " ".join(argv))
    out.append(f"setgroups: {plan.setgroups}")
    if plan.userns:
        groups = ",".join(map(str, plan.groups)) or "none"
        uid = "unchanged" if plan.user_uid is None else plan.user_uid
        gid = "unchanged" if plan.user_gid is None else plan.user_gid
        out.append(f"runs as: uid {uid}, gid {gid}, supplementary groups {groups}")
    out += [f"note: {n}" for n in plan.notes]
    return "\n".join(out)


def _mount_options(m) -> list[str]:
    opts = ["ro" if m.readonly else "rw"]
    if m.data:
        opts.append(m.data)
    if m.idmap is not None:
        opts.append("idmap")
    return opts


def mounts_dict(mplan, files=None) -> dict:
    """The mounts of a volumes.MountPlan; idmapped ones with the mapping namespace's maps;
    with ``files`` (an ownership.FilesPreview or None per mount, from --files) their owners."""
    mounts = []
    for i, m in enumerate(mplan.mounts):
        d = {"kind": m.kind, "source": m.src, "destination": m.dst,
             "options": _mount_options(m),
             "idmap": None if m.idmap is None else
             {"uid_map": _triples(m.idmap.uid), "gid_map": _triples(m.idmap.gid)}}
        if files and files[i] is not None:
            d["files"] = files_dict(files[i])
        mounts.append(d)
    return {"mounts": mounts, "rootfs": mplan.rootfs, "workdir": mplan.workdir,
            "mount_warnings": list(mplan.warnings), "mount_notes": list(mplan.notes)}


def mounts_text(mplan, files=None) -> str:
    out = ["mounts (new mount namespace, private propagation):" if mplan.mounts
           else "mounts: none"]
    for i, m in enumerate(mplan.mounts):
        src = "" if m.kind == "tmpfs" else f"{m.src} "
        out.append(f"  {m.kind} {src}on {m.dst} ({','.join(_mount_options(m))})")
        if m.idmap is not None:
            for kind, lines in (("uid", m.idmap.uid), ("gid", m.idmap.gid)):
                out.append(f"    {kind}_map of the mapping namespace:")
                out += ["      " + f"{ln.inside} {ln.outside} {ln.count}" for ln in lines]
        if files and files[i] is not None:
            out.append(files_text(files[i]))
    if mplan.workdir is not None:
        out.append(f"workdir: {mplan.workdir}")
    out += [f"note: {n}" for n in mplan.notes]
    return "\n".join(out)


# --- idrun map --files: the owners under each mount's source ---------------------

_OWNERS_SHOWN = 20   # per kind in the text; --json carries every owner


def _id_ranges(spans, limit: int = 6) -> str:
    """``[(0, 1000), (1001, 65536)]`` as ``0-999, 1001-65535``."""
    shown = [str(a) if b - a == 1 else f"{a}-{b - 1}" for a, b in spans[:limit]]
    if len(spans) > limit:
        shown.append(f"… ({len(spans) - limit} more ranges)")
    return ", ".join(shown)


def _owner_line(v, m, src: str) -> str:
    from .ownership import OVERFLOW_ID
    if v.entries == 1:
        where = f"1 entry: {src} itself" if v.example == "" else f"1 entry: {v.example}"
    else:
        where = f"{v.entries} entries"
    head = f"on-disk {v.kind} {v.disk} ({where}) → "
    if v.inside is not None:
        return head + f"inside {v.inside}"
    if v.host is None:
        return (head + f"unmapped by the mount's idmap, shows as {OVERFLOW_ID}, read-only for "
                "the command (EACCES)")
    return (head + f"host {v.kind} {v.host}, which the namespace does not map: shows as "
            f"{OVERFLOW_ID}, only its 'other' permission bits apply")


def _create_lines(c, mount_mapped: bool) -> list[str]:
    k = c.kind
    out = []
    if c.runs_as is not None:
        if c.runs_as_disk is not None:
            out.append(f"the command ({k} {c.runs_as}) creates files owned by on-disk "
                       f"{k} {c.runs_as_disk}")
        else:
            out.append(f"the command ({k} {c.runs_as}) cannot create files here: EOVERFLOW "
                       f"(the mount's idmap has no on-disk {k} for it)")
    if c.cannot:
        out.append(f"inside {k}s that can create files: {_id_ranges(c.can) or 'none'}; "
                   f"EOVERFLOW for {_id_ranges(c.cannot)}")
    elif mount_mapped:
        out.append(f"every {k} the namespace maps can create files")
    return out


def files_text(p) -> str:
    """An ownership.FilesPreview as the lines under a mount in ``idrun map``."""
    c, src = p.count, p.mount.src
    read = (f"stopped after {c.entries} entries (--files=N reads more)" if c.cut
            else f"{c.entries} entr{'y' if c.entries == 1 else 'ies'} read")
    out = [f"    files under {src}: {read}"
           + (f", {c.unreadable} unreadable director{'y' if c.unreadable == 1 else 'ies'}"
              if c.unreadable else "")]
    for kind in KINDS:
        views = [v for v in p.owners if v.kind == kind]
        out += ["      " + _owner_line(v, p.mount, src) for v in views[:_OWNERS_SHOWN]]
        if len(views) > _OWNERS_SHOWN:
            out.append(f"      … {len(views) - _OWNERS_SHOWN} more on-disk {kind}s (--json "
                       "lists them all)")
    for cv in p.create:
        out += ["      " + line for line in _create_lines(cv, p.mount.idmap is not None)]
    return "\n".join(out)


def files_dict(p) -> dict:
    c = p.count
    return {"entries": c.entries, "limit": c.limit, "cut": c.cut, "unreadable": c.unreadable,
            "owners": [{"kind": v.kind, "on_disk": v.disk, "entries": v.entries,
                        "example": v.example, "host": v.host, "inside": v.inside}
                       for v in p.owners],
            "create": {cv.kind: {"can": [[a, b - a] for a, b in cv.can],
                                 "eoverflow": [[a, b - a] for a, b in cv.cannot],
                                 "runs_as": cv.runs_as, "runs_as_on_disk": cv.runs_as_disk}
                       for cv in p.create}}
