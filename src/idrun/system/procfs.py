"""Reading the kernel's view of a process from /proc: id maps, setgroups, status, sysctls.

Small, dependency-free readers; the launcher calls them on every launch to check
preconditions and to read back the maps it just had written.
"""

import os
from ..hints import NamedTuple

from ..mapping.ranges import ID_LIMIT, IdMap, Line


def _read(path: str, dir_fd: int | None = None) -> str:
    from .syscalls import SignalsBlocked, read_all
    with SignalsBlocked():          # no descriptor lost to a raising signal handler
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            data = read_all(fd)
        finally:
            os.close(fd)
    return data.decode("utf-8", "replace")


def kernel_text(lines: list[Line] | tuple[Line, ...]) -> str:
    """A map exactly as the kernel prints it (``%10u %10u %10u``), for byte comparison."""
    return "".join(f"{ln.inside:>10} {ln.outside:>10} {ln.count:>10}\n" for ln in lines)


def read_map_text(kind: str, pid: int | str = "self", dir_fd: int | None = None) -> str:
    """The raw text of a uid_map/gid_map."""
    if dir_fd is not None:
        return _read(f"{kind}_map", dir_fd=dir_fd)
    return _read(f"/proc/{pid}/{kind}_map")


def read_map(kind: str, pid: int | str = "self", dir_fd: int | None = None) -> IdMap:
    """The ``kind`` ("uid"/"gid") map of a process, outside ids as the reader sees them.

    With ``dir_fd`` (an open /proc/PID directory), ``pid`` is ignored.
    """
    if dir_fd is not None:
        return IdMap.parse(_read(f"{kind}_map", dir_fd=dir_fd))
    return IdMap.parse(_read(f"/proc/{pid}/{kind}_map"))


def read_setgroups(pid: int | str = "self", dir_fd: int | None = None) -> str | None:
    """"allow" or "deny"; None when the file does not exist (kernels before 3.19)."""
    try:
        if dir_fd is not None:
            return _read("setgroups", dir_fd=dir_fd).strip()
        return _read(f"/proc/{pid}/setgroups").strip()
    except FileNotFoundError:
        return None


def status(pid: int | str = "self") -> dict[str, str]:
    """All ``Key:\tvalue`` fields of /proc/PID/status."""
    out: dict[str, str] = {}
    for raw in _read(f"/proc/{pid}/status").splitlines():
        key, sep, value = raw.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def thread_count(pid: int | str = "self") -> int:
    """Threads of the process, as the kernel counts them (C-level threads included)."""
    return int(status(pid).get("Threads", "1"))


def no_new_privs(pid: int | str = "self") -> bool:
    return status(pid).get("NoNewPrivs", "0") == "1"


def sysctl(name: str) -> str | None:
    """A sysctl such as ``user/max_user_namespaces`` (or dotted ``user.max_user_namespaces``);
    None when it does not exist on this kernel."""
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        return _read(path).strip()
    except (FileNotFoundError, PermissionError):
        return None


def sysctl_int(name: str) -> int | None:
    value = sysctl(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def comm(pid: int | str) -> str:
    """The process's name (/proc/PID/comm), or "?" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def is_initial_userns(pid: int | str = "self") -> bool:
    """True when the process's uid map is the initial namespace's identity map."""
    try:
        return read_map("uid", pid) == (Line(0, 0, ID_LIMIT),)
    except OSError:
        return True


def userns_inode(pid: int | str = "self") -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return None


def start_time(pid: int | str) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot): with the pid, it names one
    process for the life of the boot, since pids are reused but never at the same tick."""
    try:
        text = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # comm (field 2) may hold blanks and parentheses; the fields after the last ")"
    # start at field 3.
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


class ProcIds(NamedTuple):
    pid: int
    uids: tuple[int, ...]     # real, effective, saved, filesystem (as this reader sees them)
    gids: tuple[int, ...]


def all_proc_ids() -> list[ProcIds]:
    """The ids of every visible process, from the Uid:/Gid: lines of /proc/*/status.

    Cheap on purpose (one short read per process): the --userns=auto block choice
    runs it on every launch.
    """
    out: list[ProcIds] = []
    for entry in os.scandir("/proc"):
        name = entry.name
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        u = data.find(b"\nUid:")
        g = data.find(b"\nGid:", u)
        if u < 0 or g < 0:
            continue
        try:
            uids = tuple(int(x) for x in data[u + 5:data.index(b"\n", u + 1)].split())
            gids = tuple(int(x) for x in data[g + 5:data.index(b"\n", g + 1)].split())
        except ValueError:
            continue
        out.append(ProcIds(int(name), uids, gids))
    return out
