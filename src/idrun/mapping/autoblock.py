"""``--userns=auto``: its options and the choice of a free block of ids.

Pure: plain data in, plain data out. The shell (``leases``) supplies the ids
other live idrun namespaces hold and the ids running processes use; this module
decides which block a launch gets and why, or why none is left. ``resolve``
turns the chosen host-id block into map lines.
"""
from __future__ import annotations

from typing import NamedTuple

from ..errors import MapSyntaxError, SubidError, quoted
from .intermediate import intermediate_lines
from .plan import AUTO_OWNER, SUBID_FILE, Host, SubidRange
from .ranges import MAX_ID, IdMap, subtract
from .syntax import Triple, decimal, parse_value

# podman's rule without size=: the highest id the image's files and passwd/group use,
# plus one, clamped to containers-storage.conf's auto-userns-min-size (1024) ..
# auto-userns-max-size (65536). idrun has no image, so the rule gives the minimum.
DEFAULT_SIZE = 1024

Span = tuple[int, int]           # half-open [start, end) of host ids


class AutoOptions(NamedTuple):
    size: int = DEFAULT_SIZE
    uidmapping: tuple[Triple, ...] = ()   # podman's forced extra lines, per kind
    gidmapping: tuple[Triple, ...] = ()
    size_given: bool = False              # size= was written (else podman's rule)

    def extra(self, kind: str) -> tuple[Triple, ...]:
        return self.uidmapping if kind == "uid" else self.gidmapping


class Pick(NamedTuple):
    """The block chosen for one kind, in host ids, and the reason."""

    ranges: tuple[tuple[int, int], ...]   # (start, count), ascending
    reason: str
    warning: str | None = None


def parse_auto(spec: str) -> AutoOptions:
    """Options of ``auto[:size=N][,uidmapping=C:[@]H:N][,gidmapping=…]`` (podman's)."""
    _, _, text = spec.partition(":")
    size, size_given = DEFAULT_SIZE, False
    extra: dict[str, list[Triple]] = {"uid": [], "gid": []}
    origin = f"--userns={spec}"
    for item in (text.split(",") if text else []):
        key, eq, value = item.partition("=")
        if not eq:
            raise MapSyntaxError(f'{origin}: option {quoted(item)} has no "=value"',
                                 "write auto:size=N")
        if key == "size":
            number = decimal(value)
            if number is None or number > MAX_ID:
                raise MapSyntaxError(f'{origin}: size={quoted(value)} is not a decimal id',
                                     f"write size= with a number from 1 to {MAX_ID}")
            size, size_given = number, True
            if size < 1:
                raise MapSyntaxError(f"{origin}: size must be at least 1",
                                     "write auto:size=N, N ≥ 1")
        elif key in ("uidmapping", "gidmapping"):
            kind = key[:3]
            for t in parse_value(value, f"--userns=auto {key}="):
                if t.plus or not (t.for_uid and t.for_gid):
                    raise MapSyntaxError(
                        f"{t.origin}: flags are not allowed here; {key}= applies to "
                        f"{kind}s only", f"write {key}=CONTAINER:[@]FROM:COUNT")
                extra[kind].append(t)
        else:
            raise MapSyntaxError(f"{origin}: unknown option {quoted(key)}",
                                 "auto takes size=N, uidmapping=C:[@]H:N and "
                                 "gidmapping=C:[@]H:N")
    return AutoOptions(size, tuple(extra["uid"]), tuple(extra["gid"]), size_given)


def size_reason(opts: AutoOptions) -> str:
    """Why the block has the size it has, for ``idrun map``/``--dry-run``."""
    if opts.size_given:
        return f"size {opts.size} (size=)"
    return (f"size {opts.size} by podman's rule without size=: the image's highest id + 1, "
            f"at least auto-userns-min-size ({DEFAULT_SIZE}); idrun has no image")


def pool(host: Host, kind: str) -> tuple[list[Span], str]:
    """The host ids auto may hand out, and where they come from.

    Rootless: the caller's sub-ids (podman's intermediate ids 1…N−1); when only one
    of the files has ranges, podman (and ``resolve``) map the caller's own id only,
    so the pool is empty. Root: the sub-ids of ``host.auto_owner`` (``containers``).
    """
    if host.rootless:
        if not (host.subuid.ranges and host.subgid.ranges):
            return [], f"{SUBID_FILE[kind]} (your ranges)"
        sub = host.subuid if kind == "uid" else host.subgid
        return _spans(sub.ranges), f"{sub.source} (your ranges)"
    owner = host.auto_owner
    named = host.named(kind).get(owner)
    if named is None or not named.ranges:
        raise SubidError(
            f"--userns=auto as root takes ids from the user \"{owner}\" in "
            f"{SUBID_FILE[kind]}, which has no range there",
            f"add a line such as {owner}:2147483647:2147483648 to {SUBID_FILE[kind]}"
            + ("" if owner != AUTO_OWNER else ", or name another owner in "
               "IDRUN_AUTO_USER"))
    return _spans(named.ranges), f"{named.source} (user {owner})"


def _spans(ranges: tuple[SubidRange, ...]) -> list[Span]:
    return sorted((r.start, r.end) for r in ranges if r.count)


def excluded(opts: AutoOptions, host: Host, kind: str) -> list[Span]:
    """Host ids the forced ``uidmapping=``/``gidmapping=`` lines use: never in the block."""
    extra = opts.extra(kind)
    if not host.rootless:
        return [(t.from_id, t.from_id + t.amount) for t in extra]
    own = host.uid if kind == "uid" else host.gid
    sub = host.subuid if kind == "uid" else host.subgid
    inter = IdMap(intermediate_lines(own, sub.ranges))
    out: list[Span] = []
    for t in extra:
        # A from id is a host id with '@', else an intermediate id to take to the host.
        out += ([(t.from_id, t.from_id + t.amount)] if t.host
                else inter.outward_spans(t.from_id, t.amount))
    return out


def _minus(spans: list[Span], holes: list[Span]) -> list[Span]:
    out: list[Span] = []
    for lo, hi in spans:
        out += subtract(lo, hi, [h for h in holes if h[0] < hi and h[1] > lo])
    return out


def _lowest(spans: list[Span], size: int) -> list[tuple[int, int]]:
    """The lowest ``size`` ids of ``spans``, preferring one contiguous run."""
    for lo, hi in spans:
        if hi - lo >= size:
            return [(lo, size)]
    out, need = [], size
    for lo, hi in spans:
        n = min(hi - lo, need)
        out.append((lo, n))
        need -= n
        if not need:
            break
    return out


def _text(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{s}-{s + c - 1}" for s, c in ranges)


def pick(kind: str, pool_spans: list[Span], source: str, size: int,
         held: list[Span] = (), busy: list[Span] = (),  # type: ignore[assignment]
         exclude: list[Span] = ()) -> Pick:  # type: ignore[assignment]
    """Choose ``size`` ids of ``pool_spans`` that no lease holds.

    Preference: the lowest contiguous run no running process uses (systemd-nspawn's
    check), then the lowest such ids spread over several runs, then — with a
    warning — ids some process uses. Exhaustion is an error listing the free sizes.
    """
    if not pool_spans:
        raise SubidError(f"--userns=auto needs {size} {kind}s, but {source} has none",
                         f"ask for them with usermod --add-sub{kind}s")
    free = _minus(pool_spans, list(held) + list(exclude))
    quiet = _minus(free, list(busy))
    n_held = sum(hi - lo for lo, hi in _minus(pool_spans, list(exclude))) - \
        sum(hi - lo for lo, hi in free)
    held_note = f"; {n_held} {kind}s held by live idrun namespaces" if n_held else ""
    if sum(hi - lo for lo, hi in quiet) >= size:
        ranges = _lowest(quiet, size)
        how = ("lowest free block" if len(ranges) == 1 else
               f"lowest free {kind}s, in {len(ranges)} runs (no contiguous block is free)")
        skipped = sum(hi - lo for lo, hi in free) - sum(hi - lo for lo, hi in quiet)
        used = f", skipping {skipped} {kind}s running processes use" if skipped else \
            ", no running process uses them"
        return Pick(tuple(ranges), f"{how} of {source}{used}{held_note}")
    if sum(hi - lo for lo, hi in free) >= size:
        ranges = _lowest(free, size)
        return Pick(tuple(ranges), f"lowest free {kind}s of {source}{held_note}",
                    f"--userns=auto: every free block of {size} {kind}s includes {kind}s that "
                    f"running processes (not idrun's) use; picked {_text(ranges)} anyway")
    runs = sorted((hi - lo for lo, hi in free), reverse=True)
    sizes = ", ".join(str(n) for n in runs[:8]) + (", …" if len(runs) > 8 else "")
    raise SubidError(
        f"--userns=auto: no free block of {size} {kind}s in {source}: "
        + (f"free sizes {sizes} ({sum(runs)} in all)" if runs else "nothing is free")
        + held_note,
        "wait for a namespace to end (idrun show --leases lists them), ask for a smaller "
        "auto:size=, or delegate more ids")
