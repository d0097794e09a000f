"""``idrun check``: is this host ready for rootless idrun? Each line OK/WARN/FAIL with the fix.

Creates nothing lasting: reads sysctls, /proc, the helpers' files, the passwd and
sub-id databases, resolves podman's default rootless map on paper, and asks the kernel
which mount calls it has (refused probe calls; as root, detached id-mapped copies of a
mount of each filesystem type, closed at once). Exit 0
when rootless launches work with the caller's own ids; whether sub-id mappings
work (helpers, sub-id ranges) is a separate statement, since own-id launches
(-r, -c, keep-id) need neither.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import click

from ..errors import IdrunError, quoted
from ..mapping.plan import SUBID_FILE
from ..mapping.ranges import KINDS, shared
from ..mapping.syntax import decimal
from ..options import CHECK
from ..system import preconditions, procfs
from ..system.preconditions import FAIL, OK, WARN, Check
from .options import CONTEXT, SectionedCommand, table_options


class Target(NamedTuple):
    """Whose rootless use is checked."""

    name: str | None
    uid: int
    gid: int            # primary gid from passwd (or the process's own gid)
    is_self: bool
    home: str | None = None


def _kernel() -> Check:
    release = os.uname().release
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return Check("kernel", WARN, f"{release}: version not understood")
    v = (major, minor)
    if v < (3, 19):
        return Check("kernel", FAIL, f"{release}: no /proc/PID/setgroups (needs 3.19)",
                     "upgrade the kernel")
    if v < (4, 15):
        return Check("kernel", WARN, f"{release}: at most 5 map lines (340 from 4.15)",
                     "upgrade the kernel for larger maps")
    return Check("kernel", OK, f"Linux {release}")


def _kernel_features(root: bool) -> list[Check]:
    """What the kernel can do for mounts and descriptors, asked of it (kernelfeatures):
    the version is only quoted. As root, each mounted filesystem type is asked whether it
    takes an id-mapped mount (a detached copy, closed at once: nothing is attached)."""
    from ..system import kernelfeatures as kf
    release = os.uname().release
    out = []
    missing = [n for n in kf.NEW_MOUNT_API if not kf.has(n)]
    if missing:
        out.append(Check("new mount API", WARN, f"Linux {release} lacks {', '.join(missing)} "
                         "(ENOSYS; Linux 5.2+): --rootfs as root and id-mapped mounts "
                         "cannot work", "run on Linux 5.2 or later"))
    else:
        out.append(Check("new mount API", OK, "open_tree, move_mount, fsopen: yes"))
    out.append(_call("mount_setattr", "5.12", "read-only binds are recursive in one call",
                     WARN, "read-only volumes are remounted one mount at a time with "
                     "mount(2); id-mapped mounts are impossible",
                     "run on Linux 5.12 or later for id-mapped mounts"))
    lacking = kf.lacking_for_idmap()
    if lacking:
        out.append(Check("id-mapped mounts", WARN, f"no: Linux {release} lacks {lacking}; "
                         "idmap volumes, --rootfs DIR:idmap and --tmpfs DST:idmap are refused "
                         "(plain volumes, --rootfs and --tmpfs work)",
                         "drop idmap, or run on Linux 5.12 or later"))
    elif not root:
        known = kf.idmap_flag()
        what = ("the kernel knows MOUNT_ATTR_IDMAP" if known else
                "mount_setattr exists (MOUNT_ATTR_IDMAP came with it)")
        out.append(Check("id-mapped mounts", OK, f"{what}; they need root, so rootless "
                         "launches cannot use idmap (run 'idrun check' as root for the "
                         "filesystem types)"))
    else:
        from ..engine.run import idmap_userns
        took, refused, why = kf.idmap_by_fs(idmap_userns)
        if why:
            out.append(Check("id-mapped mounts", WARN, f"could not ask the kernel: {why}"))
        else:
            asked = " (each type mounted here asked with a detached copy)"
            if took:
                out.append(Check("id-mapped mounts", OK, f"yes, for {', '.join(took)}"
                                 + (f"; refused for {', '.join(refused)}" if refused else "")
                                 + asked))
            else:
                out.append(Check("id-mapped mounts", WARN, "the kernel has them, but no "
                                 "filesystem type mounted here takes them: refused for "
                                 f"{', '.join(refused) or 'every type'}" + asked,
                                 "id-map directories on ext4, xfs or btrfs (tmpfs from "
                                 "Linux 6.3)"))
    # Without close_range idrun only works slower: not a warning.
    out.append(_call("close_range", "5.9", "descriptors are closed in one call", OK,
                     "descriptors are closed one by one"))
    return out


def _call(name: str, since: str, yes: str, level: str, without: str,
          hint: str = "") -> Check:
    """Whether the kernel has the system call ``name`` (new in Linux ``since``), and what
    idrun does with it, or at ``level``, without it."""
    from ..system import kernelfeatures as kf
    if kf.has(name):
        return Check(name, OK, f"yes: {yes}")
    return Check(name, level, f"Linux {os.uname().release} lacks {name} (ENOSYS; Linux "
                 f"{since}+): {without}", hint)


def _userns_sysctls(rootless: bool) -> list[Check]:
    out = [preconditions.userns_limit()]
    if rootless:
        out += [c for c in (preconditions.unprivileged_clone(), preconditions.apparmor()) if c]
    return out


def _namespace() -> Check:
    try:
        uid_map = procfs.read_map("uid")
    except OSError as e:
        return Check("namespace", WARN, f"cannot read /proc/self/uid_map: {e.strerror}")
    if procfs.is_initial_userns():
        return Check("namespace", OK, "running in the initial user namespace")
    text = ", ".join(f"{ln.inside} {ln.outside} {ln.count}" for ln in uid_map)
    return Check("namespace", WARN, f"running inside a user namespace (uid_map: {text}); setuid "
                 "helpers cannot map ids this namespace does not have",
                 "map the needed sub-ids into this namespace first")


def _process(status: dict[str, str]) -> list[Check]:
    return [preconditions.no_new_privs(status), preconditions.dumpable()]


def _helpers() -> tuple[list[Check], bool]:
    from ..system import newidmap
    out = []
    ok = True
    fd_support = None
    for kind in KINDS:
        check, helper = preconditions.helper(kind)
        out.append(check)
        if helper is None:
            ok = False
            continue
        path = helper.path
        if fd_support is None:
            fd_support = newidmap.supports_fd_target(path)
    if fd_support is not None:
        version = _shadow_version()
        what = f"shadow {version}" if version else "shadow (version unknown)"
        if fd_support:
            out.append(Check("shadow", OK, f"{what}: newuidmap can be pointed at an open "
                             "/proc entry (4.14 or later), so a recycled pid cannot fool it"))
        else:
            out.append(Check("shadow", OK, f"{what}: newuidmap takes a pid (before 4.14); "
                             "idrun gives it the pid of a process that stays alive until the "
                             "maps are written, so the pid cannot be recycled meanwhile"))
    return out, ok


def _shadow_version() -> str | None:
    """The installed uidmap/shadow package version, from the package database."""
    import subprocess
    for argv in (["dpkg-query", "-W", "-f", "${Version}", "uidmap"],
                 ["rpm", "-q", "--qf", "%{VERSION}", "shadow-utils"]):
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            continue
        if res.returncode == 0 and res.stdout.strip():
            return res.stdout.strip()
    return None


def _identity(target: Target) -> list[Check]:
    out = []
    if target.name is None:
        return [Check("user", FAIL, f"uid {target.uid} has no passwd entry; newuidmap needs one",
                      "add the user to /etc/passwd (or NSS)")]
    detail = f"{target.name} (uid {target.uid}, gid {target.gid})"
    if target.is_self:
        ruid, rgid, euid, egid = os.getuid(), os.getgid(), os.geteuid(), os.getegid()
        if (ruid, rgid) != (euid, egid):
            out.append(Check("user", FAIL, f"{detail}: real ids {ruid}:{rgid} differ from "
                             f"effective {euid}:{egid}; newuidmap checks the real ones",
                             "run idrun without setuid/sg wrappers"))
            return out
        if rgid != target.gid and not _login_defs_flag("GRANT_AUX_GROUP_SUBIDS"):
            out.append(Check("user", FAIL, f"{detail}: your real gid {rgid} is not your primary "
                             f"gid {target.gid} (sg/newgrp?); newuidmap refuses that",
                             "run idrun from a plain login shell"))
            return out
    out.append(Check("user", OK, detail))
    return out


def _login_defs_flag(name: str) -> bool:
    try:
        with open("/etc/login.defs") as f:
            for raw in f:
                words = raw.split("#", 1)[0].split()
                if len(words) >= 2 and words[0] == name:
                    return words[1].lower() == "yes"
    except OSError:
        pass
    return False


def _other_owner_lines(path: str, target: Target) -> list[tuple[str, int, int, int]]:
    """(owner, start, count, lineno) of the other owners' well-formed lines in a sub-id file."""
    from ..system.hostinfo import read_text
    from ..mapping.subids import all_entries
    try:
        text = read_text(path) or ""
    except IdrunError:
        return []
    return [(e.owner, e.start, e.count, e.lineno) for e in all_entries(text, path)
            if e.owner not in (target.name, str(target.uid))]


def _subids(target: Target) -> tuple[list[Check], bool]:
    from ..system.hostinfo import SubidSource
    out = []
    ok = True
    module = SubidSource(SUBID_FILE["uid"], "uid", False).module()
    if module:
        out.append(Check("sub-id source", OK, f"nsswitch.conf 'subid: {module}' (read through "
                         "getsubids); newuidmap still opens /etc/subuid"))
    else:
        out.append(Check("sub-id source", OK, "files (/etc/subuid, /etc/subgid)"))
    for kind, path in SUBID_FILE.items():
        name = f"sub{kind}s"
        try:
            subset = SubidSource(path, kind, False).lookup(target.name, target.uid)
        except IdrunError as e:
            out.append(Check(name, FAIL, e.message, e.hint or ""))
            ok = False
            continue
        keys = " or ".join(repr(k) for k in subset.keys) or repr(str(target.uid))
        for w in subset.warnings:
            out.append(Check(name, WARN, w, f"fix or remove the line in {path}"))
        if not subset.present:
            out.append(Check(name, WARN, f"{path} does not exist: only your own {kind} can be "
                             "mapped (-r, -c, --userns keep-id work)", subset.add_hint(kind)))
            ok = False
            continue
        if not subset.ranges:
            # Not a fault: own-id launches work. Only mappings of more ids need ranges.
            out.append(Check(name, WARN, f"no ranges for {keys} in {subset.source}: only your "
                             f"own {kind} can be mapped (-r, -c, --userns keep-id work)",
                             subset.add_hint(kind) + f" (ids no line of {path} delegates yet)"))
            ok = False
            continue
        own = target.uid if kind == "uid" else target.gid
        total = sum(r.count for r in subset.ranges)
        shown = ", ".join(f"line {r.lineno}: {r.start}-{r.end - 1}" if r.lineno else
                          f"{r.start}-{r.end - 1}" for r in subset.ranges)
        inside = [r for r in subset.ranges if r.start <= own < r.end]
        if inside:
            out.append(Check(name, FAIL, f"{subset.source}: a range ({inside[0].start}:"
                             f"{inside[0].count}) contains your own {kind} {own}",
                             f"delegate a block that excludes {own}"))
            ok = False
            continue
        out.append(Check(name, OK, f"{total} ids for {keys} in {subset.source} ({shown})"))
        if not module:
            mine = [(r.start, r.end) for r in subset.ranges]
            for owner, start, count, lineno in _other_owner_lines(path, target):
                for _, j, lo, hi in shared([(start, start + count)], mine):
                    r = subset.ranges[j]
                    out.append(Check(name, WARN, f"{path} line {lineno} gives {owner} ids "
                                     f"{lo}-{hi - 1}, which are also yours (line "
                                     f"{r.lineno}); both users can own those ids",
                                     "give each user a disjoint block"))
    return out, ok


def _default_map(target: Target) -> Check:
    """Resolve podman's default rootless map for the target, on paper."""
    from ..system.hostinfo import gather
    from ..mapping.plan import Request
    from ..mapping.resolve import resolve
    request = Request(userns="host")
    try:
        plan = resolve(request, gather(request, rootless=True, caller=(target.uid, target.gid)))
    except IdrunError as e:
        return Check("rootless map", FAIL, f"the default rootless map does not resolve: "
                     f"{e.message}", e.hint or "")
    n = sum(ln.count for ln in plan.uid.lines)
    m = sum(ln.count for ln in plan.gid.lines)
    return Check("rootless map", OK, f"--userns host gives {n} uids and {m} gids "
                 f"(writers: uid {plan.uid.writer}, gid {plan.gid.writer})")


def run_checks(user: str | None = None) -> tuple[list[Check], Target]:
    import pwd
    status = procfs.status()
    if user is None:
        uid = os.geteuid()
        try:
            pw = pwd.getpwuid(uid)
            target = Target(pw.pw_name, uid, pw.pw_gid, True, pw.pw_dir)
        except KeyError:
            target = Target(None, uid, os.getegid(), True)
    else:
        try:
            number = decimal(user)
            pw = pwd.getpwnam(user) if number is None else pwd.getpwuid(number)
        except (KeyError, OverflowError):
            raise IdrunError(f"idrun check --user {quoted(user)}: no such user",
                             "give a login name or uid from the passwd database") from None
        target = Target(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_uid == os.geteuid(), pw.pw_dir)

    checks: list[Check] = []
    checks += _identity(target)
    checks.append(_kernel())
    root_self = target.uid == 0 and user is None
    checks += _userns_sysctls(rootless=not root_self)
    checks.append(_namespace())
    checks += _kernel_features(root=os.geteuid() == 0)
    if root_self:
        checks.append(Check("mode", OK, "running as root: idrun writes maps itself, no "
                            "newuidmap or sub-ids needed", "pass --user NAME to check a user's "
                            "rootless setup"))
        return checks, target
    if target.is_self:
        checks += _process(status)
    else:
        checks.append(Check("no_new_privs", OK if status.get("NoNewPrivs") != "1" else WARN,
                            "not checked for that user's sessions (this process: "
                            f"NoNewPrivs {status.get('NoNewPrivs', '0')})"))
    helper_checks, helpers_ok = _helpers()
    checks += helper_checks
    subid_checks, subids_ok = _subids(target)
    checks += subid_checks
    if subids_ok:
        checks.append(_default_map(target))
    return checks, target


# What a launch mapping only the caller's own id depends on (-r, -c, keep-id: the
# namespace writes its own single-id map). Every other check (the helpers, NoNewPrivs
# and dumpable, which only the setuid helper cares about, the passwd entry newuidmap
# looks up, the sub-id files) concerns sub-id mappings only; preconditions.require
# draws the same line for a launch.
OWN_ID_CHECKS = frozenset({"kernel", "user namespaces", "unprivileged userns", "AppArmor",
                           "namespace", "mode"})


def own_ids_work(checks: list[Check]) -> bool:
    """Whether launches that map only the caller's own ids work (exit 0 of check)."""
    return not any(c.status == FAIL and c.name in OWN_ID_CHECKS for c in checks)


def sub_ids_usable(checks: list[Check]) -> bool:
    """Whether mappings beyond the caller's own id work: the default rootless map
    resolved on paper and nothing they need (helper, process, sub-ids) failed."""
    return (not any(c.status == FAIL for c in checks)
            and any(c.name == "rootless map" and c.status == OK for c in checks))


def _render_text(checks: list[Check], target: Target) -> str:
    from ..mapping.report import table
    rows = []
    for c in checks:
        if c.fix and c.status != OK:
            rows += [(c.status, c.name, c.detail), ("", "", f"fix: {c.fix}")]
        else:
            rows.append((c.status, c.name, c.detail + (f" ({c.fix})" if c.fix else "")))
    lines = [f"idrun check for {target.name or target.uid} (uid {target.uid})"]
    lines += table(rows, "lll", indent="", min_width=(4,))
    lines.append(_verdict(checks, target))
    return "\n".join(lines)


def _verdict(checks: list[Check], target: Target) -> str:
    failed = [c for c in checks if c.status == FAIL]
    warns = sum(c.status == WARN for c in checks)
    counts = ", ".join(n for n in (f"{len(failed)} problem(s) to fix" if failed else "",
                                   f"{warns} warning(s)" if warns else "") if n)
    if not own_ids_work(checks):
        return f"not ready: {counts}"
    if target.uid == 0 and target.is_self:
        verdict = "ready: idrun works as root here (maps written directly)"
    elif sub_ids_usable(checks):
        verdict = "ready: rootless launches work, with your own ids and your sub-id ranges"
    elif failed:
        # Own-id launches need none of what failed; say what sub-id mappings lack.
        why = failed[0]
        need = (f"sub-id mappings need {why.name}: " if why.name in ("newuidmap", "newgidmap")
                else "sub-id mappings are refused: ")
        verdict = ("ready for own-id mappings (-r, -c, --userns keep-id); " + need + why.detail)
    else:
        verdict = ("ready: rootless launches work with your own ids only (-r, -c, "
                   "--userns keep-id); no sub-id ranges are available, so mapping more ids "
                   "is refused")
    return verdict + (f" ({counts})" if counts else "")


def check_id(name: str) -> str:
    """The stable identifier of a check in ``--json`` ("sub-id source" -> "sub_id_source").

    schema.json lists every identifier, so renaming a check fails the schema tests.
    """
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower())


@click.command("check", cls=SectionedCommand, context_settings=CONTEXT)
@table_options(CHECK)
def check_command(user: str | None, as_json: bool) -> int:
    """Diagnose this host for rootless idrun; exit 0 when own-id launches work.

    Exit 0 when launches mapping only your own ids (-r, -c, --userns keep-id)
    work, 1 when they cannot (kernel, sysctls, AppArmor). Whether sub-id mappings
    also work is said separately (the last line; --json "sub_ids"): a missing
    or broken newuidmap/newgidmap, NoNewPrivs or missing sub-id ranges block
    only those, so they show as FAIL/WARN lines with exit 0.

    It also lists what the kernel can do, asked of the kernel rather than read
    from its version: the new mount API, mount_setattr (read-only volumes in one
    call), id-mapped mounts (as root: for which of the mounted filesystem types)
    and close_range. A kernel without id-mapped mounts (before 5.12) is a WARN:
    plain volumes work there, idmap is refused before anything starts.
    """
    checks, target = run_checks(user)
    ok = own_ids_work(checks)
    if as_json:
        from ..jsonout import dumps
        click.echo(dumps({
            "ok": ok, "sub_ids": sub_ids_usable(checks),
            "user": {"name": target.name, "uid": target.uid, "gid": target.gid},
            "checks": [{"id": check_id(c.name), **c._asdict()} for c in checks]}))
    else:
        click.echo(_render_text(checks, target))
    return 0 if ok else 1
