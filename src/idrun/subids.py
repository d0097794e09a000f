"""Parsing of /etc/subuid and /etc/subgid text (pure) and of getsubids output.

A line is ``OWNER:START:COUNT``; OWNER is a login name or a decimal uid. Only
the lines of the owners asked for are checked strictly; other owners' lines are
skipped unread, so one pass over a large file stays cheap.
"""
from __future__ import annotations

import re

from .errors import SubidError, quoted
from .plan import SubidRange, SubidSet

_HINT_NUMBER = ("write START and COUNT in plain decimal: shadow reads a leading 0 as octal "
                "and 0x as hex while podman reads decimal, so such a line means different ids "
                "to different tools")


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def parse_subid_text(text: str, source: str, keys: tuple[str, ...]) -> SubidSet:
    """The ranges of the owner known by any of ``keys`` (login name, uid string).

    Raises ``SubidError`` naming the file and line for a malformed line of that
    owner, or for two of its ranges that overlap.
    """
    wanted = [k for k in keys if k]
    ranges: list[SubidRange] = []
    warnings: list[str] = []
    if not wanted:
        return SubidSet(source=source, present=True)
    # One pass of the C regex engine over the whole file finds the owner's
    # lines; other owners' lines are never split or converted in Python.
    pattern = re.compile(r"^[ \t]*(?:%s)[ \t]*:.*$" % "|".join(map(re.escape, wanted)),
                         re.MULTILINE)
    lineno, pos = 1, 0
    for match in pattern.finditer(text):
        lineno += text.count("\n", pos, match.start())
        pos = match.start()
        raw = match.group()
        line = raw.strip()
        fields = line.split(":")
        where = f"{source} line {lineno}"
        if len(fields) != 3:
            raise SubidError(
                f'{where}: {quoted(line)} has {len(fields)} field(s), expected OWNER:START:COUNT',
                f"fix or remove the line in {source}")
        _, start_text, count_text = fields
        for name, value in (("START", start_text), ("COUNT", count_text)):
            if not _decimal(value):
                raise SubidError(f'{where}: {name} {quoted(value)} of {quoted(line)} is not a plain decimal '
                                 "number", _HINT_NUMBER)
        start, count = int(start_text), int(count_text)
        if start > 4294967294 or start + count > 4294967295:
            raise SubidError(f'{where}: range {quoted(line)} reaches past id 4294967294',
                             "sub-id ranges must end below 4294967295")
        if count == 0:
            warnings.append(f'{where}: {quoted(line)} delegates no ids (COUNT 0); ignored')
            continue
        ranges.append(SubidRange(start, count, lineno))
    check_overlaps(ranges, source)
    return SubidSet(source=source, ranges=tuple(ranges), present=True,
                    keys=tuple(k for k in keys if k), warnings=tuple(warnings))


def check_overlaps(ranges: list[SubidRange], source: str) -> None:
    ordered = sorted(ranges, key=lambda r: r.start)
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            first, second = sorted((a, b), key=lambda r: r.lineno)
            lo, hi = b.start, min(a.end, b.end) - 1
            raise SubidError(
                f"{source} line {second.lineno} ({second.start}:{second.count}) overlaps line "
                f"{first.lineno} ({first.start}:{first.count}) on ids {lo}-{hi}",
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
        start, count = int(parts[1]), int(parts[2])
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
