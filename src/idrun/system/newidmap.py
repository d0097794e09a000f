"""shadow's newuidmap/newgidmap: finding them safely, checking them, running them.

These setuid helpers decide which host ids a rootless user may own, so idrun
only ever runs them by absolute path from the system directories (never through
$PATH), or from a path the user names explicitly. They run with a minimal
environment, stdin from /dev/null and their output captured, through
posix_spawn: the subprocess module is too heavy for the launch path.
"""
from __future__ import annotations

import os
import stat
from ..hints import NamedTuple

from ..errors import LaunchError
from ..mapping.plan import HELPERS
from .hostinfo import CAP_SETGID, CAP_SETUID
from .syscalls import how_ended

SYSTEM_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
OVERRIDE_ENV = {"uid": "IDRUN_NEWUIDMAP", "gid": "IDRUN_NEWGIDMAP"}
HELPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

CAP_SETFCAP = 31
NEEDED_CAP = {"uid": CAP_SETUID, "gid": CAP_SETGID}
_CAP_NAMES = {CAP_SETGID: "cap_setgid", CAP_SETUID: "cap_setuid", CAP_SETFCAP: "cap_setfcap"}
_VFS_CAP_FLAGS_EFFECTIVE = 0x000001
_ST_NOSUID = 2


class FileCaps(NamedTuple):
    """The ``security.capability`` xattr of a file, decoded."""

    permitted: int
    inheritable: int
    effective: bool
    rootid: int | None = None          # v3 (namespaced) caps apply where this uid is 0

    def has(self, cap: int) -> bool:
        return bool(self.permitted >> cap & 1) and self.effective

    def describe(self) -> str:
        names = [n for c, n in sorted(_CAP_NAMES.items()) if self.permitted >> c & 1]
        text = ",".join(names) or f"0x{self.permitted:x}"
        text += "+ep" if self.effective else "+p"
        if self.rootid is not None:
            text += f" (namespaced, rootid {self.rootid})"
        return text


def parse_file_caps(raw: bytes) -> FileCaps | None:
    """Decode struct vfs_cap_data (revisions 2 and 3; little-endian u32 fields)."""
    if len(raw) < 12:
        return None
    u32 = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw) - len(raw) % 4, 4)]
    magic = u32[0]
    permitted = u32[1]
    inheritable = u32[2]
    if len(u32) >= 5:               # revision 2/3: a second word for caps 32-63
        permitted |= u32[3] << 32
        inheritable |= u32[4] << 32
    rootid = u32[5] if len(u32) >= 6 else None
    return FileCaps(permitted, inheritable, bool(magic & _VFS_CAP_FLAGS_EFFECTIVE), rootid)


class Helper(NamedTuple):
    """One helper binary as found on disk, with what makes it privileged."""

    kind: str                 # "uid" | "gid"
    path: str
    mode: int
    owner: int
    group: int
    caps: FileCaps | None
    nosuid_mount: bool

    @property
    def tool(self) -> str:
        return HELPERS[self.kind]

    @property
    def setuid_root(self) -> bool:
        return self.owner == 0 and bool(self.mode & stat.S_ISUID)

    @property
    def has_caps(self) -> bool:
        return self.caps is not None and self.caps.has(NEEDED_CAP[self.kind])

    @property
    def privileged(self) -> bool:
        return (self.setuid_root or self.has_caps) and not self.nosuid_mount

    def describe(self) -> str:
        parts = [f"mode {stat.filemode(self.mode)} owner {self.owner}:{self.group}"]
        if self.caps is not None:
            parts.append(f"file caps {self.caps.describe()}")
        if self.nosuid_mount:
            parts.append("on a nosuid mount")
        return ", ".join(parts)


def locate(kind: str, override: str | None = None) -> str:
    """Absolute path of newuidmap (kind "uid") or newgidmap ("gid").

    An explicit ``override`` (option) wins, then ``IDRUN_NEWUIDMAP`` /
    ``IDRUN_NEWGIDMAP``; both must be absolute. Otherwise only the system
    directories are searched: a user-controlled $PATH must never choose which
    setuid program runs with the user's map arguments.
    """
    tool = HELPERS[kind]
    explicit = override or os.environ.get(OVERRIDE_ENV[kind]) or None
    if explicit is not None:
        source = "option" if override else OVERRIDE_ENV[kind]
        if not os.path.isabs(explicit):
            raise LaunchError(f"{tool} path {explicit!r} from {source} is not absolute",
                              hint="give the full path, e.g. /usr/bin/" + tool)
        if not os.path.isfile(explicit):
            raise LaunchError(f"{tool} not found at {explicit} (from {source})",
                              hint=f"fix or unset {source}")
        return explicit
    for d in SYSTEM_DIRS:
        path = f"{d}/{tool}"
        if os.path.isfile(path):
            return path
    raise LaunchError(f"{tool} not found in {', '.join(SYSTEM_DIRS)}; rootless mapping of "
                      "sub-ids needs it",
                      hint="install the uidmap package (apt-get install uidmap), or map only "
                           "your own id (--map-root-user)")


def inspect(kind: str, path: str) -> Helper:
    st = os.stat(path)
    caps = None
    try:
        caps = parse_file_caps(os.getxattr(path, "security.capability"))
    except OSError:
        pass
    try:
        nosuid = bool(os.statvfs(path).f_flag & _ST_NOSUID)
    except OSError:
        nosuid = False
    return Helper(kind, path, st.st_mode, st.st_uid, st.st_gid, caps, nosuid)


def find(kind: str, override: str | None = None) -> Helper:
    """Locate and check a helper; raises LaunchError when it cannot work."""
    helper = inspect(kind, locate(kind, override))
    if not helper.privileged:
        cap = _CAP_NAMES[NEEDED_CAP[kind]]
        why = ("it is on a nosuid mount, so its setuid bit and file caps are ignored"
               if helper.nosuid_mount else f"it is neither setuid root nor has {cap}")
        env = OVERRIDE_ENV[kind]
        if override or os.environ.get(env):
            # The override is the first suspect: name it as the source.
            source = "the option" if override else env
            raise LaunchError(f"{helper.path} (chosen by {source}) cannot map sub-ids: {why} "
                              f"({helper.describe()})",
                              hint=f"unset {source} to use the system {HELPERS[kind]}, or fix "
                                   f"{helper.path}" if not override else
                                   f"give a setuid-root {HELPERS[kind]}")
        raise LaunchError(f"{helper.path} cannot map sub-ids: {why} ({helper.describe()})",
                          hint=f"reinstall uidmap, or 'chmod u+s {helper.path}' / "
                               f"'setcap {cap}+ep {helper.path}' as root")
    return helper


def spawn_capture(path: str, argv: list[str], keep_fd: int | None = None,
                  keep_as: int = 3) -> tuple[int, str]:
    """Run ``path`` and return (wait status, combined stdout+stderr).

    stdin is /dev/null, the environment minimal, and the only descriptor passed
    on besides 0-2 is ``keep_fd`` (as number ``keep_as``). Inheritable
    descriptors of the caller are closed in the child: the caller may be a user
    program (the API) whose descriptors idrun must not touch in its own process.
    """
    return finish_capture(*start_capture(path, argv, keep_fd, keep_as))


def start_capture(path: str, argv: list[str], keep_fd: int | None = None,
                  keep_as: int = 3) -> tuple[int, int]:
    """``spawn_capture``'s start: (pid, read end of its output), both the caller's to
    end with ``finish_capture`` (or ``abandon``), so two helpers can run at once."""
    from .syscalls import SignalsBlocked
    r, w = os.pipe()
    pid = None
    try:
        actions: list[tuple] = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1),
            (os.POSIX_SPAWN_DUP2, w, 2),
        ]
        if keep_fd is not None:
            # dup2 onto itself clears FD_CLOEXEC in glibc's posix_spawn.
            actions.append((os.POSIX_SPAWN_DUP2, keep_fd, keep_as))
        skip = {r, w, keep_as if keep_fd is not None else -1}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd < 3 or fd in skip:
                continue
            try:
                if os.get_inheritable(fd):
                    actions.append((os.POSIX_SPAWN_CLOSE, fd))
            except OSError:
                pass        # the listing's own descriptor, already closed
        with SignalsBlocked():  # no handler between the spawn and the record of it
            pid = os.posix_spawn(path, argv, HELPER_ENV, file_actions=actions)
            os.close(w)
            w = -1
    except BaseException:
        # A handler that raised on the way out of the block still finds the helper.
        if pid is not None:
            abandon(pid, r)
        else:
            os.close(r)
        if w != -1:
            os.close(w)
        raise
    return pid, r


def finish_capture(pid: int, r: int) -> tuple[int, str]:
    """Read a started helper's output to EOF and reap it: (wait status, output)."""
    from .syscalls import read_all
    try:
        output = read_all(r)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return status, output.decode("utf-8", "replace")


def abandon(pid: int, r: int) -> None:
    """End a started helper that will not be finished: kill (it is ours: its real uid
    is the caller's), reap, close."""
    from .syscalls import SignalsBlocked
    with SignalsBlocked():
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:       # reaped by the caller's own SIGCHLD handling
            pass
        os.close(r)


_fd_support: dict[str, bool] = {}


def _fd_target_in_binary(path: str) -> bool | None:
    """What the helper's own bytes say about ``fd:N`` targets, or None when unsure.

    The usage text that announces ``fd:`` is a string in the binary: a binary
    without b"fd:" cannot print it (shadow 4.13 has none), and shadow 4.14+
    spells it ``fd:<pidfd>``. Reading 60 KB costs far less than running the
    setuid helper (about 0.8 ms each, on every rootless launch).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 22)
    except OSError:
        return None  # some distributions ship it execute-only
    if b"fd:" not in data:
        return False
    return True if b"fd:<pid" in data else None


# The answer of a run, kept across launches (a file in the caller's registry
# directory): one line per helper, "PATH DEV INO MTIME_NS SIZE 0|1".
CACHE_NAME = "helper-fd-target"
_CACHE_MAX = 4096


def _cache_dir() -> int | None:
    """The caller's own lease registry directory, checked as for leases (owned by the
    caller, nobody else can write), or None: no cache then, only a run."""
    from .leases import own_dir  # only when the binary leaves it open
    from ..errors import RegistryError
    try:
        return own_dir(create=True)
    except RegistryError:
        return None


def _cache_key(path: str, st: os.stat_result) -> str:
    return f"{path} {st.st_dev} {st.st_ino} {st.st_mtime_ns} {st.st_size}"


def _cached(dir_fd: int, key: str) -> bool | None:
    """The cached answer for exactly this binary, or None (no cache, or one in doubt).

    Only a regular file the caller owns that nobody else can write, read through
    the checked directory without following a symlink; any other line, a second
    line for the key or an answer that is not 0 or 1 is doubt, and doubt runs the
    helper again. A binary replaced in place changes the key (inode, mtime, size).
    """
    try:
        fd = os.open(CACHE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        data = os.read(fd, _CACHE_MAX + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > _CACHE_MAX:
        return None
    answers = [line[len(key) + 1:] for line in data.decode("utf-8", "replace").split("\n")
               if line.startswith(key + " ")]
    if len(answers) != 1 or answers[0] not in ("0", "1"):
        return None
    return answers[0] == "1"


def _remember(dir_fd: int, key: str, answer: bool) -> None:
    """Write the answer (replacing this path's older lines) in one rename; best effort."""
    path = key.rsplit(" ", 4)[0]
    keep: list[str] = []
    try:
        fd = os.open(CACHE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                old = os.read(fd, _CACHE_MAX).decode("utf-8", "replace").split("\n")
                keep = [ln for ln in old if ln.count(" ") == 5 and ln.startswith("/")
                        and ln.rsplit(" ", 5)[0] != path][:16]
        finally:
            os.close(fd)
    except OSError:
        pass
    text = "".join(ln + "\n" for ln in keep) + f"{key} {int(answer)}\n"
    tmp = f".{CACHE_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dir_fd)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.rename(tmp, CACHE_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass


def _run_for_usage(path: str) -> bool:
    try:
        _, out = spawn_capture(path, [os.path.basename(path)])
    except OSError:
        out = ""
    return "fd:" in out


def supports_fd_target(path: str) -> bool:
    """Whether this helper accepts ``fd:N`` as its target (shadow >= 4.14).

    Its usage text (printed when run without arguments) mentions ``fd:``. The
    binary is read first; only when its bytes leave it open (or it cannot be
    read) is it run, about 0.8 ms, and that answer is kept in the caller's
    registry directory keyed by the binary's identity, so the next launches
    read one small file instead. Cached in the process too, for API loops.
    """
    st = os.stat(path)
    key = _cache_key(path, st)
    known = _fd_support.get(key)
    if known is None:
        known = _fd_target_in_binary(path)
    if known is None:
        dir_fd = _cache_dir()
        try:
            known = _cached(dir_fd, key) if dir_fd is not None else None
            if known is None:
                known = _run_for_usage(path)
                if dir_fd is not None:
                    _remember(dir_fd, key, known)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    _fd_support[key] = known
    return known


def _cause(helper: Helper, output: str, nnp: bool, nested: bool) -> tuple[str, str]:
    """(likely cause, hint) for a failed helper run, from its message and the context."""
    kind = helper.kind
    sub = f"/etc/sub{kind}"
    low = output.lower()
    if "could not set caps" in low or "setuid" in low and "fail" in low:
        return (f"{helper.path} has no privilege to act ({helper.describe()})",
                f"reinstall uidmap or 'setcap {_CAP_NAMES[NEEDED_CAP[kind]]}+ep {helper.path}'")
    if "not allowed" in low:
        return (f"the host ids are not delegated to you in {sub}",
                f"check 'idrun check' and ask an admin for 'usermod --add-sub{kind}s'")
    if "owned by a different user" in low:
        return ("newuidmap saw the target owned by someone else: your real gid differs from "
                "your passwd primary gid (sg/newgrp), or the process is not dumpable",
                "run idrun from a plain login shell")
    if "usage:" in low:
        return ("the helper rejected its arguments (an fd: target needs shadow >= 4.14)",
                "report this with --verbose output")
    if "no such file" in low and "sub" in low:
        return (f"{sub} is missing or unreadable", f"create {sub} entries with "
                f"'usermod --add-sub{kind}s'")
    if "operation not permitted" in low and ("write" in low or "open" in low):
        if nnp:
            return ("no_new_privs is set for this process, so the kernel ignores the helper's "
                    "setuid bit", "run idrun outside NoNewPrivileges=/sandboxes, or map only "
                    "your own id (--map-root-user)")
        if nested:
            return ("idrun runs inside a user namespace whose owner is not host root, so the "
                    "setuid helper has no power over these ids",
                    "when creating the outer namespace, map your sub-ids into it as well "
                    "(e.g. start it with idrun --userns host)")
        return (f"the kernel refused a line (not within one extent of the parent map?) or "
                f"{helper.path} lacks privilege", "run 'idrun check'")
    if "permission denied" in low:
        return ("the helper could not open the target's map file: process not dumpable, "
                "owned by another user, or inside a container", "run 'idrun check'")
    if "invalid argument" in low:
        return ("the kernel rejected the map: overlapping lines, or 4096 bytes or more",
                "inspect with --dry-run")
    return ("unknown", "run 'idrun check' and retry with --verbose")


def run(helper: Helper, target: str, args: list[str], keep_fd: int | None = None,
        verbose: bool = False) -> None:
    """Run the helper against ``target`` (a pid or ``fd:N``); LaunchError on failure."""
    check(helper, target, args, *finish_capture(*start(helper, target, args, keep_fd)),
          verbose=verbose)


def start(helper: Helper, target: str, args: list[str],
          keep_fd: int | None = None) -> tuple[int, int]:
    """``run``'s start: (pid, output pipe) for ``finish_capture``, then ``check``."""
    try:
        return start_capture(helper.path, [helper.tool, target, *args], keep_fd=keep_fd,
                             keep_as=keep_fd if keep_fd is not None else 3)
    except OSError as e:
        raise LaunchError(f"cannot run {helper.path}: {e.strerror}",
                          hint="check the file and 'idrun check'") from None


def check(helper: Helper, target: str, args: list[str], status: int, output: str,
          verbose: bool = False) -> None:
    """``run``'s end: LaunchError explaining a failed run, from its status and output."""
    if status == 0:
        return
    argv = [helper.tool, target, *args]
    from .procfs import is_initial_userns, no_new_privs
    cause, hint = _cause(helper, output, no_new_privs(), not is_initial_userns())
    shown = " ".join(argv)
    if not verbose and len(shown) > 160:
        shown = shown[:150] + " … (--verbose for all)"
    said = " / ".join(ln.strip() for ln in output.strip().splitlines()[:3]) or "no output"
    raise LaunchError(f"{helper.path} failed ({how_ended(status)}): {said}; likely cause: "
                      f"{cause}; argv: {shown}", hint=hint)
