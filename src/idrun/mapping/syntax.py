"""Parsing of one --uidmap/--gidmap value: ``[flags]container:[@]from[:amount]``.

Pure: strings in, ``Triple`` objects or a ``MapSyntaxError`` out.
"""

from ..hints import NamedTuple

from ..errors import MapSyntaxError, quoted
from .ranges import ID_LIMIT, MAX_ID

_FLAGS = "+ug"


class Triple(NamedTuple):
    """One ``container:from:amount`` group of a value, with its flags."""

    container: int
    from_id: int
    amount: int
    host: bool          # '@': from_id is a host id, translated through the parent map
    plus: bool          # '+': break-insert
    for_uid: bool
    for_gid: bool
    origin: str         # e.g. '--uidmap "0:1000:1"' (with the triple number when >1)

    def applies_to(self, kind: str) -> bool:
        return self.for_uid if kind == "uid" else self.for_gid


_TOO_LARGE = ID_LIMIT + 1  # stands for any value of more digits than an id has


def decimal(text: str) -> int | None:
    """The value of plain ASCII decimal ``text`` (leading zeros allowed), else None.

    The one decimal parser of idrun's inputs. ``int()`` alone would accept
    blanks, '_', signs and non-ASCII digits, and refuses (or takes long over)
    thousands of digits; so digits are checked first and a value longer than
    any id is returned as 2**32, which every caller's limit rejects.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    return _TOO_LARGE if len(digits) > 10 else min(int(digits), _TOO_LARGE)


def decimal_id(text: str, what: str, hint: str, limit: int = MAX_ID) -> int:
    """``text`` as an id from 0 to ``limit``, or a MapSyntaxError naming ``what``."""
    number = decimal(text)
    if number is None:
        raise MapSyntaxError(f"{what} {quoted(text)} is not a decimal number", hint)
    if number > limit:
        raise MapSyntaxError(f"{what} {quoted(text)} is larger than {limit}", hint)
    return number


def field_number(text: str, value: str, option: str, field: str) -> int:
    """One numeric field of an option value (an id or a count, 0 to ID_LIMIT)."""
    number = decimal(text)
    if number is not None and number <= ID_LIMIT:
        return number
    # The message's quoting only on the way to an error: a long value list is
    # otherwise quoted three times a triple for nothing.
    shown = quoted(value)
    if not text:
        raise MapSyntaxError(
            f'invalid {option} value {shown}: {field} is empty',
            "each field is a decimal number, e.g. 0:100000:65536")
    if number is None:
        raise MapSyntaxError(
            f'invalid {option} value {shown}: {field} {quoted(text)} is not a decimal number',
            "use plain decimal digits 0-9 (no sign, blanks, hex or other characters)")
    if number > ID_LIMIT:
        raise MapSyntaxError(
            f'invalid {option} value {shown}: {field} {quoted(text)} is larger than {ID_LIMIT}',
            f"ids are unsigned 32-bit numbers and must stay below {ID_LIMIT}")
    return number


def parse_user(text: str) -> tuple[int, int | None]:
    """``--user UID[:GID]`` (container ids) into (uid, gid or None)."""
    uid_text, sep, gid_text = text.partition(":")
    hint = "write --user UID[:GID] with container ids, e.g. --user 0:0"
    uid = decimal_id(uid_text, f"--user {quoted(text)}: UID", hint)
    return uid, (decimal_id(gid_text, f"--user {quoted(text)}: GID", hint) if sep else None)


class UsernsSpec(NamedTuple):
    """``--userns MODE[:OPTIONS]`` split once; the options are the mode's business."""

    mode: str
    options: str
    text: str


def parse_userns(text: str) -> UsernsSpec:
    mode, _, options = text.partition(":")
    return UsernsSpec(mode, options, text)


def mode_options(text: str, origin: str, mode: str,
                 takes: dict[str, str]) -> list[tuple[str, str]]:
    """The ``key=value,…`` options of an --userns mode (``keep-id:uid=1``, ``auto:size=N``),
    in the order written; each key one of ``takes`` (key: the form of its value, for the
    hints). ``origin`` names the option in messages. The values are the caller's to read."""
    items: list[tuple[str, str]] = []
    for item in (text.split(",") if text else []):
        key, eq, value = item.partition("=")
        if not eq:
            first = next(iter(takes))
            raise MapSyntaxError(f'{origin}: option {quoted(item)} has no "=value"',
                                 f"write {mode}:{first}={takes[first]}")
        if key not in takes:
            forms = [f"{k}={form}" for k, form in takes.items()]
            raise MapSyntaxError(f"{origin}: unknown option {quoted(key)}",
                                 f"{mode} takes {', '.join(forms[:-1])} and {forms[-1]}")
        items.append((key, value))
    return items


def parse_value(value: str, option: str = "--uidmap") -> list[Triple]:
    """Parse one value into its triples; an empty value gives none."""
    if value == "":
        return []
    shown = quoted(value)
    fields = value.split(":")
    nfields = len(fields)
    if nfields == 2:
        groups = [(fields[0], fields[1], None)]
    elif nfields % 3 == 0:
        groups = [(fields[i], fields[i + 1], fields[i + 2]) for i in range(0, nfields, 3)]
    else:
        raise MapSyntaxError(
            f'invalid {option} value {shown}: it has {nfields} field'
            f'{"" if nfields == 1 else "s"} separated by ":", expected 2, 3 or a multiple of 3',
            "write container:from[:amount], e.g. 0:1000:1")
    several = len(groups) > 1
    triples: list[Triple] = []
    offset = 0  # column of the group's first field within the value
    for index, (first, second, third) in enumerate(groups, 1):
        group_offset = offset
        offset += sum(len(f) + 1 for f in fields[3 * (index - 1):3 * index])
        where = f"triple {index}, " if several else ""
        origin = f'{option} {shown}' + (f" (triple {index})" if several else "")
        pos = 0
        while pos < len(first) and first[pos] in _FLAGS:
            pos += 1
        flags, container_text = first[:pos], first[pos:]
        if not container_text:
            if first:
                raise MapSyntaxError(
                    f'invalid {option} value {shown}: {where}flags "{flags}" are not '
                    "followed by a container id",
                    "put the container id right after the flags, e.g. +u0:1000:1")
            raise MapSyntaxError(
                f'invalid {option} value {shown}: {where}the container id is empty',
                "write container:from[:amount], e.g. 0:1000:1")
        if not container_text[0].isdigit() or not container_text[0].isascii():
            bad = container_text[0]
            raise MapSyntaxError(
                f'invalid {option} value {shown}: {where}unknown flag {quoted(bad)} at column '
                f"{group_offset + pos + 1}",
                'flags are "+", "u" and "g" before the container id; "@" goes before the from id')
        container = field_number(container_text, value, option, f"{where}container id")
        if not second:
            raise MapSyntaxError(
                f'invalid {option} value {shown}: {where}the from id is empty',
                "write container:from[:amount], e.g. 0:1000:1")
        host = second.startswith("@")
        from_id = field_number(second[1:] if host else second, value, option,
                          f"{where}from id")
        if third is None:
            amount = 1
        else:
            amount = field_number(third, value, option, f"{where}amount")
            if amount == 0:
                raise MapSyntaxError(
                    f'invalid {option} value {shown}: {where}amount is 0',
                    "a mapping needs at least 1 id (podman silently ignores amount 0; "
                    "idrun refuses it)")
        has_u, has_g = "u" in flags, "g" in flags
        # Positional, in the field order (container, from_id, amount, host, plus,
        # for_uid, for_gid, origin): the hot path of a long value list.
        triples.append(Triple(container, from_id, amount, host, "+" in flags,
                              has_u or not has_g, has_g or not has_u, origin))
    return triples
