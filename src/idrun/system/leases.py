"""The lease registry of ``--userns=auto``: which id blocks live idrun namespaces hold.

No daemon. One directory per scope (root: ``/run/idrun``; rootless:
``$XDG_RUNTIME_DIR/idrun``, else the user's own state directory,
``$XDG_STATE_HOME/idrun`` or ``~/.local/state/idrun``; never a directory others
can write, where another user could create the registry first;
``$IDRUN_LEASE_DIR`` overrides all), one small text file per allocation, all
changes made while holding ``flock`` on the directory's ``.lock``, every file
reached through the checked directory's descriptor. A lease names its block and
its owner: pid, start time (field 22 of /proc/PID/stat) and boot id. The owner is
the process that holds the namespace (the CLI launcher, which becomes the
command or waits for it; an API-spawned child).

A lease lives as long as its ids: while its owner runs, and after that while any
process uses any id of its block (real, effective, saved or filesystem uid or
gid: a background job the command left behind runs on in the namespace). Only
then — or when it is from an earlier boot — is it removed by the next
allocation; so is a file that does not parse. One scan of /proc per allocation
serves every lease.
"""
from __future__ import annotations

import os
import stat
from ..hints import NamedTuple

from ..errors import RegistryError
from ..mapping import autoblock
from ..mapping.plan import AutoBlock, Host, Request, is_auto
from ..mapping.ranges import ID_LIMIT, KINDS, in_spans
from ..mapping.syntax import decimal
from . import procfs

ENV_DIR = "IDRUN_LEASE_DIR"
ROOT_DIR = "/run/idrun"
MAGIC = "idrun-lease 1"
SUFFIX = ".lease"
LOCK = ".lock"
_MAX_FILE = 4096
_BOOT_ID = "kernel/random/boot_id"


class Owner(NamedTuple):
    pid: int
    start: int
    boot: str


class Lease(NamedTuple):
    path: str
    owner: Owner
    uid: tuple[tuple[int, int], ...]      # (start, count) host ids
    gid: tuple[tuple[int, int], ...]

    def ranges(self, kind: str) -> tuple[tuple[int, int], ...]:
        return self.uid if kind == "uid" else self.gid

    def text(self) -> str:
        o = self.owner
        return (f"{MAGIC}\nowner {o.pid} {o.start} {o.boot}\n"
                + "".join(f"{k} " + " ".join(f"{s} {c}" for s, c in self.ranges(k)) + "\n"
                          for k in KINDS))


def owner_of(pid: int) -> Owner | None:
    start = procfs.start_time(pid)
    if start is None:
        return None
    return Owner(pid, start, _boot_id())


def _boot_id() -> str:
    # Without one (no /proc/sys), a lease still names a pid and start time; a crash
    # is then only noticed through them.
    return procfs.sysctl(_BOOT_ID) or "unknown"


def _alive(owner: Owner, boot: str) -> bool:
    return owner.boot == boot and procfs.start_time(owner.pid) == owner.start


def _users(lease: Lease, procs: list[procfs.ProcIds]) -> list[int]:
    """The pids of the processes using any id of the lease's block."""
    return [p.pid for p in procs
            if any(in_spans(i, lease.uid) for i in set(p.uids))
            or any(in_spans(i, lease.gid) for i in set(p.gids))]


def parse_lease(text: str, path: str) -> Lease | None:
    """A lease file's content, or None when it is not one idrun wrote."""
    lines = text.split("\n")
    if len(lines) != 5 or lines[0] != MAGIC or lines[4] != "":
        return None
    try:
        tag, pid, start, boot = lines[1].split(" ")
        if tag != "owner" or not boot or int(pid) < 1 or int(start) < 0:
            return None
        blocks = {}
        for kind, line in zip(KINDS, lines[2:4]):
            fields = line.split(" ")
            nums = [decimal(x) for x in fields[1:]]
            if fields[0] != kind or not nums or len(nums) % 2 or any(
                    n is None or n > ID_LIMIT for n in nums) or not all(nums[1::2]):
                return None
            blocks[kind] = tuple(zip(nums[0::2], nums[1::2]))
        return Lease(path, Owner(int(pid), int(start), boot), blocks["uid"], blocks["gid"])
    except ValueError:
        return None


# --- the directory ---------------------------------------------------------------

def registry_dir(rootless: bool) -> str:
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    if not rootless:
        return ROOT_DIR
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        try:
            st = os.stat(xdg)
            # Only a runtime dir that is really ours and private (what logind makes);
            # anything else falls back to the state directory in our home.
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and \
                    not st.st_mode & 0o077:
                return os.path.join(xdg, "idrun")
        except OSError:
            pass
    state = os.environ.get("XDG_STATE_HOME", "")
    if not state.startswith("/"):
        import pwd
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = os.environ.get("HOME", "")
        state = os.path.join(home or "/nonexistent", ".local", "state")
    return os.path.join(state, "idrun")


def own_dir(create: bool) -> int | None:
    """An fd of this process's registry directory, checked as for leases; None when it
    does not exist (and ``create`` is False). Other small state (newidmap's answer
    cache) lives there too: a directory only the caller can change."""
    return _open_dir(registry_dir(_rootless()), _rootless(), create)


def _open_dir(path: str, rootless: bool, create: bool) -> int | None:
    """An fd of the registry directory after checking that only we can change it."""
    hint = f"remove {path} (idrun recreates it) or point {ENV_DIR} at a private directory"
    if create:
        try:
            if rootless and not os.environ.get(ENV_DIR):
                # ~/.local/state may not exist yet; made as the XDG spec asks (0700).
                os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            os.mkdir(path, 0o700 if rootless else 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise RegistryError(f"cannot create the --userns=auto lease registry {path}: "
                                f"{e.strerror}", hint) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RegistryError(f"the --userns=auto lease registry {path} is not a usable "
                            f"directory ({e.strerror}; a symlink is refused)", hint) from None
    st = os.fstat(fd)
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    elif st.st_mode & (0o077 if rootless else 0o022):
        problem = (f"has mode {stat.S_IMODE(st.st_mode):04o}; others could forge or delete "
                   f"leases (want {'0700' if rootless else '0755'})")
    if problem:
        os.close(fd)
        raise RegistryError(f"the --userns=auto lease registry {path} {problem}", hint)
    return fd


def _read_leases(dir_fd: int, path: str, reclaim: bool, procs: list[procfs.ProcIds]
                 ) -> tuple[list[Lease], list[str]]:
    """Live leases, and what was (or would be) reclaimed, one note each. ``procs``: the
    one scan of /proc, whose ids keep a lease of a gone owner alive."""
    boot = _boot_id()
    live: list[Lease] = []
    notes: list[str] = []
    for name in sorted(os.listdir(dir_fd)):
        if name.startswith(".") and name.endswith(".tmp") and SUFFIX + "." in name:
            # Left by a writer that died between write and rename (hand_over writes
            # without the lock, so only a dead writer's file goes).
            writer = name.rsplit(".", 2)[-2]
            if reclaim and writer.isdigit() and procfs.start_time(writer) is None:
                _unlink(dir_fd, name)
            continue
        if not name.endswith(SUFFIX):
            continue    # only idrun's own names: IDRUN_LEASE_DIR may hold other files
        full = os.path.join(path, name)
        lease = None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    data = os.read(fd, _MAX_FILE + 1)
                    if len(data) <= _MAX_FILE:
                        lease = parse_lease(data.decode("ascii", "replace"), full)
            finally:
                os.close(fd)
        except OSError:
            pass
        if lease is None:
            notes.append(f"{'removed' if reclaim else 'ignoring'} {full}: not a lease file "
                         "idrun wrote")
        elif not _alive(lease.owner, boot) and (lease.owner.boot != boot
                                                 or not _users(lease, procs)):
            notes.append(f"{'reclaimed' if reclaim else 'reclaimable'}: the lease of "
                         f"{_blocks(lease.uid)} (owner pid {lease.owner.pid} "
                         + ("is gone" if lease.owner.boot == boot else "from an earlier boot")
                         + ")")
            lease = None
        else:
            live.append(lease)
            continue
        if reclaim:
            _unlink(dir_fd, name)
    return live, notes


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        pass  # a directory in the registry holds nothing; leave it be
    except OSError as e:
        raise RegistryError(f"cannot remove the stale lease {name}: {e.strerror}",
                            "check the registry directory's permissions") from None


def _write(dir_fd: int, lease: Lease) -> None:
    """Replace the lease's file in one rename, so a reader sees the old or the new text;
    both names relative to the registry's descriptor."""
    name = os.path.basename(lease.path)
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dir_fd)
        try:
            os.write(fd, lease.text().encode())
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise RegistryError(f"cannot write the lease {lease.path}: {e.strerror}",
                            "check the registry directory's permissions and free space"
                            ) from None


def _blocks(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{s}-{s + c - 1}" for s, c in ranges)


def _busy(procs: list[procfs.ProcIds]) -> dict[str, list[tuple[int, int]]]:
    """Ids running processes use, as merged [start, end) spans per kind."""
    out: dict[str, list[tuple[int, int]]] = {}
    for kind in KINDS:
        ids = sorted({i for p in procs for i in (p.uids if kind == "uid" else p.gids)})
        spans: list[tuple[int, int]] = []
        for i in ids:
            if spans and spans[-1][1] == i:
                spans[-1] = (spans[-1][0], i + 1)
            else:
                spans.append((i, i + 1))
        out[kind] = spans
    return out


# --- what the launch paths call ---------------------------------------------------

def reserve_auto_block(request: Request, host: Host, hold: bool) -> tuple[Host, Lease | None]:
    """Pick the block for ``--userns=auto`` and hand it to ``resolve`` through the host.

    ``hold``: write a lease owned by this process (a launch). Without it (``idrun
    map``, ``--dry-run``) nothing is written or removed: the answer is what a launch
    would get now. Other requests pass through untouched.
    """
    if not is_auto(request.userns):
        return host, None
    opts = autoblock.parse_auto(request.userns or "auto")
    pools = {kind: autoblock.pool(host, kind) for kind in KINDS}
    path = registry_dir(host.rootless)
    dir_fd = _open_dir(path, host.rootless, create=hold)
    lock_fd = None
    try:
        if dir_fd is not None and hold:
            import fcntl
            try:
                lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  0o600, dir_fd=dir_fd)
            except OSError as e:
                raise RegistryError(f"cannot open {os.path.join(path, LOCK)}: {e.strerror}",
                                    f"remove {path} (idrun recreates it)") from None
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        procs = procfs.all_proc_ids()       # once per launch, for every lease
        live, notes = (_read_leases(dir_fd, path, reclaim=hold, procs=procs)
                       if dir_fd is not None else ([], []))
        busy = _busy(procs)
        picks = {}
        for kind in KINDS:
            spans, source = pools[kind]
            held = [(s, s + c) for lease in live for s, c in lease.ranges(kind)]
            picks[kind] = autoblock.pick(kind, spans, source, opts.size, held, busy[kind],
                                         autoblock.excluded(opts, host, kind))
        lease = None
        if hold:
            me = owner_of(os.getpid())
            if me is None:
                raise RegistryError("cannot read /proc/self/stat to name the lease's owner",
                                    "mount /proc")
            first = picks["uid"].ranges[0][0]
            lease = Lease(os.path.join(path, f"uid-{first}{SUFFIX}"), me,
                          picks["uid"].ranges, picks["gid"].ranges)
            _write(dir_fd, lease)  # type: ignore[arg-type]
    finally:
        if lock_fd is not None:
            os.close(lock_fd)           # drops the flock
        if dir_fd is not None:
            os.close(dir_fd)
    notes.append(f"auto: {autoblock.size_reason(opts)}")
    for kind in KINDS:
        notes.append(f"auto: {kind}s {_blocks(picks[kind].ranges)}: {picks[kind].reason}")
    notes.append(f"auto: lease {lease.path}, owned by pid {lease.owner.pid}" if lease else
                 f"auto: nothing reserved (registry {path}); a launch now gets this block "
                 "unless another takes it first")
    block = AutoBlock(picks["uid"].ranges, picks["gid"].ranges, tuple(notes),
                      tuple(p.warning for p in picks.values() if p.warning))
    return host._replace(auto_block=block), lease


def hand_over(lease: Lease | None, pid: int) -> Lease | None:
    """Re-point ``lease`` at ``pid``, the process that now holds the namespace.

    If ``pid`` cannot be named (already reaped), the lease stays with the caller:
    holding ids too long is safe, handing them out twice is not.
    """
    if lease is None:
        return None
    owner = owner_of(pid)
    if owner is None:
        return lease
    moved = lease._replace(owner=owner)
    try:
        dir_fd = _open_dir(os.path.dirname(lease.path), _rootless(), create=False)
        if dir_fd is None:
            return lease
        try:
            _write(dir_fd, moved)
        finally:
            os.close(dir_fd)
    except RegistryError:
        return lease    # the child runs already: keep the caller as the owner
    return moved


def _rootless() -> bool:
    # The registry's mode rule: 0700 for a user's, 0755 for root's.
    return os.geteuid() != 0


def release(lease: Lease | None) -> None:
    """Give a lease back early (the launch failed). Only its owner may: a forked child
    unwinding through the launcher's frames must not drop the parent's lease."""
    if lease is None or lease.owner.pid != os.getpid():
        return
    try:
        dir_fd = _open_dir(os.path.dirname(lease.path), _rootless(), create=False)
    except RegistryError:
        return
    if dir_fd is None:
        return
    try:
        os.unlink(os.path.basename(lease.path), dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --- idrun show --leases -----------------------------------------------------------

def live_leases(rootless: bool) -> dict:
    """The registry's live leases and the processes using their ids (read-only)."""
    path = registry_dir(rootless)
    dir_fd = _open_dir(path, rootless, create=False)
    if dir_fd is None:
        return {"registry": path, "leases": [], "stale": []}
    procs = procfs.all_proc_ids()
    try:
        live, notes = _read_leases(dir_fd, path, reclaim=False, procs=procs)
    finally:
        os.close(dir_fd)
    boot = _boot_id()
    out = []
    for lease in live:
        users = _users(lease, procs)
        owner_alive = _alive(lease.owner, boot)
        comm = procfs.comm(lease.owner.pid) if owner_alive else "?"
        out.append({"file": lease.path, "pid": lease.owner.pid,
                    "start_time": lease.owner.start, "comm": comm,
                    "owner_alive": owner_alive,
                    "uid": [list(r) for r in lease.uid], "gid": [list(r) for r in lease.gid],
                    "processes": users})
    return {"registry": path, "leases": out, "stale": notes}


def leases_text(info: dict) -> str:
    out = [f"registry: {info['registry']}"]
    if not info["leases"]:
        out.append("no live --userns=auto leases")
    for item in info["leases"]:
        uid = _blocks(tuple(tuple(r) for r in item["uid"]))  # type: ignore[arg-type]
        gid = _blocks(tuple(tuple(r) for r in item["gid"]))  # type: ignore[arg-type]
        procs = " ".join(str(p) for p in item["processes"][:20]) or "none"
        more = " …" if len(item["processes"]) > 20 else ""
        if item.get("owner_alive", True):
            out.append(f"pid {item['pid']} ({item['comm']}): uids {uid}; gids {gid}; "
                       f"processes using them: {procs}{more}")
        else:
            out.append(f"held by processes {procs}{more} (owner pid {item['pid']} is gone): "
                       f"uids {uid}; gids {gid}")
    out += [f"stale: {n}" for n in info["stale"]]
    return "\n".join(out)
