"""The spellings of util-linux unshare, bubblewrap and podman, before click parses.

Pure: the words of idrun's own options in, the same words with peer spellings
rewritten to idrun's out, or one ``IdrunError`` naming idrun's spelling (exit
125). A spelling is taken unchanged only where it means the same in idrun and
collides with nothing idrun has: unshare's short flags (``-U`` — idrun always
creates a user namespace — ``-n -p -m -f -i -C``, also bunched as ``-Ur``), bubblewrap's
``--unshare-*`` and ``--chdir``, unshare's ``--wd``, podman's ``--network none|host|private``
and ``--pid=``, ``--ipc=``, ``--uts=``, ``--cgroupns=`` ``host|private``.
unshare's ``-u`` (UTS) and ``--user`` (no value) stay idrun's, podman's ``--user``.
Only the words before the command are looked at: the command's own are its own.
"""
from __future__ import annotations

from ..errors import IdrunError, quoted
from ..options import OPTIONS

# The spellings taken unchanged come from the option table (options.Option.peers),
# besides those of the user namespace, which idrun always creates.
_PEERS = [(p, o) for o in OPTIONS for p in o.peers]
# Short flags of unshare(1) with the same meaning in idrun; None: nothing to do.
_SHORT: dict[str, str | None] = {"U": None, **{p: o.long for p, o in _PEERS if len(p) == 1}}
# Long flags taken unchanged.
_LONG = {"--unshare-user": [], "--unshare-user-try": [],
         **{p: [o.long] for p, o in _PEERS if p[:2] == "--" and p[-1] != "=" and not o.value}}
# bubblewrap's --unshare-all: its --unshare-* flags, each as idrun's.
_LONG["--unshare-all"] = [flag for p in ("--unshare-net", "--unshare-pid", "--unshare-ipc",
                                         "--unshare-uts", "--unshare-cgroup")
                          for flag in _LONG[p]]
# Long options with a value taken unchanged under idrun's name.
_RENAMED = {p: o.long for p, o in _PEERS if p[:2] == "--" and o.value}
# podman's NAME=host|private namespace modes: host keeps the host's (idrun's default),
# private is idrun's flag. Only the '=' form: "--pid host" stays idrun's flag and a command.
_NS_MODES: dict[str, str] = {p[:-1]: o.long for p, o in _PEERS if p[-1] == "="}
# Options of peers idrun spells differently: how many values they take.
_POINTED = {"--bind": 2, "--ro-bind": 2, "--dev-bind": 2, "--bind-try": 2, "--ro-bind-try": 2,
            "--map-users": 1, "--map-groups": 1, "--map-user": 1, "--map-group": 1,
            "--uid": 1, "--gid": 1, "--root": 1, "--proc": 1, "--kill-child": 0,
            "--map-subids": 0, "--network": 1}


def translate(args: list[str], takes_value: frozenset[str], shorts_with_value: str) -> list[str]:
    """``args`` with peer spellings among idrun's options rewritten; stops at the
    first word that is not an option (the command) or at ``--``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--" or not word.startswith("-") or word == "-":
            return out + args[i:]
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if name in _LONG and not eq:
                out += _LONG[name]
            elif name in _RENAMED:
                if eq:
                    out.append(f"{_RENAMED[name]}={value}")
                else:
                    out += [_RENAMED[name], *args[i + 1:i + 2]]
                    i += 1
            elif name == "--net" and eq and value in ("none", "host", "private"):
                out += [] if value == "host" else ["--net"]   # podman's --net=VALUE
            elif name in _NS_MODES and eq:
                out += _ns_mode(name, value)
            elif name in _POINTED:
                n = _POINTED[name]
                values = ([value] if eq else args[i + 1:i + 1 + n])
                if name == "--network" and values and values[0] in ("none", "host", "private"):
                    out += [] if values[0] == "host" else ["--net"]
                    i += 0 if eq else 1
                else:
                    raise _pointer(name, values)
            else:
                out.append(word)
                if name in takes_value and not eq:
                    out += args[i + 1:i + 2]
                    i += 1
            i += 1
            continue
        # A bunch of short options: -Ur, -npf, -uVALUE.
        for j, ch in enumerate(word[1:], 1):
            if ch in shorts_with_value:
                rest = word[j + 1:]
                out += [f"-{ch}", rest] if rest else [f"-{ch}", *args[i + 1:i + 2]]
                i += 0 if rest else 1
                break
            if ch in _SHORT:
                out += [_SHORT[ch]] if _SHORT[ch] else []
            else:
                out.append(f"-{ch}")
        i += 1
    return out


def _ns_mode(name: str, value: str) -> list[str]:
    flag = _NS_MODES[name]
    if value == "host":
        return []
    if value == "private":
        return [flag]
    raise IdrunError(f"{name}={quoted(value)}: idrun has no such namespace mode",
                     f"{flag} (or {name}=private) gives the command a new namespace; "
                     f"{name}=host (or nothing) keeps the host's")


def _pointer(name: str, values: list[str]) -> IdrunError:
    """One line: the peer's option, and idrun's spelling of it (filled in when it can)."""
    v = values + ["…"] * 2
    if name in ("--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try"):
        ro = ":ro" if name.startswith("--ro") else ""
        return IdrunError(f"{name} is bubblewrap's spelling",
                          f"idrun binds with -v SRC:DST[:ro], here -v {v[0]}:{v[1]}{ro} "
                          "(onto the host's tree, not an empty root)")
    if name in ("--map-users", "--map-groups"):
        option = "--uidmap" if name == "--map-users" else "--gidmap"
        text = v[0]
        parts = text.replace(",", ":").split(":")
        if text == "auto":
            hint = "idrun spells it --map-auto"
        elif len(parts) == 3 and "," in text:   # util-linux 2.38: OUTER,INNER,COUNT
            hint = (f"idrun spells it {option} {parts[1]}:{parts[0]}:{parts[2]} (as root; "
                    f"rootless write {parts[1]}:@{parts[0]}:{parts[2]} for a host id)")
        elif len(parts) == 3:                   # util-linux 2.40+: INNER:OUTER:COUNT
            hint = (f"idrun spells it {option} {parts[0]}:{parts[1]}:{parts[2]} (as root; "
                    f"rootless write {parts[0]}:@{parts[1]}:{parts[2]} for a host id)")
        else:
            hint = f"idrun spells it {option} INSIDE:OUTSIDE:COUNT (podman's order)"
        return IdrunError(f"{name} {quoted(text)} is util-linux unshare's spelling", hint)
    if name in ("--map-user", "--map-group"):
        option = "--uidmap" if name == "--map-user" else "--gidmap"
        return IdrunError(f"{name} is util-linux unshare's spelling",
                          f"idrun maps your own id to {v[0]} with {option} {v[0]}:0:1 "
                          "(from id 0 is you, rootless or as root)")
    if name in ("--uid", "--gid"):
        return IdrunError(f"{name} is bubblewrap's spelling",
                          "idrun spells it --user UID[:GID] (container ids)")
    if name == "--root":
        return IdrunError("--root is util-linux unshare's spelling",
                          f"idrun spells it --rootfs {v[0]}")
    if name == "--proc":
        return IdrunError("--proc is bubblewrap's spelling",
                          "idrun mounts a fresh /proc with --pid --mount-proc")
    if name == "--kill-child":
        return IdrunError("--kill-child is util-linux unshare's spelling",
                          "idrun's nearest is --die-with-parent (the command dies with "
                          "idrun's parent)")
    if name == "--map-subids":
        return IdrunError("--map-subids is util-linux unshare's spelling",
                          "idrun maps your first sub-id range at 0 with --map-auto")
    return IdrunError(f"--network {quoted(v[0])}: idrun has no such network mode",
                      "--net (or --network none) gives a new network namespace with only "
                      "lo up; --network host (or nothing) keeps the host's")
