"""Man pages idrun(1), idrun-map(1), idrun-check(1), idrun-show(1), generated from click.

``python3 -m idrun.manpage OUTDIR`` writes them (the Debian package builds and
installs them; see debian/rules). Options and descriptions come from the same
click definitions as ``--help`` (via ``cliinfo``); only the reference sections
that ``--help`` does not have (mapping syntax, files, environment) are prose here.
"""
from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from . import __version__
from .cliinfo import CommandInfo, OptionInfo, commands

SUMMARY = {
    None: "run a command in a new user namespace with podman-style id mappings",
    "map": "resolve and validate an idrun mapping without starting anything",
    "check": "diagnose a host for rootless idrun",
    "show": "show a process's uid_map, gid_map and setgroups",
}

MAPPING_SYNTAX = """\
A mapping value is podman's: \\fB[+ug]\\fICONTAINER\\fB:[@]\\fIFROM\\fB[:\\fIAMOUNT\\fB]\\fR, \
several triples separated by commas or repeated options.
.TP
.I CONTAINER
the first id inside the new namespace.
.TP
.I FROM
the first id outside: a host id as root; rootless, an intermediate id (0 is you, then your \
sub-id ranges from /etc/subuid or /etc/subgid sorted by start, numbered from 1). \
\\fB@\\fR names a host id instead and resolves it through the intermediate map.
.TP
.I AMOUNT
how many ids (default 1; 0 is an error).
.TP
.B u\\fR, \\fBg
apply the value only to uids or only to gids.
.TP
.B +
break-insert: earlier lines lose the ids the new one takes, on either side.
.PP
\\fB\\-\\-uidmap\\fR alone is copied to the gids and vice versa. Overlaps, id 4294967295, \
more than 340 lines or 4096 bytes, and ids not delegated to the caller are errors before \
anything starts; \\fBidrun map\\fR shows what a mapping resolves to.
"""

EXIT_STATUS = """\
.TP
.B 0
success (for the launcher: the command's own status).
.TP
.B 125
an error of idrun itself; nothing was started.
.TP
.B 126
the command is not executable.
.TP
.B 127
the command was not found.
.TP
.B 128+N
the command was killed by signal N.
"""

CHECK_EXIT = """\
.TP
.B 0
a rootless launch will work.
.TP
.B 1
at least one check failed.
.TP
.B 125
an error of idrun itself.
"""

FILES = """\
.TP
.I /etc/subuid
.TQ
.I /etc/subgid
the sub-id ranges delegated to each user (\\fBsubuid\\fR(5), \\fBsubgid\\fR(5)); rootless \
mappings may use only these.
.TP
.I /proc/PID/uid_map\\fR, \\fI/proc/PID/gid_map\\fR, \\fI/proc/PID/setgroups
the maps written (as root) or read (\\fBidrun show\\fR).
.TP
.I /run/idrun\\fR, \\fI$XDG_RUNTIME_DIR/idrun\\fR, \\fI~/.local/state/idrun
the \\fB\\-\\-userns auto\\fR lease registry: root's; a user's in a private runtime \
directory, else in \\fI$XDG_STATE_HOME/idrun\\fR (default \\fI~/.local/state/idrun\\fR); never \
under a directory others can write. A lease is held while its launcher or any process using \
its ids runs.
"""

ENVIRONMENT = """\
.TP
.B IDRUN_NEWUIDMAP\\fR, \\fBIDRUN_NEWGIDMAP
absolute paths of the newuidmap and newgidmap helpers to use instead of the system's.
.TP
.B IDRUN_LEASE_DIR
the \\fB\\-\\-userns auto\\fR lease registry to use instead of the default (see FILES); \
it must be owned by you and not writable by others.
.TP
.B XDG_RUNTIME_DIR\\fR, \\fBXDG_STATE_HOME
where a user's lease registry lives (see FILES).
"""

SEE_ALSO = ("newuidmap(1), newgidmap(1), unshare(1), podman-run(1), user_namespaces(7), "
            "subuid(5), subgid(5)")


def _esc(text: str) -> str:
    """Text as roff: backslashes, hyphens and line-leading control characters escaped."""
    text = (text.replace("\\", "\\e").replace("-", "\\-").replace("…", "...")
            .replace("→", "\\(->"))
    return "\n".join("\\&" + ln if ln[:1] in (".", "'") else ln for ln in text.split("\n"))


def _paragraphs(text: str) -> str:
    """click help text: blank-line paragraphs; a ``\\b`` paragraph keeps its lines."""
    out = []
    for para in text.strip().split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() == "\b":
            out.append(".PP\n.nf\n" + _esc("\n".join(ln.rstrip() for ln in lines[1:])) + "\n.fi")
        else:
            out.append(".PP\n" + _esc(" ".join(ln.strip() for ln in lines)))
    return "\n".join(out)


def _option(o: OptionInfo) -> str:
    names = ", ".join(f"\\fB{_esc(n)}\\fR" for n in o.names)
    value = f" \\fI{_esc(o.metavar)}\\fR" if o.metavar else ""
    return f".TP\n{names}{value}\n{_esc(o.help)}"


def _synopsis(c: CommandInfo) -> str:
    if c.sub is None:
        return (".B idrun\n[\\fIOPTIONS\\fR] [\\fB\\-\\-\\fR] [\\fICOMMAND\\fR [\\fIARG\\fR...]]\n"
                ".br\n.B idrun\n\\fBmap\\fR|\\fBcheck\\fR|\\fBshow\\fR [\\fIOPTIONS\\fR]")
    args = " ".join(f"[\\fI{_esc(a)}\\fR]" for a in c.arguments)
    return f".B idrun {c.sub}\n[\\fIOPTIONS\\fR] {args}".rstrip()


def _split_examples(c: CommandInfo) -> tuple[str, str]:
    """The command help without its ``Examples:`` block, and that block."""
    head, sep, tail = c.help.partition("\b\nExamples:")
    if not sep:
        return c.help, ""
    return head, "\n".join(ln.strip() for ln in tail.strip("\n").split("\n"))


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def page_name(c: CommandInfo) -> str:
    return "idrun" if c.sub is None else f"idrun-{c.sub}"


def render(c: CommandInfo, all_cmds: list[CommandInfo]) -> str:
    """The roff source of one command's page."""
    name = page_name(c)
    description, examples = _split_examples(c)
    out = [f'.TH {name.upper()} 1 "{_date()}" "idrun {__version__}" "User Commands"',
           ".SH NAME", f"{_esc(name)} \\- {_esc(SUMMARY.get(c.sub, ''))}",
           ".SH SYNOPSIS", _synopsis(c),
           ".SH DESCRIPTION", _paragraphs(description)]
    if c.epilog and c.sub is not None:
        out.append(_paragraphs(c.epilog))
    groups = [("MAPPING OPTIONS", [o for o in c.options if o.group == "mapping"]),
              ("OPTIONS", [o for o in c.options if o.group != "mapping"])]
    for title, opts in groups:
        if opts:
            out += [f".SH {title}"] + [_option(o) for o in opts]
    if any(o.group == "mapping" for o in c.options):
        out += [".SH MAPPING SYNTAX", MAPPING_SYNTAX.rstrip()]
    if c.sub != "show":
        out += [".SH EXIT STATUS", (CHECK_EXIT if c.sub == "check" else EXIT_STATUS).rstrip()]
    out += [".SH FILES", FILES.rstrip()]
    if c.sub in (None, "map", "check"):
        out += [".SH ENVIRONMENT", ENVIRONMENT.rstrip()]
    if examples:
        out += [".SH EXAMPLES", ".nf", _esc(examples), ".fi"]
    others = [f"{page_name(o)}(1)" for o in all_cmds if o is not c]
    out += [".SH SEE ALSO", _esc(", ".join(others) + ", " + SEE_ALSO)]
    return "\n".join(out) + "\n"


def write_all(outdir: str | Path) -> list[Path]:
    """Write every page as ``outdir/NAME.1``; return their paths."""
    cmds = commands()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in cmds:
        path = out / f"{page_name(c)}.1"
        path.write_text(render(c, cmds))
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for p in write_all(sys.argv[1] if len(sys.argv) > 1 else "build/man"):
        print(p)
