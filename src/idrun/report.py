"""How a plan is shown to people (tables) and to programs (a JSON-ready dict)."""
from __future__ import annotations

from .plan import WRITER_HELPER, KindPlan, Plan
from .ranges import IdMap, Line

HELPERS = {"uid": "newuidmap", "gid": "newgidmap"}


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


def _table(rows: list[tuple], header: tuple) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return ["  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths)).rstrip()
            for row in [header, *rows]]


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


def mounts_dict(mplan) -> dict:
    """The mounts of a volumes.MountPlan; idmapped ones with the mapping namespace's maps."""
    return {"mounts": [{"kind": m.kind, "source": m.src, "destination": m.dst,
                        "options": _mount_options(m),
                        "idmap": None if m.idmap is None else
                        {"uid_map": _triples(m.idmap.uid), "gid_map": _triples(m.idmap.gid)}}
                       for m in mplan.mounts],
            "rootfs": mplan.rootfs, "workdir": mplan.workdir,
            "mount_warnings": list(mplan.warnings), "mount_notes": list(mplan.notes)}


def mounts_text(mplan) -> str:
    out = ["mounts (new mount namespace, private propagation):" if mplan.mounts
           else "mounts: none"]
    for m in mplan.mounts:
        src = "" if m.kind == "tmpfs" else f"{m.src} "
        out.append(f"  {m.kind} {src}on {m.dst} ({','.join(_mount_options(m))})")
        if m.idmap is not None:
            for kind, lines in (("uid", m.idmap.uid), ("gid", m.idmap.gid)):
                out.append(f"    {kind}_map of the mapping namespace:")
                out += ["      " + f"{ln.inside} {ln.outside} {ln.count}" for ln in lines]
    if mplan.workdir is not None:
        out.append(f"workdir: {mplan.workdir}")
    out += [f"note: {n}" for n in mplan.notes]
    return "\n".join(out)
