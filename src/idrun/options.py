"""The launcher's options: declared once, as data, and checked before anything starts.

``OPTIONS`` is the one list of every option of the launcher, ``idrun map``, ``check``
and ``show``, and of the Python API's launch keywords: names, value and its parser,
help text and section, what a shell completes it with, where the value goes (the
mapping ``Request``, ``LaunchOptions``, the mounts, the host), the namespace it
creates and what it implies. The click options, --help sections, man pages and
shell completions (cli/), the API's keyword list and docstring (api.py), the fields of
``LaunchOptions`` (defined here) and ``--verify``'s reset list (engine.py) are built
from it; tests/test_option_table.py checks they agree. Plain data: importing
this module loads no click.

What the kernel would only refuse after namespaces exist (a hostname too long
for sethostname, --mount-proc without its PID namespace), or never check at all
(descriptors to pass on that are not open), is refused here with one line.
"""

import os

from .errors import IdrunError, quoted
from .hints import record
from .mapping.ranges import MAX_ID
from .system import syscalls

HOST_NAME_MAX = 64   # bytes; sethostname(2) refuses longer names with EINVAL
DEFAULT_FILES = 10_000    # ownership.DEFAULT_LIMIT, kept here so --help loads nothing
FD_LIMIT = 2**31 - 1      # the largest descriptor number the kernel's int holds

# The commands an option belongs to.
LAUNCHER, MAP, CHECK, SHOW = "idrun", "map", "check", "show"
# How a value is read: as typed, by the one decimal parser (0 … limit), one of choices.
TEXT, DECIMAL, CHOICE = "text", "decimal", "choice"
# What a shell completes a value with: host paths, host directories, user names, the
# row's words (CHOICE), -v's host path then its option words (VOLUME), or nothing to
# offer: a number, a descriptor number, other text (TEXT).
PATH, DIR, USER, VOLUME, NUMBER, FD = "path", "dir", "user", "volume", "number", "fd"
COMPLETE_KINDS = (PATH, DIR, USER, CHOICE, VOLUME, NUMBER, FD, TEXT)
# Where the value goes: the mapping Request (plan.py), LaunchOptions (launch.py),
# the capability sets (LaunchOptions.caps), the MountRequest (volumes.py), prelaunch's
# host arguments, or the command line alone (output and --version).
REQUEST, LAUNCH, CAPS, MOUNT, HOST, CLI = "request", "launch", "caps", "mount", "host", "cli"
# Help sections, in the order --help and the man pages list them; check's and show's
# few options are under the last.
SECTION_TITLES = ("Mapping options", "Namespaces", "Process options", "Sharing directories",
                  "Output options", "Options")


class Option:
    """One option: a row of ``OPTIONS``; read-only by convention.

    A plain class with slots: a NamedTuple (or dataclass) of this many fields costs
    every launch ten times as long to create as the whole table takes to fill.
    """

    __slots__ = ("dest", "names", "section", "help", "goes_to", "commands", "value", "parse",
                 "limit", "choices", "multiple", "default", "bare", "api", "clone", "implies",
                 "needs", "needs_why", "chooses_mapping", "verify_reset", "peers", "complete",
                 "words")

    def __init__(self, dest: str, names: tuple[str, ...], section: str, help: str,
                 goes_to: str, commands: tuple[str, ...] = (LAUNCHER,),
                 value: str | None = None, parse: str = TEXT, limit: int = 0,
                 choices: tuple[str, ...] = (), multiple: bool = False,
                 default: object = None, bare: object = None, api: bool = True,
                 clone: str | None = None, implies: str | None = None,
                 needs: str | None = None, needs_why: str = "",
                 chooses_mapping: bool = False, verify_reset: bool = False,
                 peers: tuple[str, ...] = (), complete: str | None = None,
                 words: tuple[str, ...] = ()) -> None:
        self.dest = dest                # the Python name: click's, the API keyword, the field
        self.names = names              # its spellings as click declares them ("-r",
                                        # "--map-root-user"); () for the API alone
        self.section = section          # its --help heading (SECTION_TITLES)
        self.help = help
        self.goes_to = goes_to          # REQUEST, LAUNCH, CAPS, MOUNT, HOST or CLI
        self.commands = commands        # the CLI commands that take it; () for the API alone
        self.value = value              # the value's metavar; None for a flag
        self.parse = parse              # TEXT, DECIMAL (0 … limit) or CHOICE (choices)
        self.limit = limit
        self.choices = choices
        self.multiple = multiple        # repeatable; the value is a tuple
        self.default = default          # None: False for a flag, () if repeatable, else None
        self.bare = bare                # the value when given without one (--files), if it may be
        self.api = api                  # a keyword of idrun.spawn/run (CLI-only when False)
        self.clone = clone              # the unshare(2) flag (a syscalls name) it asks for
        self.implies = implies          # the dest of a flag it turns on
        self.needs = needs              # the dest of a flag it is refused without, because:
        self.needs_why = needs_why
        self.chooses_mapping = chooses_mapping  # replaces the default mapping
        self.verify_reset = verify_reset        # --verify's throwaway namespace leaves it out
        # The spellings of util-linux unshare, bubblewrap and podman taken as this option
        # (peers.py): a letter is unshare's short flag, "NAME=" podman's NAME=host|private
        # namespace mode, any other a long option that means the same.
        self.peers = peers
        self.complete = complete        # what a shell completes the value with (COMPLETE_KINDS)
        self.words = words or choices   # the words it offers (CHOICE; VOLUME: after SRC:DST:)

    def __repr__(self) -> str:
        return f"Option({self.dest!r}, {self.names!r})"

    @property
    def initial(self) -> object:
        """Its value when not given."""
        if self.default is not None:
            return self.default
        if self.multiple:
            return ()
        return False if self.value is None else None

    @property
    def long(self) -> str:
        return self.names[-1]


_MAP_SPEC = "[+ug]CONTAINER:[@]FROM[:AMOUNT]"
_BOTH = (LAUNCHER, MAP)
# --userns's modes (its value is free text: modes with options); tests/test_completion.py
# checks each is accepted by the resolver.
USERNS_MODES = ("host", "keep-id", "nomap", "auto")
# -v SRC:DST[:OPTS]: the OPTS words a shell offers.
VOLUME_OPTIONS = ("ro", "rw", "idmap", "idmap=", "uid=", "gid=")
_M, _N, _P, _S, _O, _OPTIONS = SECTION_TITLES

# In the order click lists them (shell completions keep it); --help and the man pages
# list them by section, in this order within each.
OPTIONS: tuple[Option, ...] = (
    # The mapping (Mapping options; --user and --group-add are listed under Process)
    Option("uidmap", ("--uidmap",), _M, "Map container uids (podman syntax; repeatable). "
           "Without --gidmap it is used for gids too.", REQUEST, _BOTH, _MAP_SPEC,
           multiple=True, chooses_mapping=True, complete=TEXT),
    Option("gidmap", ("--gidmap",), _M, "Map container gids (podman syntax; repeatable).",
           REQUEST, _BOTH, _MAP_SPEC, multiple=True, chooses_mapping=True, complete=TEXT),
    Option("userns", ("--userns",), _M,
           "Preset: host, keep-id[:uid=N,gid=N,size=N], nomap, "
           "auto[:size=N][,uidmapping=C:[@]H:N][,gidmapping=C:[@]H:N] "
           "(auto leases a block no other live idrun namespace holds; "
           "without size= its size follows podman's rule, which with no image "
           "to size from gives auto-userns-min-size, 1024).", REQUEST, _BOTH, "MODE",
           chooses_mapping=True, complete=CHOICE, words=USERNS_MODES),
    Option("map_root_user", ("-r", "--map-root-user"), _M,
           "Map your own uid/gid to 0 inside (util-linux -r).", REQUEST, _BOTH,
           chooses_mapping=True),
    Option("map_current_user", ("-c", "--map-current-user"), _M,
           "Map your own uid/gid to the same ids inside (util-linux -c).", REQUEST, _BOTH,
           chooses_mapping=True),
    Option("map_auto", ("--map-auto",), _M,
           "Map your first /etc/subuid and /etc/subgid range at 0.", REQUEST, _BOTH,
           chooses_mapping=True),
    Option("subuidname", ("--subuidname",), _M,
           "Start the uid map with NAME's /etc/subuid ranges.", REQUEST, _BOTH, "NAME",
           chooses_mapping=True, complete=USER),
    Option("subgidname", ("--subgidname",), _M,
           "Start the gid map with NAME's /etc/subgid ranges.", REQUEST, _BOTH, "NAME",
           chooses_mapping=True, complete=USER),
    Option("user", ("-u", "--user"), _P, "Container ids to run as (default 0 when mapped).",
           REQUEST, _BOTH, "UID[:GID]", complete=TEXT),
    Option("group_add", ("--group-add",), _P, "Supplementary container gid (repeatable).",
           REQUEST, _BOTH, "GID", multiple=True, complete=TEXT),
    Option("setgroups", ("--setgroups",), _M,
           "Whether setgroups(2) is allowed inside. The default is allow when "
           "sub-gids are mapped (as podman and newgidmap do): the command can "
           "then drop your supplementary groups, so a file that denies one of "
           "them access (e.g. mode 0604, group G) becomes readable. Use deny "
           "to keep them.", REQUEST, _BOTH, "[allow|deny]", CHOICE,
           choices=("allow", "deny"), complete=CHOICE),
    Option("rootless", ("--rootless",), _M,
           "Resolve as an unprivileged user would, even as root.", HOST, (MAP,),
           default=None),
    Option("caller", ("--caller",), _M,
           "Resolve for this caller (login name or uid; GID defaults to the user's "
           "primary gid) instead of you. A caller other than 0 implies --rootless.",
           CLI, (MAP,), "USER[:GID]", complete=USER),
    Option("subuid_file", ("--subuid-file",), _M, "Read FILE instead of /etc/subuid.", HOST,
           (MAP,), "FILE", complete=PATH),
    Option("subgid_file", ("--subgid-file",), _M, "Read FILE instead of /etc/subgid.", HOST,
           (MAP,), "FILE", complete=PATH),
    # The namespaces besides the user namespace, and the command's process
    Option("net", ("--net",), _N, "New network namespace with lo up.", LAUNCH,
           clone="CLONE_NEWNET", verify_reset=True,
           peers=("n", "--unshare-net")),
    Option("pid", ("--pid",), _N, "New PID namespace: a small init is PID 1 and "
           "forwards signals, the command is PID 2.", LAUNCH, clone="CLONE_NEWPID",
           verify_reset=True, peers=("p", "--unshare-pid", "--pid=")),
    Option("die_with_parent", ("--die-with-parent",), _P,
           "Kill the command when idrun's own parent dies.", LAUNCH),
    Option("mount_proc", ("--mount-proc",), _N,
           "Mount a fresh /proc (implies --mount; needs --pid).", LAUNCH, clone="CLONE_NEWNS",
           implies="mount", needs="pid",
           needs_why="a fresh /proc shows the PID namespace it is mounted from",
           verify_reset=True),
    Option("mount", ("--mount",), _N, "New mount namespace, private propagation.", LAUNCH,
           clone="CLONE_NEWNS", verify_reset=True, peers=("m",)),
    Option("uts", ("--uts",), _N, "New UTS namespace.", LAUNCH, clone="CLONE_NEWUTS",
           verify_reset=True, peers=("--unshare-uts", "--uts=")),
    Option("hostname", ("--hostname",), _N, "Hostname inside (implies --uts).", LAUNCH,
           value="NAME", clone="CLONE_NEWUTS", implies="uts", verify_reset=True,
           complete=TEXT),
    Option("ipc", ("--ipc",), _N, "New IPC namespace.", LAUNCH, clone="CLONE_NEWIPC",
           verify_reset=True, peers=("i", "--unshare-ipc", "--ipc=")),
    Option("cgroup", ("--cgroup",), _N, "New cgroup namespace.", LAUNCH,
           clone="CLONE_NEWCGROUP", verify_reset=True,
           peers=("C", "--unshare-cgroup", "--unshare-cgroup-try", "--cgroupns=", "--cgroup=")),
    Option("fork", ("--fork",), _P, "Run the command as a child and wait for it.", LAUNCH,
           verify_reset=True, peers=("f",)),
    Option("no_new_privs", ("--no-new-privs",), _P, "Set no_new_privs before the exec.",
           LAUNCH),
    Option("cap_add", ("--cap-add",), _P,
           "Give the command capability CAP in its namespace (podman's names, "
           "e.g. CAP_NET_ADMIN or net_admin, or ALL; repeatable). Default: all.", CAPS, _BOTH,
           "CAP", multiple=True, complete=TEXT),
    Option("cap_drop", ("--cap-drop",), _P,
           "Take capability CAP (or ALL) from the command: its bounding, "
           "permitted, effective, inheritable and ambient sets (repeatable).", CAPS, _BOTH,
           "CAP|ALL", multiple=True, complete=TEXT),
    Option("preserve_fds", ("--preserve-fds",), _P,
           "Pass file descriptors 3 … 3+N-1 on to the command; they must be open.", LAUNCH,
           value="N", parse=DECIMAL, limit=FD_LIMIT, default=0, api=False, complete=NUMBER),
    # Output; the mounts (Sharing directories)
    Option("dry_run", ("--dry-run",), _O,
           "Print the plan (as 'idrun map') and start nothing.", CLI),
    Option("as_json", ("--json",), _O, "With --dry-run: print JSON.", CLI),
    Option("as_json", ("--json",), _O, "Print one JSON object.", CLI, (MAP,)),
    Option("verify", ("--verify",), _O, "With --dry-run: have the kernel take the maps "
           "in a throwaway namespace (see 'idrun map').", CLI),
    Option("verify", ("--verify",), _O,
           "Also have the kernel take the maps: a throwaway namespace gets them "
           "written as a launch would, they are read back, nothing is run. With "
           "mounts, each id-mapped one is built and dropped, and a line says what "
           "this kernel can do (mount_setattr, id-mapped mounts) and how it builds "
           "each mount.", CLI, (MAP,)),
    Option("json_status_fd", ("--json-status-fd",), _O,
           "Write JSON lines to descriptor FD, as bubblewrap does: the child's pid "
           "and namespace inodes once the command runs, its exit code when it ends. "
           "idrun then stays as the command's parent, as with --fork.", LAUNCH,
           value="FD", parse=DECIMAL, limit=FD_LIMIT, api=False, complete=FD),
    Option("volumes", ("-v", "--volume"), _S,
           "Bind SRC on DST (repeatable). OPTS: ro, rw, "
           "idmap, idmap=uids=A-B-N#…;gids=…, uid=HOST:INSIDE, gid=HOST:INSIDE.", MOUNT, _BOTH,
           "SRC:DST[:OPTS]", multiple=True, complete=VOLUME, words=VOLUME_OPTIONS),
    Option("tmpfs", ("--tmpfs",), _S,
           "Mount a tmpfs on DST, e.g. /scratch:size=64m,mode=1777 (idmap: Linux 6.3+).",
           MOUNT, _BOTH, "DST[:OPTS]", multiple=True, complete=TEXT),
    Option("rootfs", ("--rootfs",), _S,
           "Run in DIR as the root filesystem (minimal /dev, /proc).", MOUNT, _BOTH,
           "DIR[:idmap]", complete=DIR),
    Option("workdir", ("-w", "--workdir"), _S, "Starting directory inside.", MOUNT, _BOTH,
           "DIR", peers=("--chdir", "--wd"), complete=DIR),
    Option("files", ("--files",), _S,
           "With -v or --rootfs (and, for the launcher, --dry-run): read the owners of "
           f"up to N entries under each SRC (default {DEFAULT_FILES}) and show how each "
           "appears inside, and which inside ids can create files there. Write --files=N "
           "when a command follows.", CLI, _BOTH, "[N]", DECIMAL, limit=10**9,
           bare=DEFAULT_FILES, complete=NUMBER),
    Option("verbose", ("--verbose",), _O,
           "Also print the notes 'idrun map' and --dry-run show (a launch otherwise "
           "notes only likely mistakes); say more when something fails.", LAUNCH),
    Option("version", ("-V", "--version"), _O,
           "Print the version, the Python and the native part, and exit.", CLI),
    # The API alone: explicit paths of shadow's helpers (else the system directories)
    Option("newuidmap", (), _P, "The path of the newuidmap to run.", LAUNCH, (), "PATH",
           complete=PATH),
    Option("newgidmap", (), _P, "The path of the newgidmap to run.", LAUNCH, (), "PATH",
           complete=PATH),
    # idrun check: whose rootless use it checks, and how it prints
    Option("user", ("--user",), _OPTIONS, "Check this user instead of yourself.", CLI, (CHECK,),
           "NAME", complete=USER),
    Option("as_json", ("--json",), _OPTIONS, "Print one JSON object.", CLI, (CHECK,)),
    # idrun show [PID]
    Option("ident", ("--translate",), _OPTIONS,
           "Translate ID through each map: inside to outside and back.", CLI, (SHOW,), "ID",
           DECIMAL, limit=MAX_ID, complete=NUMBER),
    Option("as_json", ("--json",), _OPTIONS, "Print one JSON object.", CLI, (SHOW,)),
    Option("leases", ("--leases",), _OPTIONS,
           "List the live --userns=auto leases of your scope (root: /run/idrun; "
           "rootless: $XDG_RUNTIME_DIR/idrun, else ~/.local/state/idrun) and the "
           "processes using their ids; a lease whose launcher is gone is \"held by "
           "processes\" while any of them runs.", CLI, (SHOW,)),
)

# A name several commands use (--json, check's --user) maps to its first row.
BY_DEST: dict[str, Option] = {}
for _o in OPTIONS:
    BY_DEST.setdefault(_o.dest, _o)
# The options that turn on another (--mount-proc: --mount), applied by launch_options.
IMPLYING = tuple(o for o in OPTIONS if o.implies)
# LaunchOptions' fields that are options, in order, with their defaults.
LAUNCH_FIELDS = tuple((o.dest, o.initial) for o in OPTIONS if o.goes_to == LAUNCH)
# What --verify's throwaway namespace resets (it writes the maps, nothing else).
VERIFY_RESET = {o.dest: o.initial for o in OPTIONS if o.verify_reset}


# LaunchOptions' fields: the launch options of the table, then what launch_options
# derives from the rest.
_FIELDS = LAUNCH_FIELDS + (
    # --volume/--tmpfs/--rootfs/--workdir: a mounts.Prepared (detached trees made
    # before any child exists), attached by setup_namespaces.
    ("mounts", None),
    # --cap-add/--cap-drop (and rootless read-only mounts): the command's capability
    # numbers, or None for the default (all in the namespace; python-prctl not loaded).
    ("caps", None),
    ("cap_added", frozenset()),     # the ones --cap-add named
)
# (field, its default, the unshare(2) flag it asks for when not at its default)
_CLONE = tuple((o.dest, o.initial, getattr(syscalls, o.clone)) for o in OPTIONS if o.clone)


class LaunchOptions(record("LaunchOptions", [n for n, _ in _FIELDS],
                           defaults=[d for _, d in _FIELDS])):
    """Everything about a launch that is not the id mapping (that is in the Plan).

    Its fields are the table's launch options (where each is described), defined
    here with the table so that a namespace option is one row and its flag. A
    namedtuple rather than a frozen dataclass: same immutability, a fraction of the
    import cost on the launch path.
    """

    __slots__ = ()

    @property
    def ns_flags(self) -> int:
        """unshare(2) flags for the namespaces other than the user namespace."""
        flags = 0
        for name, default, flag in _CLONE:
            if getattr(self, name) != default:
                flags |= flag
        if self.mounts is not None:
            flags |= syscalls.CLONE_NEWNS
        return flags

    @property
    def wrapper(self) -> bool:
        # Only a waiting parent learns the exit status --json-status-fd reports.
        return self.fork or self.pid or self.json_status_fd is not None

    @property
    def mount_fds(self) -> tuple[int, ...]:
        """The prepared detached trees: every fork on the way to the command keeps them."""
        fds = getattr(self.mounts, "fds", None) or ()
        return tuple(fd for fd in fds if fd is not None)

    @property
    def rootfs(self) -> str | None:
        return getattr(self.mounts, "rootfs", None)


def options_of(command: str) -> tuple[Option, ...]:
    """The options of ``command`` (LAUNCHER, MAP, CHECK or SHOW), in --help order."""
    return tuple(o for o in OPTIONS if command in o.commands)


def options_for(*goes_to: str) -> tuple[str, ...]:
    """The API keywords whose values go to ``goes_to`` (REQUEST, LAUNCH, …)."""
    return tuple(o.dest for o in OPTIONS if o.api and o.goes_to in goes_to)


def api_keywords() -> tuple[str, ...]:
    """The keywords idrun.spawn and idrun.run take besides their own parameters."""
    return tuple(o.dest for o in OPTIONS if o.api and o.goes_to != CLI)


def api_keywords_doc(tail: str = "", width: int = 76) -> str:
    """The API keywords by kind, as a docstring paragraph ending in ``tail``."""
    parts = []
    for title, kinds in (("Mapping options", (REQUEST, HOST)),
                         ("Namespace and process options", (LAUNCH, CAPS)),
                         ("Mounts", (MOUNT,))):
        words = [f"``{o.dest}``" + (f" ({o.help[0].lower()}{o.help[1:-1]})" if not o.names
                                    else f" ({o.long})" if o.long != "--" +
                                    o.dest.replace("_", "-") else "")
                 for o in OPTIONS if o.api and o.goes_to in kinds]
        parts.append(f"{title}: {', '.join(words)}.")
    out, line = [], ""
    for word in " ".join(parts + [tail]).split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(out + [line])


def check_output_flags(*, as_json: bool, verify: bool, dry_run: bool,
                       json_status_fd: int | None = None, files: int | None = None,
                       sources: bool = False) -> None:
    """--json, --verify and --files only change what --dry-run does; --json-status-fd
    reports a launch, which --dry-run does not make. ``sources``: a -v or --rootfs is
    given, whose files --files reads."""
    if files is not None:
        check_files(files, sources)
        if not dry_run:
            raise IdrunError("--files only changes what --dry-run prints (it reads the owners "
                             "under each volume's SRC)",
                             "add --dry-run, or use idrun map … --files")
    if as_json and not dry_run:
        raise IdrunError("--json only changes what --dry-run prints",
                         "add --dry-run, or drop --json")
    if verify and not dry_run:
        raise IdrunError("--verify goes with --dry-run",
                         "idrun --dry-run --verify … checks the mapping on the kernel")
    if json_status_fd is not None and dry_run:
        raise IdrunError("--json-status-fd reports a running command, and --dry-run starts "
                         "none", "drop --json-status-fd, or --dry-run")


def check_files(files: int, sources: bool) -> None:
    """--files[=N]: at least one entry, and a volume or root filesystem to read."""
    if files == 0:
        raise IdrunError("--files=0 reads no entry", "give at least 1, or --files alone for "
                         "the default of 10000")
    if not sources:
        raise IdrunError("--files reads the owners under each -v SRC (or --rootfs DIR), and "
                         "none is given", "add -v SRC:DST[:OPTS], e.g. idrun map -r -v "
                         "~/p:/mnt --files")


def launch_options(**given: object) -> LaunchOptions:
    """LaunchOptions from the table's LAUNCH and CAPS options (keywords as the API's),
    with their implications; refused here rather than by the kernel after namespaces
    exist."""
    values = {o.dest: o.initial for o in OPTIONS if o.goes_to in (LAUNCH, CAPS)}
    for name, value in given.items():
        if name not in values:
            raise TypeError(f"launch_options() got an unexpected keyword argument {name!r}")
        values[name] = value
    for o in OPTIONS:
        if o.needs and o.goes_to == LAUNCH and values[o.dest] != o.initial \
                and not values[o.needs]:
            raise IdrunError(f"{o.long} needs {BY_DEST[o.needs].long}: {o.needs_why}",
                             f"add {BY_DEST[o.needs].long}")
    if values["hostname"] is not None:
        check_hostname(values["hostname"])
    check_preserve_fds(values["preserve_fds"])
    cap_add, cap_drop = values.pop("cap_add"), values.pop("cap_drop")
    caps, added = None, frozenset()
    if cap_add or cap_drop:
        from .system.caps import resolve
        caps, added = resolve(cap_add, cap_drop), resolve(cap_add, ("ALL",))
    if values["json_status_fd"] is not None:
        check_status_fd(values["json_status_fd"])
    for o in IMPLYING:
        if values[o.dest] != o.initial:
            values[o.implies] = True
    return LaunchOptions(**values, caps=caps, cap_added=added or frozenset())


def check_hostname(name: str) -> None:
    if not name:
        raise IdrunError("--hostname is empty", "give a name, e.g. --hostname box")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > HOST_NAME_MAX:
        raise IdrunError(f"--hostname {quoted(name)} is {size} bytes; the kernel takes at most "
                         f"{HOST_NAME_MAX}", "give a shorter name")


def check_preserve_fds(count: int) -> None:
    """Descriptors 3 … 3+count-1 must exist, as podman demands, below the open-files limit."""
    if not count:
        return
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and 3 + count > soft:
        raise IdrunError(f"--preserve-fds {count}: descriptors 3-{2 + count} cannot all be "
                         f"open under the open-files limit of {soft}",
                         "pass the number of descriptors you actually opened")
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise IdrunError(f"--preserve-fds {count}: descriptor {fd} is not open",
                             f"open descriptors 3-{2 + count} before running idrun, or pass "
                             "a smaller number") from None


def check_status_fd(fd: int) -> None:
    """The --json-status-fd descriptor must be open for writing now, not found wanting
    by the wrapper once the command runs."""
    import fcntl
    hint = (f"open it in the shell that starts idrun, e.g. 'idrun --json-status-fd {fd} "
            f"… {fd}>status.jsonl', or pass the number of one that is open for writing")
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        raise IdrunError(f"--json-status-fd {fd}: descriptor {fd} is not open", hint) from None
    if (flags & os.O_ACCMODE) == os.O_RDONLY:     # O_PATH descriptors included
        raise IdrunError(f"--json-status-fd {fd}: descriptor {fd} is open read-only", hint)


def unreachable_terminals(uid_lines, mapped: bool, caller_uid: int | None = None,
                          rootless: bool = False, intermediate=()) -> list[str]:
    """Warnings for a terminal on stdin/stdout the namespace cannot access.

    Inside, a file whose owner is not mapped shows as the overflow uid
    (nobody), so only its 'other' permission bits apply: a terminal of mode
    0620 then cannot be reopened or read by the command. Only a terminal whose
    owner the uid map really leaves out is named, with advice for that owner:
    the caller's own uid can be mapped; another user's terminal (after su or
    runuser) can be mapped only by root, and rootless not at all.
    """
    from .mapping.ranges import IdMap
    if not mapped:
        return []
    idmap = IdMap(uid_lines)
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    for fd, name in ((0, "stdin"), (1, "stdout")):
        try:
            if not os.isatty(fd):
                continue
            st = os.fstat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if idmap.inward(st.st_uid) is None and st.st_mode & 0o006 != 0o006:
            try:
                path = os.ttyname(fd)
            except OSError:
                path = "the terminal"
            owner = st.st_uid
            if owner == caller_uid:
                advice = ("map your own uid (rootless: intermediate 0, e.g. -r or --userns "
                          "keep-id), or redirect stdin/stdout")
            elif rootless and IdMap(intermediate).inward(owner) is None:
                advice = (f"uid {owner} owns it, not you (a terminal kept across su or "
                          "runuser), and no rootless map can include it: log in as yourself "
                          "(ssh, machinectl shell), or redirect stdin/stdout")
            else:
                at = "@" if rootless else ""
                advice = (f"map host uid {owner} too (e.g. --uidmap {owner}:{at}{owner}:1 "
                          "besides the rest), or redirect stdin/stdout")
            out.append(f"{name} is {path}, owned by uid {owner}, which the uid map does "
                       f"not map: inside it shows as nobody with mode "
                       f"{st.st_mode & 0o777:o}, and the command may fail to use it "
                       f"({advice})")
    return out
