"""Resolution: from what the user typed to the exact lines of uid_map and gid_map.

Pure: ``resolve(Request, Host) -> Plan``; no I/O, no globals. The rules follow
podman's (copy-over, u/g filter, break-insert, rootless gap filling and
empty-kind fill, ``@`` lookup, canonical form) with idrun's deliberate
differences: amount 0, overlaps, id 4294967295 and kernel limits are errors
before anything runs.

The pipeline is here; its parts have modules of their own: ``intermediate`` (the
rootless intermediate table), ``presets`` (--userns modes, -r/-c/--map-auto, the
default), ``pieces`` (the --uidmap/--gidmap values) and ``validation``.
"""

from ..errors import MapConflictError, MapSyntaxError, MapValidationError, quoted
from .intermediate import Space, intermediate_map
from .pieces import Piece, build_pieces, host_id_notes, parse_all, subidname_pieces
from .plan import (WRITER_DIRECT, WRITER_HELPER, WRITER_NONE, WRITER_SELF, Host, KindPlan, Plan,
                   Request, is_auto)
from .presets import Preset, default_preset, shorthand_preset, userns_preset
from .ranges import KINDS, IdMap, Line, canonical, check_limits
from .syntax import decimal_id, parse_user
from .validation import check_conflicts, compose, validate_pieces


class _Said:
    """What resolution has to tell the user besides the plan (a plain class: resolve is
    on the launch path, where each NamedTuple costs a little to define)."""

    __slots__ = ("warnings", "notes", "mistakes")

    def __init__(self, warnings: list[str], notes: list[str]) -> None:
        self.warnings = warnings
        self.notes = notes
        self.mistakes: list[str] = []     # notes about a likely mistake: a launch says them


def _spaces(host: Host, said: _Said) -> dict[str, Space]:
    """Phase 1: where each kind's from ids live (intermediate map, or this namespace's map)."""
    own = {"uid": host.uid, "gid": host.gid}
    if not host.rootless:
        return {kind: Space(kind, False, tuple(parent), own[kind])
                for kind, parent in (("uid", host.parent_uid_map), ("gid", host.parent_gid_map))}
    subuid, subgid = host.subuid, host.subgid
    if bool(subuid.ranges) != bool(subgid.ranges):
        has, lacks = (subuid, subgid) if subuid.ranges else (subgid, subuid)
        said.warnings.append(
            f"you have ranges in {has.source} but none in {lacks.source}; like podman, "
            "idrun then maps only your own uid and gid (add the missing ranges with "
            "usermod --add-subuids/--add-subgids)")
        subuid, subgid = subuid._replace(ranges=()), subgid._replace(ranges=())
    for s in (subuid, subgid):
        said.warnings.extend(s.warnings)
    return {kind: Space(kind, True, intermediate_map(kind, own[kind], subids), own[kind], subids)
            for kind, subids in (("uid", subuid), ("gid", subgid))}


def _preset(request: Request, host: Host, spaces: dict[str, Space],
            said: _Said) -> Preset | None:
    """Phase 2a: a --userns mode or a util-linux shorthand, if one was given; the
    default mapping when nothing describes one."""
    if request.userns is not None:
        return userns_preset(request, host, spaces)
    if request.map_root_user or request.map_current_user or request.map_auto:
        return shorthand_preset(request, host, spaces)
    if not (request.uidmap or request.gidmap or request.subuidname or request.subgidname):
        return default_preset(host, spaces, said.notes)
    return None



def _value_pieces(request: Request, host: Host, spaces: dict[str, Space],
                  said: _Said) -> dict[str, list[Piece]]:
    """Phase 2b: --subuidname/--subgidname and the --uidmap/--gidmap values, per kind."""
    triples = parse_all(request, said.warnings)
    if host.rootless:
        said.mistakes.extend(host_id_notes(triples, spaces, host.accounts))
    named = subidname_pieces(request, host, spaces)
    built = build_pieces(triples["uid"], spaces["uid"])
    # Both kinds usually get the same values (copy-over) against the same
    # ranges; then the gid side is the same computation.
    if triples["gid"] == triples["uid"] and spaces["gid"].same_as(spaces["uid"]):
        built_gid = built
    else:
        built_gid = build_pieces(triples["gid"], spaces["gid"])
    pieces = {"uid": named["uid"] + built, "gid": named["gid"] + built_gid}
    if not pieces["uid"] and not pieces["gid"]:
        if not (request.uidmap or request.gidmap):
            raise MapValidationError(
                "no mapping given", "pass --uidmap/--gidmap, a --userns mode, or "
                "-r/-c/--map-auto (e.g. idrun --uidmap 0:1000:1 -- id)")
        raise MapValidationError("the values given map no id at all",
                                 "check the u/g flags of your --uidmap/--gidmap values")
    if host.rootless:
        for kind, other in (("uid", "gid"), ("gid", "uid")):
            if not pieces[kind] and pieces[other]:
                pieces[kind] = [Piece(0, 0, spaces[kind].size,
                                      f"the full intermediate {kind} map (no {kind} "
                                      "value given)")]
    return pieces


def _maps(pieces: dict[str, list[Piece]], spaces: dict[str, Space],
          userns: bool) -> tuple[dict[str, IdMap], dict[str, list[Line]]]:
    """Phase 3: validate, canonicalize, and compose to the lines to be written."""
    container: dict[str, IdMap] = {}
    written: dict[str, list[Line]] = {}
    for kind in KINDS:
        validate_pieces(kind, pieces[kind], spaces[kind])
        container[kind] = IdMap(canonical(p.line for p in pieces[kind]))
        if not userns:
            written[kind] = []
            continue
        lines = compose(kind, container[kind], spaces[kind], pieces[kind])
        written[kind] = lines
        check_limits(lines, f"the {kind}_map to be written",
                     "use fewer, larger ranges (rootless lines are split at every sub-id "
                     "range, so fewer ranges in /etc/sub" + kind + " help too)")
    return container, written


def _target_ids(request: Request, host: Host, preset: Preset | None,
                container: dict[str, IdMap], userns: bool,
                said: _Said) -> tuple[dict[str, int | None], list[str]]:
    """Phase 4: whom to run as inside, and which kinds have no id to switch to."""
    own = {"uid": host.uid, "gid": host.gid}
    user_uid: int | None
    user_gid: int | None
    if request.user is not None:
        user_uid, user_gid = parse_user(request.user)
    elif preset is not None and preset.user is not None:
        user_uid, user_gid = preset.user
    else:
        user_uid = user_gid = None
    ids: dict[str, int | None] = {"uid": user_uid, "gid": user_gid}
    unswitchable: list[str] = []
    if not userns:
        return _host_ids(request, user_uid, user_gid), unswitchable
    for kind in KINDS:
        lines = container[kind]
        if not lines:
            if not host.rootless:
                said.warnings.append(f"no {kind} is mapped, so every {kind} shows as the "
                                     f"overflow id inside and idrun does not switch {kind}s")
            ids[kind] = None
            continue
        if not lines.covers(0) and preset is None and request.user is None:
            said.warnings.append(f"container {kind} 0 is not mapped; if you meant to be root "
                                 f"inside, map it (e.g. --{kind}map 0:...)")
        if ids[kind] is None:
            if lines.covers(0):
                ids[kind] = 0
            else:
                ids[kind] = lines.inward(0 if host.rootless else own[kind])
                if ids[kind] is None:
                    unswitchable.append(kind)
        elif not lines.covers(ids[kind]):  # type: ignore[arg-type]
            what = "--user" if request.user is not None else "the preset's"
            raise MapValidationError(
                f"container {kind} {ids[kind]} ({what} {kind}) is not mapped by the {kind} map",
                f"map it with --{kind}map, or pick another --user")
    for kind in unswitchable:
        said.warnings.append(f"neither container {kind} 0 nor your own {kind} is mapped, so a "
                             f"launch needs --user to say which {kind} to run as")
    return ids, unswitchable


def _host_ids(request: Request, uid: int | None, gid: int | None) -> dict[str, int | None]:
    """--user without a user namespace (only root's --userns=host has none; rootless,
    host is a namespace of the caller's ids): the ids are host ids, switched to as
    podman does, gid 0 when none is given."""
    if request.user is None:
        return {"uid": None, "gid": None}
    return {"uid": uid, "gid": 0 if gid is None else gid}


def _setgroups(request: Request, host: Host, preset: Preset | None,
               written: dict[str, list[Line]]) -> str:
    """Phase 5: allow or deny, as asked, inherited, or as the kernel demands."""
    setgroups = request.setgroups or (preset.setgroups if preset else None) or "allow"
    if host.parent_setgroups == "deny" and setgroups == "allow":
        if request.setgroups == "allow":
            raise MapConflictError(
                "--setgroups allow: setgroups is denied in the namespace idrun runs in, and "
                "a new namespace inherits that", "drop --setgroups allow")
        setgroups = "deny"
    gid_own_only = host.rootless and all(
        ln.outside == host.gid and ln.count == 1 for ln in written["gid"]) and written["gid"]
    if gid_own_only and setgroups == "allow":
        if request.setgroups == "allow":
            raise MapConflictError(
                "--setgroups allow: with only your own gid mapped the kernel requires "
                "setgroups to be denied", "map delegated sub-gids too, or drop --setgroups allow")
        setgroups = "deny"
    return setgroups


def _groups(request: Request, container: dict[str, IdMap], setgroups: str,
            host_ids: bool = False) -> list[int]:
    """Phase 6: --group-add, each mapped and allowed (``host_ids``: --user without a
    user namespace, as root; the gids are host gids, every one valid)."""
    groups: list[int] = []
    for text in request.group_add:
        gid = decimal_id(text, "--group-add",
                         "write --group-add with container gids, e.g. --group-add 10")
        if not host_ids and not container["gid"].covers(gid):
            raise MapValidationError(f"--group-add {gid}: container gid {gid} is not mapped",
                                     "map it with --gidmap or drop --group-add")
        groups.append(gid)
    if groups and setgroups == "deny":
        raise MapConflictError("--group-add needs setgroups allowed, but it is denied",
                               "drop --group-add or --setgroups deny/-r/-c")
    return groups


def _kind_plan(kind: str, host: Host, space: Space, container: IdMap, lines: list[Line],
               userns: bool) -> KindPlan:
    """Phase 7: who writes the map."""
    if not userns or not lines:
        writer = WRITER_NONE
    elif not host.rootless:
        writer = WRITER_DIRECT
    elif all(ln.outside == space.own_id and ln.count == 1 for ln in lines):
        writer = WRITER_SELF
    else:
        writer = WRITER_HELPER
    return KindPlan(kind=kind, container=tuple(container), lines=tuple(lines),
                    intermediate=space.parent if host.rootless else (), writer=writer)


def resolve(request: Request, host: Host) -> Plan:
    """Resolve and validate a request into the plan the launcher executes."""
    check_conflicts(request)
    if request.setgroups not in (None, "allow", "deny"):
        raise MapSyntaxError(f'--setgroups {quoted(request.setgroups)} is not allow or deny',
                             "write --setgroups allow or --setgroups deny")
    said = _Said([], [])
    spaces = _spaces(host, said)
    preset = _preset(request, host, spaces, said)
    pieces = preset.maps if preset is not None else _value_pieces(request, host, spaces, said)
    userns = preset.userns if preset is not None else True
    container, written = _maps(pieces, spaces, userns)
    ids, unswitchable = _target_ids(request, host, preset, container, userns, said)
    setgroups = _setgroups(request, host, preset, written)
    groups = _groups(request, container, setgroups,
                     host_ids=not userns and ids["uid"] is not None)
    kinds = {kind: _kind_plan(kind, host, spaces[kind], container[kind], written[kind], userns)
             for kind in KINDS}
    if is_auto(request.userns):
        if host.auto_block is None:
            said.notes.append("auto: lowest ids of the pool; no lease registry was consulted, "
                              "so this is not reserved against other --userns=auto runs")
        else:
            said.notes.extend(host.auto_block.notes)
            said.warnings.extend(host.auto_block.warnings)
    if not userns:
        said.notes.append("--userns=host as root: no user namespace is created")
    return Plan(rootless=host.rootless, userns=userns, caller_uid=host.uid, caller_gid=host.gid,
                uid=kinds["uid"], gid=kinds["gid"], setgroups=setgroups,
                user_uid=ids["uid"], user_gid=ids["gid"], groups=tuple(groups),
                unswitchable=tuple(unswitchable),
                warnings=tuple(dict.fromkeys(said.warnings)),
                notes=tuple(said.mistakes + said.notes), launch_notes=tuple(said.mistakes))
