"""The plan: everything the launcher needs, decided before anything starts.

The pure core (``resolve``) produces a ``Plan`` from a ``Request`` (what the user
typed) and a ``Host`` (facts the shell gathered: caller ids, sub-id ranges,
parent maps). The launcher only carries a plan out; it decides nothing.
"""

from ..hints import NamedTuple

from .ranges import ID_LIMIT, Line

SUBID_FILE = {"uid": "/etc/subuid", "gid": "/etc/subgid"}   # shadow's sub-id files
HELPERS = {"uid": "newuidmap", "gid": "newgidmap"}          # shadow's setuid map writers
AUTO_OWNER = "containers"   # whose sub-ids root's --userns=auto takes (podman's
                            # root-auto-userns-user); IDRUN_AUTO_USER names another

# How a kind's map gets written.
WRITER_DIRECT = "direct"    # privileged helper in the parent namespace writes /proc/PID/*_map
WRITER_HELPER = "helper"    # rootless: shadow's newuidmap/newgidmap
WRITER_SELF = "self"        # rootless, own id only: the new namespace writes its own map
WRITER_NONE = "none"        # privileged, empty kind: the map file is not written


class Request(NamedTuple):
    """What the user asked for, as typed (strings are parsed by the core)."""

    uidmap: tuple[str, ...] = ()
    gidmap: tuple[str, ...] = ()
    userns: str | None = None
    map_root_user: bool = False
    map_current_user: bool = False
    map_auto: bool = False
    subuidname: str | None = None
    subgidname: str | None = None
    user: str | None = None              # --user UID[:GID], container ids
    group_add: tuple[str, ...] = ()
    setgroups: str | None = None         # "allow" | "deny" | None (decide)


def is_auto(userns: str | None) -> bool:
    """Whether a --userns value is podman's ``auto[:OPTIONS]`` mode."""
    return bool(userns) and userns.partition(":")[0] == "auto"  # type: ignore[union-attr]


class SubidRange(NamedTuple):
    """One delegated range from /etc/subuid or /etc/subgid (host ids).

    ``owner`` is filled only where lines of several owners are read together
    (``subids.all_entries``, for diagnosis); a ``SubidSet`` holds one owner's.
    """

    start: int
    count: int
    lineno: int          # 1-based line in ``source``; 0 when it came from NSS
    owner: str = ""

    @property
    def end(self) -> int:
        return self.start + self.count


class SubidSet(NamedTuple):
    """One owner's ranges in one sub-id source, in source order."""

    source: str                          # a path, or "getsubids (nss module X)"
    ranges: tuple[SubidRange, ...] = ()
    present: bool = True                 # False: the file does not exist
    keys: tuple[str, ...] = ()           # owner keys that were tried (login name, uid)
    warnings: tuple[str, ...] = ()
    # Without ranges: the lowest free block of 65536 ids in the file (as useradd
    # would pick it) and the login name, so hints can give a command that works.
    free: tuple[int, int] | None = None
    owner: str | None = None

    def add_hint(self, kind: str) -> str:
        """The usermod command that delegates a free block to the owner."""
        block = f"{self.free[0]}-{self.free[1]}" if self.free else "FIRST-LAST"
        who = self.owner or (self.keys[0] if self.keys else "USER")
        return f"usermod --add-sub{kind}s {block} {who}"


class AutoBlock(NamedTuple):
    """The ids ``--userns=auto`` was given by the shell's lease registry (host ids)."""

    uid: tuple[tuple[int, int], ...]     # (start, count), ascending
    gid: tuple[tuple[int, int], ...]
    notes: tuple[str, ...] = ()          # which block and why, for --dry-run / idrun map
    warnings: tuple[str, ...] = ()

    def ranges(self, kind: str) -> tuple[tuple[int, int], ...]:
        return self.uid if kind == "uid" else self.gid


class Host(NamedTuple):
    """Facts about the caller and the system, gathered by the shell."""

    rootless: bool
    uid: int
    gid: int
    login: str | None = None           # looked up only when the caller's sub-ids are read
    subuid: SubidSet = SubidSet(SUBID_FILE["uid"], present=False)
    subgid: SubidSet = SubidSet(SUBID_FILE["gid"], present=False)
    # Maps of the namespace idrun runs in (identity in the initial namespace).
    parent_uid_map: tuple[Line, ...] = (Line(0, 0, ID_LIMIT),)
    parent_gid_map: tuple[Line, ...] = (Line(0, 0, ID_LIMIT),)
    # /proc/self/setgroups of the namespace idrun runs in: "deny" is inherited
    # by every namespace created below it.
    parent_setgroups: str = "allow"
    # Extra owners' ranges (--subuidname/--subgidname, user "containers" for auto).
    named_subuid: dict[str, SubidSet] | None = None
    named_subgid: dict[str, SubidSet] | None = None
    # --userns=auto: the block the lease registry chose; None: the pure default
    # (lowest ids of the pool, no registry consulted).
    auto_block: AutoBlock | None = None
    # Whose sub-ids form root's --userns=auto pool (podman: root-auto-userns-user).
    auto_owner: str = AUTO_OWNER
    # Rootless: (kind, id, name) of the host accounts (passwd/group entries) among
    # the single from ids typed, which are then likely meant as host ids.
    accounts: tuple[tuple[str, int, str], ...] = ()

    def named(self, kind: str) -> dict[str, SubidSet]:
        return (self.named_subuid if kind == "uid" else self.named_subgid) or {}


class KindPlan(NamedTuple):
    """The resolved map of one kind (uid or gid)."""

    kind: str                            # "uid" | "gid"
    container: tuple[Line, ...]          # canonical: container id → from id
    lines: tuple[Line, ...]              # exactly what is written: inside → host id
    intermediate: tuple[Line, ...] = ()  # rootless: intermediate id → host id
    writer: str = WRITER_DIRECT

    @property
    def text(self) -> str:
        from .ranges import render
        return render(self.lines)

    def helper_args(self) -> list[str]:
        """The triples as newuidmap/newgidmap take them (after the target)."""
        args: list[str] = []
        for ln in self.lines:
            args += (str(ln.inside), str(ln.outside), str(ln.count))
        return args


class Plan(NamedTuple):
    rootless: bool
    userns: bool                         # False: --userns=host as root, no namespace
    caller_uid: int
    caller_gid: int
    uid: KindPlan
    gid: KindPlan
    setgroups: str                       # "allow" | "deny"
    user_uid: int | None                 # container ids to switch to; None: kind empty
    user_gid: int | None
    groups: tuple[int, ...] = ()         # supplementary container gids (setgroups allow)
    # Kinds with a map but no id to switch to (neither 0 nor the caller mapped, no
    # --user): fine for `idrun map`, refused by a launch.
    unswitchable: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()          # informational lines for map/--dry-run/--verbose
    # The notes about a likely mistake (a subset of ``notes``), said on a launch too.
    launch_notes: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        return "rootless" if self.rootless else "rootful"

    def require_target(self) -> None:
        """Refuse a launch that would not know which ids to run as."""
        if self.unswitchable:
            from ..errors import MapValidationError
            kind = self.unswitchable[0]
            raise MapValidationError(
                f"container {kind} 0 is not mapped and neither is your own {kind}, so idrun "
                f"does not know which {kind} to run as",
                f"map container {kind} 0, or pick a mapped id with --user UID:GID")

    def kind(self, name: str) -> KindPlan:
        return self.uid if name == "uid" else self.gid
