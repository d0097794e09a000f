"""Man pages idrun(1), idrun-map(1), idrun-check(1), idrun-show(1), generated from click.

``python3 -m idrun.cli.manpage OUTDIR`` writes them (the Debian package builds and
installs them; see debian/rules). Options and descriptions come from the same
click definitions as ``--help`` (via ``cliinfo``); only the reference sections
that ``--help`` does not have (mapping syntax, sharing directories, exit status, files,
environment) are prose here, each on the pages of the commands it concerns.
"""
from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from .. import __version__
from .info import CommandInfo, OptionInfo, commands
from ..options import SECTION_TITLES

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
launches that map only your own ids (\\fB\\-r\\fR, \\fB\\-c\\fR, \\fB\\-\\-userns keep\\-id\\fR) \
work; a FAIL or WARN line may still say that sub\\-id mappings do not (the last line, \
\\fB"sub_ids"\\fR in \\fB\\-\\-json\\fR).
.TP
.B 1
not even those work (kernel, sysctls, AppArmor).
.TP
.B 125
an error of idrun itself (e.g. an unknown \\fB\\-\\-user\\fR).
"""

MAP_EXIT = """\
.TP
.B 0
the mapping (and every mount option) is valid.
.TP
.B 125
it is not, or another error of idrun: one line on stderr says what, where and why.
"""

SHOW_EXIT = """\
.TP
.B 0
the maps were shown.
.TP
.B 125
an error of idrun itself, e.g. no such process or its maps are unreadable.
"""

SHARING = """\
.PP
Any of these gives the command a private mount namespace; nothing is mounted in the host's. \
Without \\fB\\-\\-rootfs\\fR, \\fIDST\\fR must exist. The volume options \\fIOPTS\\fR, \
separated by commas:
.TP
.B ro\\fR, \\fBrw
read\\-only or writable (the default).
.TP
.B idmap
an id\\-mapped mount with the launched namespace's own map: files keep their on\\-disk \
numbers inside (podman's default).
.TP
.B idmap=uids=\\fIA\\fB\\-\\fIB\\fB\\-\\fIN\\fB[#...][;gids=...]
podman's custom map: on\\-disk ids \\fIA\\fR... show as host ids \\fIB\\fR...; a leading \
\\fB@\\fR makes \\fIB\\fR an id inside the namespace.
.TP
.B uid=\\fIHOST\\fB:\\fIINSIDE\\fR, \\fBgid=\\fIHOST\\fB:\\fIINSIDE
multipass's pairs (host first, repeatable): files of on\\-disk id \\fIHOST\\fR show as \
\\fIINSIDE\\fR. A \\fBuid=\\fR pair alone leaves the gids as \\fBidmap\\fR does: they keep \
their on\\-disk numbers inside.
.PP
A file whose on\\-disk owner the mount's map leaves out shows as the overflow id (65534, \
nobody); writing into such a directory fails with EACCES whatever its mode, and creating a \
file as an inside id the map cannot take back fails with EOVERFLOW. \
\\fBidrun map \\-v \\fISRC\\fB:\\fIDST\\fB:\\fIOPTS\\fB \\-\\-files\\fR counts the owners \
under \\fISRC\\fR and shows how each appears inside, before anything runs. Id\\-mapped \
mounts need root (CAP_SYS_ADMIN over the host filesystem); rootless, idmap is refused and \
plain volumes and \\fB\\-\\-rootfs\\fR work (put your own uid where you want it with \
\\fB\\-\\-userns keep\\-id:uid=\\fIN\\fR).
.PP
\\fB\\-\\-tmpfs\\fR takes \\fBsize=\\fR, \\fBmode=\\fR, \\fBnr_inodes=\\fR, \\fBuid=\\fR, \
\\fBgid=\\fR, \\fBro\\fR, \\fBnosuid\\fR, \\fBnodev\\fR, \\fBnoexec\\fR and \\fBidmap\\fR \
(Linux 6.3 or later). \\fB\\-\\-rootfs \\fIDIR\\fR[\\fB:idmap\\fR] runs the command with \
\\fIDIR\\fR as its root filesystem: a minimal /dev with a private devpts, a fresh /proc with \
\\fB\\-\\-pid\\fR (else a read\\-only bind of the host's); missing mount points are created \
inside \\fIDIR\\fR only.
"""

# What the mount layer guarantees against the command and the rootfs owner (issue 18).
SHARING_SAFETY = """\
.PP
What \\fB\\-\\-volume\\fR, \\fB\\-\\-tmpfs\\fR and \\fB\\-\\-rootfs\\fR guarantee, on hosts whose \\fB/\\fR \
is shared (systemd), slave or private:
.TP
.B propagation
every tree idrun attaches (id-mapped volumes, binds, tmpfs, the rootfs, /dev, /proc) is made \
private before it is attached, so no mount the command makes reaches the host or any other \
namespace, and no host mount event reaches inside.
.TP
.B ro
as root, the mounts are built in a mount namespace the initial user namespace owns, and the \
command's namespaces are made from it: the kernel locks them, so the command, even as root \
with every capability in its namespace, cannot remount them read-write or unmount them to \
uncover what is beneath. Rootless there is no such owner, so a launch with a read-only mount \
leaves CAP_SYS_ADMIN out of the command's capability sets; \\fB\\-\\-cap\\-add SYS_ADMIN\\fR gives \
it back and makes \\fBro\\fR advisory (said once).
.TP
.B paths inside the root
\\fB\\-\\-rootfs\\fR \\fIDIR\\fR is resolved once (a symlink to / is refused) and opened as a \
descriptor; every mount point is looked up and created relative to it (openat2 \
RESOLVE_IN_ROOT, mkdirat, O_EXCL|O_NOFOLLOW), so a symlink in DST resolves inside the root and \
a tree changed during the launch makes it fail (125), never creates or mounts anything outside.
.PP
The command can still make mounts of its own inside its namespace (with CAP_SYS_ADMIN there), \
over or under idrun's; they stay in its namespace.
"""

# FILES and ENVIRONMENT entries; each page lists those its command reads.
F_SUBIDS = """\
.TP
.I /etc/subuid
.TQ
.I /etc/subgid
the sub\\-id ranges delegated to each user (\\fBsubuid\\fR(5), \\fBsubgid\\fR(5)); rootless \
mappings may use only these."""
F_PROC = """\
.TP
.I /proc/PID/uid_map\\fR, \\fI/proc/PID/gid_map\\fR, \\fI/proc/PID/setgroups
the maps written (as root) or read (\\fBidrun show\\fR)."""
F_LEASES = """\
.TP
.I /run/idrun
.TQ
.I $XDG_RUNTIME_DIR/idrun
.TQ
.I ~/.local/state/idrun
the \\fB\\-\\-userns auto\\fR lease registry, one file per live namespace's block: as root \
\\fI/run/idrun\\fR; rootless \\fI$XDG_RUNTIME_DIR/idrun\\fR when that runtime directory is \
yours and private, else \\fI$XDG_STATE_HOME/idrun\\fR (default \\fI~/.local/state/idrun\\fR); \
never under a directory others can write. \\fBIDRUN_LEASE_DIR\\fR overrides both. A lease \
is held while its launcher or any process using its ids runs; \\fBidrun show \\-\\-leases\\fR \
lists the leases and the processes holding them. The directory also keeps \\fIhelper\\-fd\\-target\\fR, \
whether newuidmap and newgidmap take an fd: target (for a helper whose bytes do not tell), \
keyed by the helper's path, device, inode, mtime and size."""
F_HELPERS = """\
.TP
.I /usr/bin/newuidmap\\fR, \\fI/usr/bin/newgidmap
shadow's setuid helpers that write a rootless namespace's sub\\-id maps, looked for only in \
/usr/bin, /bin, /usr/sbin and /sbin (never in $PATH)."""

E_AUTO = """\
.TP
.B IDRUN_AUTO_USER
as root, the user whose /etc/subuid and /etc/subgid ranges are the \\fB\\-\\-userns auto\\fR \
pool (default \\fBcontainers\\fR, as podman's root\\-auto\\-userns\\-user)."""
E_LEASES = """\
.TP
.B IDRUN_LEASE_DIR
the \\fB\\-\\-userns auto\\fR lease registry directory, instead of the default (see FILES).
.TP
.B XDG_RUNTIME_DIR\\fR, \\fBXDG_STATE_HOME
rootless, the registry is \\fI$XDG_RUNTIME_DIR/idrun\\fR when the runtime directory is yours \
and mode 0700, else \\fI$XDG_STATE_HOME/idrun\\fR (see FILES)."""
E_HELPERS = """\
.TP
.B IDRUN_NEWUIDMAP\\fR, \\fBIDRUN_NEWGIDMAP
absolute paths of the newuidmap and newgidmap helpers to use instead of the system's."""
E_SHELL = """\
.TP
.B SHELL
the command run when none is given (else the login shell from passwd)."""

# Per page (None: the launcher): its exit status, the files and the environment it reads.
EXIT = {None: EXIT_STATUS, "map": MAP_EXIT, "check": CHECK_EXIT, "show": SHOW_EXIT}
FILES = {None: (F_SUBIDS, F_PROC, F_LEASES, F_HELPERS), "map": (F_SUBIDS, F_LEASES, F_HELPERS),
         "check": (F_SUBIDS, F_HELPERS), "show": (F_PROC, F_LEASES)}
ENVIRONMENT = {None: (E_AUTO, E_LEASES, E_HELPERS, E_SHELL),
               "map": (E_AUTO, E_LEASES, E_HELPERS), "check": (E_HELPERS,),
               "show": (E_LEASES,)}
# Prose after a section's options.
AFTER_SECTION = {"Sharing directories": SHARING + SHARING_SAFETY}

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
    # In the order of --help's headings (options.SECTION_TITLES).
    sections: dict[str, list[OptionInfo]] = {}
    for o in sorted(c.options, key=lambda o: SECTION_TITLES.index(o.section)):
        sections.setdefault(o.section, []).append(o)
    for title, opts in sections.items():
        out += [f".SH {title.upper()}"] + [_option(o) for o in opts]
        if title in AFTER_SECTION:
            out.append(AFTER_SECTION[title].rstrip())
    if "Mapping options" in sections:
        out += [".SH MAPPING SYNTAX", MAPPING_SYNTAX.rstrip()]
    out += [".SH EXIT STATUS", EXIT[c.sub].rstrip()]
    if FILES[c.sub]:
        out += [".SH FILES"] + list(FILES[c.sub])
    if ENVIRONMENT[c.sub]:
        out += [".SH ENVIRONMENT"] + list(ENVIRONMENT[c.sub])
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
