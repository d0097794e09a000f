"""Every namespace option creates what it says, proven from inside.

`readlink /proc/self/ns/X` inside differs from the host's exactly for the
namespaces asked for (and always for `user`); each option also gets a
behavioural proof: only `lo`, up, in a new network namespace; PID 1 and a
private /proc; a mount invisible outside; a hostname the host does not get;
the cgroup root.
"""
from __future__ import annotations

import os
import shutil

import pytest
import testlib.integration as it

NAMESPACES = ["user", "mnt", "net", "pid", "uts", "ipc", "cgroup"]

OPTION_NS = {
    "none": ([], {"user"}),
    "--net": (["--net"], {"user", "net"}),
    "--pid": (["--pid"], {"user", "pid"}),
    "--mount": (["--mount"], {"user", "mnt"}),
    "--pid --mount-proc": (["--pid", "--mount-proc"], {"user", "mnt", "pid"}),
    "--pid --net": (["--pid", "--net"], {"user", "pid", "net"}),
    "--uts": (["--uts"], {"user", "uts"}),
    "--hostname": (["--hostname", "idrun-it"], {"user", "uts"}),
    "--ipc": (["--ipc"], {"user", "ipc"}),
    "--cgroup": (["--cgroup"], {"user", "cgroup"}),
    "--fork": (["--fork"], {"user"}),
    "all": (["--net", "--pid", "--mount-proc", "--uts", "--ipc", "--cgroup"],
            set(NAMESPACES)),
}


def host_ns() -> dict[str, str]:
    return {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES}


def inside_ns(idrun, opts) -> dict[str, str]:
    script = "; ".join(f"echo {n}=$(readlink /proc/self/ns/{n})" for n in NAMESPACES)
    out = idrun.ok(opts, ["sh", "-c", script])
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.kernel
@pytest.mark.parametrize("case", list(OPTION_NS))
def test_namespace_option_creates_exactly_that(idrun, basic_opts, case):
    extra, new = OPTION_NS[case]
    outside = host_ns()
    inside = inside_ns(idrun, basic_opts + extra)
    for n in NAMESPACES:
        if n in new:
            assert inside[n] != outside[n], f"{case}: {n} namespace not new: {inside[n]}"
        else:
            assert inside[n] == outside[n], f"{case}: {n} namespace changed: {inside[n]}"


NET_PROBE = r"""
import fcntl, socket, struct
names = sorted(n for _, n in socket.if_nameindex())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = {}
for n in names:
    req = struct.pack("16sh", n.encode(), 0)
    flags[n] = struct.unpack("16sh", fcntl.ioctl(s.fileno(), 0x8913, req))[1]  # SIOCGIFFLAGS
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
c = socket.create_connection(srv.getsockname(), timeout=5)
print(" ".join(names), "lo_up=%d" % (flags.get("lo", 0) & 1), "connect=ok")
"""


@pytest.mark.kernel
def test_net_only_lo_and_up(idrun, basic_opts, inside_python):
    out = idrun.ok(basic_opts + ["--net"], [inside_python, "-c", NET_PROBE])
    assert out.split() == ["lo", "lo_up=1", "connect=ok"], out


def test_net_proc_net_dev_lists_only_lo(idrun, basic_opts):
    out = idrun.ok(basic_opts + ["--net"], ["cat", "/proc/net/dev"])
    names = [ln.split(":")[0].strip() for ln in out.splitlines()[2:]]
    assert names == ["lo"], out
    flags = int(idrun.ok(basic_opts + ["--net"], ["cat", "/sys/class/net/lo/flags"]), 16)
    assert flags & 0x1, "lo is not IFF_UP"


@pytest.mark.skipif(shutil.which("ip") is None and not os.path.exists("/sbin/ip"),
                    reason="iproute2 (ip) is not installed; test_net_only_lo_and_up covers it")
def test_net_ip_link(idrun, basic_opts):
    ip = shutil.which("ip") or "/sbin/ip"
    out = idrun.ok(basic_opts + ["--net"], [ip, "-o", "link", "show"])
    lines = out.strip().splitlines()
    assert len(lines) == 1 and ": lo: <" in lines[0], out
    assert "UP" in lines[0].split("<", 1)[1].split(">", 1)[0].split(","), out


@pytest.mark.kernel
@pytest.mark.parametrize("wrapper", [[], ["--fork"]], ids=["exec", "fork"])
def test_pid_command_is_pid_2_under_an_init(idrun, basic_opts, wrapper):
    out = idrun.ok(basic_opts + ["--pid"] + wrapper, ["sh", "-c", "echo $$ $PPID"])
    assert out.split() == ["2", "1"]


def test_mount_proc_shows_only_the_namespace(idrun, basic_opts):
    out = idrun.ok(basic_opts + ["--pid", "--mount-proc"],
                   ["sh", "-c", "echo /proc/[0-9]*; cat /proc/1/comm; readlink /proc/self"])
    pids, comm, self_ = out.split("\n")[:3]
    assert pids == "/proc/1 /proc/2", out     # idrun's init and the command
    assert comm == "idrun-init"                # PID 1 is the init, not the command
    assert int(self_) <= 4, out  # readlink is the third process of the namespace
    # the host's /proc is untouched
    assert str(os.getpid()) in os.listdir("/proc")


def test_mount_proc_without_pid(idrun, basic_opts, shared_dir):
    """Without --pid the kernel lets no user namespace mount a /proc of the host's PID
    namespace (util-linux `unshare -r --mount-proc` fails the same way): idrun must
    either cope or refuse cleanly, before the command starts."""
    marker = os.path.join(shared_dir, "ran")
    p = idrun.run(basic_opts + ["--mount-proc"], ["touch", marker])
    if p.returncode != 0:
        it.assert_refused(p, marker)


def test_pid_without_mount_proc_keeps_host_proc(idrun, basic_opts):
    out = idrun.ok(basic_opts + ["--pid"], ["sh", "-c", "echo $$; echo /proc/[0-9]*"])
    first, pids = out.split("\n")[:2]
    assert first == "2"
    assert f"/proc/{os.getpid()}" in pids.split(), "host /proc should still be visible"


MOUNT_TMPFS_PY = ("import ctypes, os, sys\n"
                  "libc = ctypes.CDLL(None, use_errno=True)\n"
                  "if libc.mount(b'idrun-it', sys.argv[1].encode(), b'tmpfs', 0, None) != 0:\n"
                  "    e = ctypes.get_errno(); sys.exit(f'mount: {os.strerror(e)}')\n")


def test_mount_is_private(idrun, basic_opts, shared_dir):
    sub = os.path.join(shared_dir, "mnt")
    os.mkdir(sub)
    os.chmod(sub, 0o777)
    mount = _mount_argv(sub)
    out = idrun.ok(basic_opts + ["--mount"],
                   ["sh", "-c", '"$@" && touch "$0/inside" && ls "$0" && '
                                'grep -c " $0 " /proc/self/mountinfo; '
                                "grep -c ' shared:' /proc/self/mountinfo || true", sub, *mount])
    # the last count: no mount propagates back (no shared peer group left)
    assert out.split() == ["inside", "1", "0"], out
    assert os.listdir(sub) == [], "the mount (or its file) leaked to the host"
    with open("/proc/self/mountinfo") as f:
        assert f" {sub} " not in f.read()


def test_mount_refused_without_mount_namespace(idrun, basic_opts, shared_dir):
    """Without --mount the command shares the host's mount namespace: it cannot mount."""
    sub = os.path.join(shared_dir, "mnt")
    os.mkdir(sub)
    p = idrun.run(basic_opts, _mount_argv(sub))
    assert p.returncode != 0
    assert os.listdir(sub) == []


def _mount_argv(target: str) -> list[str]:
    """Mount a tmpfs on target: mount(8), else python3 + ctypes."""
    if shutil.which("mount"):
        return [shutil.which("mount"), "-t", "tmpfs", "idrun-it", target]
    py = it.inside_python_path()
    if py is None:
        it.env_missing("neither mount(8) nor a python3 usable inside")
    return [py, "-c", MOUNT_TMPFS_PY, target]


@pytest.mark.parametrize("uts", [["--uts"], []], ids=["uts", "hostname-alone"])
def test_hostname(idrun, basic_opts, uts):
    before = os.uname().nodename
    out = idrun.ok(basic_opts + uts + ["--hostname", "idrun-it-host"], ["uname", "-n"])
    assert out.strip() == "idrun-it-host"
    assert os.uname().nodename == before


def test_uts_hostname_change_stays_inside(idrun, basic_opts):
    before = os.uname().nodename
    hostname = shutil.which("hostname")
    if hostname:
        change = [hostname, "idrun-it-changed"]
    else:
        py = it.inside_python_path()
        if py is None:
            it.env_missing("neither hostname(1) nor a python3 usable inside")
        change = [py, "-c", "import socket; socket.sethostname('idrun-it-changed')"]
    out = idrun.ok(basic_opts + ["--uts"], ["sh", "-c", 'uname -n; "$@" && uname -n', "sh",
                                            *change])
    assert out.split() == [before, "idrun-it-changed"]
    assert os.uname().nodename == before


def test_ipc_namespace_hides_host_queues(idrun, basic_opts):
    out = idrun.ok(basic_opts + ["--ipc"], ["cat", "/proc/sysvipc/msg"])
    assert len(out.strip().splitlines()) == 1, out     # the header, no queue of the host
    if shutil.which("ipcmk") is None or shutil.which("ipcs") is None:
        pytest.skip("ipcmk/ipcs (util-linux) not installed")
    out = idrun.ok(basic_opts + ["--ipc"],
                   ["sh", "-c", "ipcmk -Q >/dev/null && ipcs -q | grep -c '^0x'"])
    assert out.strip() == "1"  # the queue made inside, none of the host's


def test_cgroup_namespace_root(idrun, basic_opts):
    """In a new cgroup namespace every hierarchy's path reads "/"."""
    with open("/proc/self/cgroup") as f:
        host = [line for line in f.read().splitlines() if line]
    out = idrun.ok(basic_opts + ["--cgroup"], ["cat", "/proc/self/cgroup"])
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == len(host), (host, out)
    paths = [line.split(":", 2)[2] for line in lines]
    assert all(p == "/" for p in paths), out
    assert lines[-1].endswith("::/"), out      # the unified (v2) hierarchy among them


ALL_TOGETHER = {
    "root": ["--uidmap", "0:100000:65536", "--net", "--pid", "--mount-proc", "--uts",
             "--hostname", "all", "--ipc", "--cgroup"],
    "rootless": ["--uidmap", "0:0:1", "--uidmap", "1:1:1000", "--net", "--pid",
                 "--mount-proc", "--hostname", "all", "--ipc", "--cgroup"],
}


@pytest.mark.kernel
@pytest.mark.parametrize("case", [pytest.param("root", marks=pytest.mark.root),
                                  pytest.param("rootless", marks=pytest.mark.rootless)])
def test_all_options_together(request, idrun, case):
    """Every namespace at once, the maps written through newuidmap in the rootless case.
    --net and --pid together also cover Debian 12's pyroute2 (0.7), which runs
    `uname -p` through subprocess when imported: were --net set up before the
    PID-namespace fork, that process would become PID 1 and, by exiting, make every
    later fork fail (ENOMEM). `make integration` runs idrun with Debian's python3."""
    opts = ALL_TOGETHER[case]
    if case == "rootless":
        expected = request.getfixturevalue("subids").compose("uid", [[0, 0, 1], [1, 1, 1000]])
    else:
        expected = [[0, 100000, 65536]]
    out = idrun.ok(opts, ["sh", "-c", "echo $$; uname -n; id -u; "
                                      "cat /sys/class/net/lo/operstate; "
                                      "ls /proc | grep -cE '^[0-9]+$'; echo @@; "
                                      "cat /proc/self/uid_map"])
    head, uid_map = out.split("@@\n")
    pid, host, uid, lo_state, nprocs = head.split()
    assert (pid, host, uid) == ("2", "all", "0"), out
    assert lo_state in ("unknown", "up"), out
    assert int(nprocs) <= 4, out       # the init, the shell, ls and grep
    assert it.parse_map(uid_map) == expected, out
