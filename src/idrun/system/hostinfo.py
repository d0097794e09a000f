"""The shell around the resolver: gather the caller's facts into a ``Host``.

Reads /proc/self, the passwd database and the sub-id source (files, or
``getsubids`` when nsswitch.conf names a subid module). Reads only what the
request needs, each file once.
"""
from __future__ import annotations

import os

from ..errors import MapSyntaxError, SubidError, quoted
from ..mapping.plan import AUTO_OWNER, SUBID_FILE, Host, Request, SubidSet
from ..mapping.syntax import decimal, decimal_id, parse_userns
from . import procfs

NSSWITCH = "/etc/nsswitch.conf"
AUTO_USER_ENV = "IDRUN_AUTO_USER"   # root's --userns=auto pool owner (default containers)
CAP_SETGID = 6     # capability numbers (linux/capability.h)
CAP_SETUID = 7


def privileged() -> bool:
    """euid 0 holding CAP_SETUID and CAP_SETGID: idrun may write maps itself."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps >> CAP_SETUID & 1 and caps >> CAP_SETGID & 1)
    except OSError:
        pass
    return True


MAX_SUBID_FILE = 32 << 20   # far above any real file (100 000 users ≈ 3 MB)


def read_text(path: str) -> str | None:
    """A sub-id file's text; None when it does not exist."""
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", "surrogateescape")


def read_bytes(path: str) -> bytes | None:
    """A sub-id file's bytes; None when it does not exist.

    Only a regular file of bounded size: a FIFO would block, and /dev/zero
    would grow memory without end. O_NONBLOCK keeps the open of a FIFO from
    waiting for a writer before fstat can tell what it is.
    """
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SubidError(f"cannot read {path}: {e.strerror}",
                         f"make {path} readable (mode 644 is usual)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SubidError(f"{path} is not a regular file", "give the path of a sub-id "
                             "file such as /etc/subuid")
        if st.st_size > MAX_SUBID_FILE:
            raise SubidError(f"{path} is {st.st_size} bytes, more than idrun reads "
                             f"({MAX_SUBID_FILE})", "give the path of a sub-id file such as "
                             "/etc/subuid")
        chunks, size = [], 0
        want = st.st_size + 1  # one read for a file that does not grow meanwhile
        while size <= MAX_SUBID_FILE:
            chunk = os.read(fd, max(want, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise SubidError(f"cannot read {path}: {e.strerror}",
                         f"make {path} readable (mode 644 is usual)") from None
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) > MAX_SUBID_FILE:
        raise SubidError(f"{path} grew past {MAX_SUBID_FILE} bytes while being read",
                         "give the path of a sub-id file such as /etc/subuid")
    return data


def _owner_keys(name: str | None, uid: int | None) -> tuple[str, ...]:
    keys = []
    if name:
        keys.append(name)
    if uid is not None:
        keys.append(str(uid))
    return tuple(keys)


class SubidSource:
    """One sub-id file (or NSS module) read at most once, parsed per owner."""

    def __init__(self, path: str, kind: str, explicit: bool, full: bool = True) -> None:
        self.path = path
        self.kind = kind
        self.explicit = explicit
        self.full = full        # also warn about other owners' malformed lines
        self._text: bytes | None | bool = False
        self._module: str | None | bool = False

    def module(self) -> str | None:
        if self._module is False:
            text = None if self.explicit else read_text(NSSWITCH)
            from ..mapping.subids import nss_subid_module
            self._module = nss_subid_module(text) if text else None
        return self._module  # type: ignore[return-value]

    def lookup(self, name: str | None, uid: int | None) -> SubidSet:
        keys = _owner_keys(name, uid)
        module = self.module()
        if module:
            return self._getsubids(module, keys)
        if self._text is False:
            self._text = read_bytes(self.path)
        if self._text is None:
            from ..mapping.subids import free_block
            return SubidSet(self.path, present=False, keys=keys, free=free_block([]),
                            owner=name)
        from ..mapping.subids import all_entries, free_block, parse_subid_text
        found = parse_subid_text(self._text, self.path, keys,  # type: ignore[arg-type]
                                 warn_malformed=self.full)
        if found.ranges:
            return found
        # Only then is the whole file read, to propose a block nobody has.
        return found._replace(free=free_block(all_entries(self._text, self.path)),  # type: ignore[arg-type]
                              owner=name)

    def _getsubids(self, module: str, keys: tuple[str, ...]) -> SubidSet:
        import subprocess
        source = f"getsubids (nsswitch subid: {module})"
        tool = next((p for p in ("/usr/bin/getsubids", "/bin/getsubids") if os.path.exists(p)),
                    None)
        if tool is None:
            raise SubidError(f"{NSSWITCH} names the subid module {module}, but getsubids is "
                             "not installed", "install the uidmap package (Debian) or "
                             "shadow-utils-subid (Fedora)")
        out = []
        for key in keys:
            argv = [tool] + (["-g"] if self.kind == "gid" else []) + [key]
            res = subprocess.run(argv, capture_output=True, text=True, env={})
            out.append(res.stdout)
        from ..mapping.subids import parse_getsubids
        return parse_getsubids("\n".join(out), source, keys)


def parse_caller(text: str) -> tuple[int, int]:
    """``--caller USER[:GID]``: USER is a login name or a uid; GID defaults to the
    user's primary gid from passwd (or to the uid when there is no entry)."""
    import pwd
    from ..errors import MapSyntaxError
    user, sep, gid_text = text.partition(":")
    hint = "write --caller NAME, --caller UID or --caller UID:GID, e.g. --caller 1000:1000"
    what = f"--caller {quoted(text)}:"
    uid = decimal(user)
    entry = None
    if uid is None:
        try:
            entry = pwd.getpwnam(user)
        except (KeyError, ValueError):
            raise MapSyntaxError(f"{what} {quoted(user)} is neither a uid nor a known login "
                                 "name", hint) from None
        uid = entry.pw_uid
    else:
        uid = decimal_id(user, f"{what} UID", hint)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            pass
    if sep:
        return uid, decimal_id(gid_text, f"{what} GID", hint)
    return uid, entry.pw_gid if entry is not None else uid


def _accounts(request: Request) -> tuple[tuple[str, int, str], ...]:
    """(kind, id, name) of the host users and groups among the single from ids of the
    --uidmap/--gidmap values (0 is you and 1 the first sub-id: never asked): rootless,
    such an id was probably meant as a host id.
    A value that does not parse is left to the resolver to refuse."""
    from ..mapping.syntax import parse_value
    wanted = set()
    for option, values in (("--uidmap", request.uidmap), ("--gidmap", request.gidmap)):
        for value in values:
            if "@" in value and value.count(":") <= 2:
                # One triple whose from id is a host id ("+5:@1005:1"), or not valid at
                # all: never a candidate, and a long list of them need not be parsed twice.
                continue
            try:
                triples = parse_value(value, option)
            except MapSyntaxError:      # the resolver refuses it, with its one line
                continue
            wanted.update(t.from_id for t in triples
                          if t.amount == 1 and not t.host and t.from_id > 1)
    if not wanted:
        return ()
    import grp
    import pwd
    found = []
    for ident in sorted(wanted):
        for kind, get in (("uid", lambda i: pwd.getpwuid(i).pw_name),
                          ("gid", lambda i: grp.getgrgid(i).gr_name)):
            try:
                found.append((kind, ident, get(ident)))
            except (KeyError, OverflowError):
                pass
    return tuple(found)


def gather(request: Request, rootless: bool | None = None,
           caller: tuple[int, int] | None = None, subuid_file: str | None = None,
           subgid_file: str | None = None, full: bool = True) -> Host:
    """Collect what ``resolve`` needs for ``request``.

    ``full``: also report what only reading every line of the sub-id files finds
    (others' malformed lines); a launch passes False, so its cost does not grow
    with the number of users in the files."""
    import pwd
    if rootless is None:
        rootless = not privileged()
    if caller is None:
        uid, gid = os.geteuid(), os.getegid()
        if rootless and (os.getuid() != uid or os.getgid() != gid):
            raise SubidError("real and effective ids differ (setuid or sg/newgrp?), and "
                             "newuidmap checks the real ones",
                             "run idrun with equal real and effective ids")
    else:
        uid, gid = caller
    subuid = SubidSource(subuid_file or SUBID_FILE["uid"], "uid", subuid_file is not None, full)
    subgid = SubidSource(subgid_file or SUBID_FILE["gid"], "gid", subgid_file is not None, full)

    host_kwargs: dict = {}
    login: str | None = None
    # The login name only keys the caller's own sub-id lines; a launch that reads
    # none skips the passwd lookup (NSS set-up and a file parse on every launch).
    if rootless or request.map_auto:
        try:
            login = pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
        host_kwargs["subuid"] = subuid.lookup(login, uid)
        host_kwargs["subgid"] = subgid.lookup(login, uid)
    named_uid: dict[str, SubidSet] = {}
    named_gid: dict[str, SubidSet] = {}
    uname = request.subuidname or request.subgidname
    gname = request.subgidname or request.subuidname
    wanted: list[tuple[dict[str, SubidSet], SubidSource, str]] = []
    if uname and gname:
        wanted += [(named_uid, subuid, uname), (named_gid, subgid, gname)]
    auto_owner = os.environ.get(AUTO_USER_ENV) or AUTO_OWNER
    if request.userns and parse_userns(request.userns).mode == "auto" and not rootless:
        wanted += [(named_uid, subuid, auto_owner), (named_gid, subgid, auto_owner)]
    for table, source, name in wanted:
        try:
            owner_uid: int | None = pwd.getpwnam(name).pw_uid
        except KeyError:
            owner_uid = decimal(name)
        table[name] = source.lookup(name, owner_uid)
    if rootless:
        host_kwargs["accounts"] = _accounts(request)
    try:
        with open("/proc/self/setgroups") as f:
            host_kwargs["parent_setgroups"] = f.read().strip() or "allow"
    except OSError:
        pass
    if not rootless:
        try:
            host_kwargs["parent_uid_map"] = procfs.read_map("uid")
            host_kwargs["parent_gid_map"] = procfs.read_map("gid")
        except OSError:
            pass
    return Host(rootless=rootless, uid=uid, gid=gid, login=login,
                named_subuid=named_uid, named_subgid=named_gid, auto_owner=auto_owner,
                **host_kwargs)
