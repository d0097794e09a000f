"""Validation of the pieces and their composition to the lines the kernel gets.

Pure. Everything the kernel would refuse (a range reaching id 4294967295, two
pieces sharing an id on either side, a from id the parent map does not cover) is
refused here first, naming the values it came from; options that exclude each
other likewise.
"""

from ..errors import MapConflictError, MapValidationError
from .intermediate import Space
from .pieces import Piece
from .plan import Request
from .ranges import ID_LIMIT, Line, first_overlap


def check_conflicts(request: Request) -> None:
    """Options that describe the mapping in two ways at once."""
    maps_given = bool(request.uidmap or request.gidmap)
    names = request.subuidname or request.subgidname
    shorthand = request.map_root_user or request.map_current_user or request.map_auto
    if request.userns is not None:
        for given, option in ((request.uidmap, "--uidmap"), (request.gidmap, "--gidmap"),
                              (request.subuidname, "--subuidname"),
                              (request.subgidname, "--subgidname")):
            if given:
                raise MapConflictError(f"--userns={request.userns} cannot be combined with "
                                       f"{option}", "use either a --userns mode or explicit maps")
        if shorthand:
            raise MapConflictError(f"--userns={request.userns} cannot be combined with "
                                   "--map-root-user/--map-current-user/--map-auto",
                                   "pick one way to describe the mapping")
    if shorthand and (maps_given or names):
        raise MapConflictError("--map-root-user/--map-current-user/--map-auto cannot be "
                               "combined with --uidmap/--gidmap/--subuidname/--subgidname",
                               "pick one way to describe the mapping")
    if request.map_root_user and request.map_current_user:
        raise MapConflictError("--map-root-user and --map-current-user exclude each other",
                               "use -r to be root inside, or -c to keep your own ids")


def validate_pieces(kind: str, pieces: list[Piece], space: Space) -> None:
    """Every range below the id limit, and no id mapped twice on either side."""
    for p in pieces:
        for side, start in (("container", p.container), ("from", p.from_id)):
            if start >= ID_LIMIT or start + p.count > ID_LIMIT:
                raise MapValidationError(
                    f"{p.origin}: {side} {kind}s {start}-{start + p.count - 1} reach id "
                    f"{ID_LIMIT}, which no namespace can map",
                    f"keep every range below {ID_LIMIT}")
    for side in ("container", "from"):
        clash = first_overlap(pieces, (lambda p: p.container) if side == "container"
                              else (lambda p: p.from_id), lambda p: p.count)
        if clash is None:
            continue
        best, p = clash.earlier, clash.later
        ids = f"{clash.first}" if clash.first == clash.last else f"{clash.first}-{clash.last}"
        what = "container" if side == "container" else (
            "intermediate" if space.rootless else "host")
        if best.origin == p.origin:
            both = f"{p.origin} maps {what} {kind}s {ids} twice"
        else:
            both = f"{best.origin} and {p.origin} both map {what} {kind}s {ids}"
        raise MapValidationError(
            both, "a mapping must be one-to-one: change one of them, or use '+' to "
            "let the later value take those ids over")


def compose(kind: str, lines: list[Line], space: Space, origins: list[Piece]) -> list[Line]:
    """The lines to write: rootless, through the intermediate map to host ids;
    as root, cut at the parent map's extents. A from id the map lacks is an error
    naming the value it came from."""
    out, missing = space.parent.split(lines, translate=space.rootless)
    if missing is not None:
        line, ident = missing
        origin = next((p.origin for p in origins
                       if p.container <= line.inside < p.container + p.count), "the map")
        if space.rootless and space.parent.inward(ident) is not None:
            raise MapValidationError(
                f"{origin}: intermediate {kind} {ident} is beyond the {space.size} ids you "
                f"have; host {kind} {ident} is delegated to you, but rootless from ids are "
                "intermediate ids", f"write @{ident} to mean host {kind} {ident}; "
                "'idrun map --rootless' shows the intermediate table")
        if space.rootless:
            raise MapValidationError(
                f"{origin}: intermediate {kind} {ident} is beyond the {space.size} ids you "
                f"have ({space.describe()})",
                f"ask an admin to delegate sub-ids: {space.subids.add_hint(kind)}"
                if space.subids is not None and not space.subids.ranges else
                "from ids are intermediate ids when rootless; write @HOSTID to name a "
                "delegated host id, or see idrun map --rootless for the table")
        raise MapValidationError(
            f"{origin}: {kind} {ident} is not mapped into the namespace idrun runs in",
            f"use ids that /proc/self/{kind}_map maps")
    return out
