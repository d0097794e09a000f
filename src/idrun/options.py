"""The launcher's process and namespace options, checked before anything starts.

What the kernel would only refuse after namespaces exist (a hostname too long
for sethostname, --mount-proc without its PID namespace), or never check at all
(descriptors to pass on that are not open), is refused here with one line.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import IdrunError, quoted

if TYPE_CHECKING:
    from .launch import LaunchOptions

HOST_NAME_MAX = 64   # bytes; sethostname(2) refuses longer names with EINVAL


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


def launch_options(*, net: bool = False, pid: bool = False, mount: bool = False,
                   mount_proc: bool = False, uts: bool = False, hostname: str | None = None,
                   ipc: bool = False, cgroup: bool = False, fork: bool = False,
                   no_new_privs: bool = False, preserve_fds: int = 0, verbose: bool = False,
                   newuidmap: str | None = None, newgidmap: str | None = None,
                   die_with_parent: bool = False,
                   json_status_fd: int | None = None, cap_add: tuple[str, ...] = (),
                   cap_drop: tuple[str, ...] = ()) -> LaunchOptions:
    """The launcher's options with their implications, refused here rather than by the
    kernel after namespaces exist."""
    from .launch import LaunchOptions
    if mount_proc and not pid:
        raise IdrunError("--mount-proc needs --pid: a fresh /proc shows the PID namespace "
                         "it is mounted from", "add --pid")
    if hostname is not None:
        check_hostname(hostname)
    check_preserve_fds(preserve_fds)
    caps, added = None, frozenset()
    if cap_add or cap_drop:
        from .caps import resolve
        caps, added = resolve(cap_add, cap_drop), resolve(cap_add, ("ALL",))
    if json_status_fd is not None:
        check_status_fd(json_status_fd)
    return LaunchOptions(net=net, pid=pid, mount=mount or mount_proc, mount_proc=mount_proc,
                         uts=uts or hostname is not None, hostname=hostname, ipc=ipc,
                         cgroup=cgroup, fork=fork, no_new_privs=no_new_privs,
                         preserve_fds=preserve_fds, verbose=verbose, newuidmap=newuidmap,
                         newgidmap=newgidmap, die_with_parent=die_with_parent,
                         json_status_fd=json_status_fd, caps=caps,
                         cap_added=added or frozenset())


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
    from .ranges import IdMap
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
