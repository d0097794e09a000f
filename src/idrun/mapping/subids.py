"""Parsing of /etc/subuid and /etc/subgid text (pure) and of getsubids output.

A line is ``OWNER:START:COUNT``; OWNER is a login name or a decimal uid. Only
the lines of the owners asked for are checked strictly; other owners' lines are
never split or converted: a launch's cost must not grow with the number of
users on the machine (a site may delegate ids to 100 000 accounts).
"""
from __future__ import annotations

from ..errors import SubidError, quoted
from .plan import SubidRange, SubidSet
from .ranges import ID_LIMIT, MAX_ID, first_overlap, subtract
from .syntax import decimal

_HINT_NUMBER = ("write START and COUNT in plain decimal: shadow reads a leading 0 as octal "
                "and 0x as hex while podman reads decimal, so such a line means different ids "
                "to different tools")


def _decimal(text: str) -> bool:
    """Plain decimal without a leading zero (shadow would read it as octal)."""
    return decimal(text) is not None and (text == "0" or text[0] != "0")


# A line that is neither blank, nor a comment, nor three ':'-separated fields.
# Lines that are not OWNER:START:COUNT at all (comments and blank lines aside).
_NOT_A_TRIPLE = r"^(?![ \t]*(?:#|$))(?![^:\n]*:[^:\n]*:[^:\n]*$).*$"
_BLANKS = (" ", "\t", "\r", "\v", "\f")
MAX_WARNED_LINES = 5


def _lineno(text: str | bytes, offset: int, memo: list[int]) -> int:
    """1-based line number of ``offset``; ``memo`` = [offset, lineno] of the last call."""
    memo[1] += text.count("\n" if isinstance(text, str) else b"\n", memo[0], offset)
    memo[0] = offset
    return memo[1]


# Every byte but the two separators: deleting them leaves one b"::\n" per line
# when every line is a triple.
_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b":\n")


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def _as_text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "surrogateescape")


def _every_line_a_triple(data: bytes) -> bool:
    """Cheap proof (C speed, no per-line Python) that no line can be malformed.

    Blank and comment lines fail it too; then the exact scan decides.
    """
    seps = data.translate(None, _NOT_SEPARATORS)
    if data and not data.endswith(b"\n"):
        seps += b"\n"  # the last line has no newline of its own
    # Non-overlapping b"::\n" pieces cover the whole string only if it is
    # exactly that piece repeated.
    return seps.count(b"::\n") * 3 == len(seps)


def malformed_lines(text: str | bytes, source: str) -> list[str]:
    """Warnings for lines that are not ``OWNER:START:COUNT`` at all (any owner).

    shadow skips such a line and podman refuses the whole file, so it is worth
    a word even when it belongs to somebody else.
    """
    try:
        if _every_line_a_triple(_as_bytes(text)):
            return []
    except UnicodeError:
        pass
    import re  # only for files with blanks, comments or bad lines
    text = _as_text(text)
    out: list[str] = []
    memo = [0, 1]
    matches = list(re.finditer(_NOT_A_TRIPLE, text, re.MULTILINE))
    for match in matches[:MAX_WARNED_LINES]:
        out.append(f"{source} line {_lineno(text, match.start(), memo)}: "
                   f"{quoted(match.group())} is not OWNER:START:COUNT; newuidmap skips it and "
                   "podman refuses the whole file")
    if len(matches) > MAX_WARNED_LINES:
        out.append(f"{source}: {len(matches) - MAX_WARNED_LINES} more such lines")
    return out


def parse_subid_text(text: str | bytes, source: str, keys: tuple[str, ...],
                     warn_malformed: bool = True) -> SubidSet:
    """The ranges of the owner known by any of ``keys`` (login name, uid string).

    Read as shadow's newuidmap reads it: a line is the owner's only when its
    first field is exactly a key, so a line with blanks around a field is
    refused here (shadow would silently not use it and the launch would fail
    later). Raises ``SubidError`` naming the file and line for a malformed line
    of that owner, or for two of its ranges that overlap. With
    ``warn_malformed``, lines that are not ``OWNER:START:COUNT`` at all (any
    owner) come back as warnings; a launch passes False: finding them means
    looking at every line, and other owners' lines do not change its maps.
    """
    wanted = [k for k in keys if k]
    ranges: list[SubidRange] = []
    warnings: list[str] = malformed_lines(text, source) if warn_malformed else []
    if not wanted:
        return SubidSet(source=source, present=True, warnings=tuple(warnings))
    data = _as_bytes(text)
    memo = [0, 1]
    for start, line in _owner_lines(data, wanted):
        lineno = _lineno(data, start, memo)
        fields = line.split(":")
        where = f"{source} line {lineno}"
        if any(c in line for c in _BLANKS):
            owner = fields[0].strip()
            raise SubidError(
                f"{where}: {quoted(line)} has blanks around a field, so newuidmap and "
                f"newgidmap do not read it as {owner}'s range",
                f"remove the blanks from the line in {source}")
        if len(fields) != 3:
            raise SubidError(
                f'{where}: {quoted(line)} has {len(fields)} field(s), expected OWNER:START:COUNT',
                f"fix or remove the line in {source}")
        _, start_text, count_text = fields
        for name, value in (("START", start_text), ("COUNT", count_text)):
            if not _decimal(value):
                raise SubidError(f'{where}: {name} {quoted(value)} of {quoted(line)} is not a plain decimal '
                                 "number", _HINT_NUMBER)
        start, count = decimal(start_text), decimal(count_text)
        assert start is not None and count is not None
        if start > MAX_ID or start + count > ID_LIMIT:
            raise SubidError(f'{where}: range {quoted(line)} reaches past id {MAX_ID}',
                             f"sub-id ranges must end below {ID_LIMIT}")
        if count == 0:
            warnings.append(f'{where}: {quoted(line)} delegates no ids (COUNT 0); ignored')
            continue
        ranges.append(SubidRange(start, count, lineno))
    check_overlaps(ranges, source)
    return SubidSet(source=source, ranges=tuple(ranges), present=True,
                    keys=tuple(k for k in keys if k), warnings=tuple(warnings))


def _owner_lines(data: bytes, keys: list[str]) -> list[tuple[int, str]]:
    """(offset, line) of each line whose first field is one of ``keys``, blanks allowed.

    Only lines that start with a key or with a blank can be such a line, and
    ``bytes.find`` finds those without looking at the others one by one; only
    they are decoded.
    """
    starts: set[int] = set()
    blanks = "".join(_BLANKS)
    prefixes = [k.encode("utf-8", "surrogateescape") for k in keys]
    # A blank is rare in these files; memchr rules it out before any search.
    prefixes += [b.encode() for b in _BLANKS if b.encode() in data]
    for prefix in prefixes:
        if data.startswith(prefix):
            starts.add(0)
        needle = b"\n" + prefix
        at = data.find(needle)
        while at >= 0:
            starts.add(at + 1)
            at = data.find(needle, at + 1)
    found = []
    for start in sorted(starts):
        end = data.find(b"\n", start)
        line = (data[start:] if end < 0 else data[start:end]).decode("utf-8", "surrogateescape")
        body = line.lstrip(blanks)
        if any(body.startswith(key) and body[len(key):].lstrip(blanks).startswith(":")
               for key in keys):
            found.append((start, line))
    return found


def all_entries(text: str | bytes, source: str) -> list[SubidRange]:
    """Every owner's well-formed lines, as shadow would use them (for the diagnosis).

    The one full parse: only ``idrun check`` and a caller without ranges (to propose
    a free block) pay for it, never a launch that finds its lines.
    """
    out: list[SubidRange] = []
    for lineno, line in enumerate(_as_text(text).split("\n"), 1):
        fields = line.split(":")
        if len(fields) == 3 and fields[0] and not line.startswith("#") \
                and all(_decimal(f) and len(f) <= len(str(ID_LIMIT)) for f in fields[1:]):
            start, count = decimal(fields[1]), decimal(fields[2])
            assert start is not None and count is not None
            out.append(SubidRange(start, count, lineno, fields[0]))
    return out


# useradd's defaults (login.defs SUB_UID_MIN, SUB_UID_MAX, SUB_UID_COUNT).
SUB_ID_MIN = 100000
SUB_ID_MAX = 600100000
SUB_ID_COUNT = 65536


def free_block(entries: list[SubidRange], count: int = SUB_ID_COUNT,
               low: int = SUB_ID_MIN, high: int = SUB_ID_MAX) -> tuple[int, int] | None:
    """The lowest block of ``count`` ids no line delegates, as useradd picks one.

    Returns (first, last) or None when the window is full.
    """
    for lo, hi in subtract(low, high + 1, ((e.start, e.end) for e in entries)):
        if hi - lo >= count:
            return lo, lo + count - 1
    return None


def check_overlaps(ranges: list[SubidRange], source: str) -> None:
    clash = first_overlap(ranges, lambda r: r.start, lambda r: r.count)
    if clash is not None:
        first, second = sorted((clash.earlier, clash.later), key=lambda r: r.lineno)
        raise SubidError(
            f"{source} line {second.lineno} ({second.start}:{second.count}) overlaps line "
            f"{first.lineno} ({first.start}:{first.count}) on ids {clash.first}-{clash.last}",
            "remove the duplicate or shrink one range; the kernel refuses overlapping maps")


def parse_getsubids(output: str, source: str, keys: tuple[str, ...]) -> SubidSet:
    """Ranges from ``getsubids`` output: ``INDEX: OWNER START COUNT`` per line."""
    ranges: list[SubidRange] = []
    seen: set[tuple[int, int]] = set()
    for raw in output.splitlines():
        _, _, rest = raw.partition(":")
        parts = rest.split()
        if len(parts) != 3 or not (_decimal(parts[1]) and _decimal(parts[2])):
            continue
        start, count = decimal(parts[1]), decimal(parts[2])
        assert start is not None and count is not None
        if count and (start, count) not in seen:
            seen.add((start, count))
            ranges.append(SubidRange(start, count, 0))
    check_overlaps(ranges, source)
    return SubidSet(source=source, ranges=tuple(ranges), present=True, keys=keys)


def nss_subid_module(nsswitch_text: str) -> str | None:
    """The ``subid:`` module of nsswitch.conf, or None for files/unset."""
    for raw in nsswitch_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("subid:"):
            words = line[len("subid:"):].split()
            if words and words[0] != "files":
                return words[0]
            return None
    return None
