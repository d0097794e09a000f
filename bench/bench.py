"""idrun's benchmarks: launch cost, resolution at scale, memory (``make bench``).

Every figure is a ratio of medians measured side by side in one run, with the
two sides alternating so that machine noise hits both alike; each command is
started with posix_spawn and reaped with wait4, as a shell would. Absolute
times and the middle half of the runs are printed too, but only the ratios are
targets (issue 23):

1.  ``idrun --uidmap 0:0:1 -- true`` (pip's console script) / ``python -c pass``  ≤ 2.5
1b. the same with the .deb's ``/usr/bin/idrun`` / ``/usr/bin/python3 -c pass``     ≤ 2.0
1c. the same / ``python -c 'import click'``                                      (reported)
2.  the same / util-linux ``unshare -U -r true``                                 (reported)
3.  ``idrun.run(['true'], uidmap=['0:0:1'])`` per call / ``subprocess.run(unshare)``  ≤ 1.3
4.  ``idrun map --json --rootless`` with 300 '+' values (340 ranges) / one value ≤ 1.15
5.  peak RSS of a launch − peak RSS of ``python -c 'import click'``               ≤ 2 MiB
6.  rootless launch through newuidmap / root launch (Debian's python3)           ≤ 1.1
7.  ``idrun --pid`` launch (init as PID 1, command as PID 2) / plain launch        ≤ 1.2
8.  launch with 10 idmapped volumes / plain launch (same map)                    ≤ 1.3
9a. ``idrun --userns auto -- true`` / ``idrun --uidmap 0:S:1024 -- true`` with
    5 000 other processes running                                                ≤ 1.3
9b. the same with 100 live leases                                                ≤ 1.3
10a. ``idrun map --rootless`` with a 100 000-line sub-id file / a 10-line one    ≤ 1.2
10b. a rootless launch with a 100 000-line /etc/subuid and /etc/subgid / 10 lines ≤ 1.2
11. ``idrun map -v TREE:/mnt:idmap --files=100000`` over 100 000 entries,
    whole command (an absolute time, not a ratio; any user)                      ≤ 2 s

Runs as root. 6 and 10b need a user with sub-ids (``--user NAME``, default
idrun-test when it exists); 9 needs the user ``containers`` in /etc/subuid and
/etc/subgid. ``--only 1,9`` runs some figures. Only Python's standard library,
idrun itself, click and util-linux's ``unshare`` are needed.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {1: ("≤", 2.5), "1b": ("≤", 2.0), 3: ("≤", 1.3), 4: ("≤", 1.15), 5: ("≤", 2.0),
           6: ("≤", 1.1), 7: ("≤", 1.20), 8: ("≤", 1.30), "9a": ("≤", 1.3), "9b": ("≤", 1.3),
           "10a": ("≤", 1.2), "10b": ("≤", 1.2), 11: ("≤", 2.0)}


_DEVNULL_OUT = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]


def spawn_time(argv: list[str], env: dict | None = None, preexec=None) -> tuple[float, int]:
    """Wall time of one run and its peak RSS (KiB) from wait4.

    posix_spawn (vfork + exec in the C library) starts the command as any shell
    or supervisor would; a fork of this Python process added about 1 ms to both
    sides and made every ratio look smaller than it is. ``preexec`` (a change of
    user) needs a fork, so it is done once in a runner process (``AsUser``).
    """
    if preexec is not None:
        raise TypeError("use AsUser for commands that run as another user")
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                         file_actions=_DEVNULL_OUT)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed with status "
                         f"{os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss


class AsUser:
    """A runner process that switched to another user once and times commands
    for us with the same posix_spawn + wait4 as spawn_time (so neither side of a
    figure pays for the switch). ``setup`` runs in it first, still as root."""

    def __init__(self, uid: int, gid: int, setup=None) -> None:
        req_r, self._req = os.pipe()
        self._ans, ans_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                # Other runners' pipe ends must not stay open here, or they
                # never see the end of their requests.
                keep = {0, 1, 2, req_r, ans_w}
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd not in keep:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                if setup:
                    setup()
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                with os.fdopen(req_r) as req, os.fdopen(ans_w, "w") as ans:
                    for line in req:
                        env, argv = json.loads(line)
                        try:
                            t = spawn_time(argv, env)[0]
                        except SystemExit as e:
                            t = str(e)
                        ans.write(json.dumps(t) + "\n")
                        ans.flush()
            finally:
                os._exit(0)
        os.close(req_r), os.close(ans_w)
        self._reader = os.fdopen(self._ans)

    def run(self, argv: list[str], env: dict) -> float:
        os.write(self._req, (json.dumps([env, argv]) + "\n").encode())
        t = json.loads(self._reader.readline())
        if isinstance(t, str):
            raise SystemExit(t)
        return t

    def close(self) -> None:
        os.close(self._req)
        self._reader.close()
        os.waitpid(self.pid, 0)


def alternate(a, b, runs: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Run the callables a and b alternately; return their times."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for i in range(runs):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        x, y = first(), second()
        if first is a:
            ta.append(x), tb.append(y)
        else:
            ta.append(y), tb.append(x)
    return ta, tb


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """The middle half of the runs (interquartile range), in ms."""
    q = statistics.quantiles(xs, n=4)
    return f"IQR {q[0] * 1000:.2f}–{q[2] * 1000:.2f}"


def report(num, title: str, a: list[float], b: list[float], a_name: str, b_name: str,
           results: dict) -> None:
    ratio = med(a) / med(b)
    # The ratio's own spread: pairs measured side by side, middle half.
    pairs = statistics.quantiles([x / y for x, y in zip(a, b)], n=4)
    target = TARGETS.get(num)
    verdict = ""
    if target:
        ok = ratio <= target[1]
        verdict = f"  target {target[0]} {target[1]:.2f}: {'OK' if ok else 'MISSED'}"
        results[num] = ok
    print(f"[{num}] {title}")
    print(f"    {a_name:<46} median {med(a) * 1000:8.2f} ms  {spread(a)}")
    print(f"    {b_name:<46} median {med(b) * 1000:8.2f} ms  {spread(b)}")
    print(f"    ratio {ratio:.3f} (pairs' middle half {pairs[0]:.3f}–{pairs[2]:.3f}){verdict}")


def make_subid_file(path: Path, owner: str, nlines: int, keep: str = "") -> tuple[list[str], int]:
    """``nlines`` lines, the first generated one the owner's, so a file of any length
    gives the owner the same range; ``keep`` (real lines of the file it stands in
    for) comes first. Returns 300 '+' values using the owner's range."""
    lines = keep.splitlines()
    for i in range(nlines - len(lines)):
        who = owner if i == 0 else f"user{i}"
        lines.append(f"{who}:{1000000 + i * 1000}:1000")
    path.write_text("\n".join(lines) + "\n")
    # 300 single ids taken over with '+', consecutive so the result stays within
    # the kernel's 340 lines: host ids of the caller's first range.
    values = [f"--uidmap=+{i}:@{1000000 + i}:1" for i in range(300)]
    return values, len(lines)


def importtime(python: str, idrun_argv: list[str]) -> str:
    res = subprocess.run([python, "-X", "importtime", "-c",
                          "import sys; from idrun.cli.launcher import main; sys.argv[0]='idrun'"],
                         capture_output=True, text=True)
    rows = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return "\n".join(f"    {us / 1000:7.2f} ms  {name.strip()}" for us, name in rows[:15])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--user", default=None, help="user with sub-ids for figures 6 and 10b")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with idrun and click installed")
    ap.add_argument("--only", default="", help="comma-separated figure numbers to run")
    args = ap.parse_args()
    python = args.python
    bindir = Path(python).parent
    idrun = str(bindir / "idrun")
    if not os.path.exists(idrun):
        raise SystemExit(f"bench: no idrun next to {python}")
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    true = shutil.which("true") or "/bin/true"
    runs = args.runs
    only = {f.strip() for f in args.only.split(",") if f.strip()}

    def want(num: str) -> bool:
        return not only or num in only
    results: dict = {}
    print(f"idrun benchmarks — {time.strftime('%Y-%m-%d')}, {os.uname().sysname} "
          f"{os.uname().release}, {os.cpu_count()} cpus, Python {sys.version.split()[0]} "
          f"({python}), {runs} alternating runs per side, posix_spawn + wait4, medians")
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (root writes maps directly; figures 6 and 10b "
                         "switch to a user with sub-ids)")
    user = args.user or ("idrun-test" if _user_exists("idrun-test") else None)
    launch = [idrun, "--uidmap", "0:0:1", "--", true]
    floor = [python, "-c", "pass"]
    if want("1"):
        a, b = alternate(lambda: spawn_time(launch)[0], lambda: spawn_time(floor)[0], runs)
        report(1, "CLI launch (pip's console script) against the interpreter's start", a, b,
               "idrun --uidmap 0:0:1 -- true", "python -c pass", results)
        figure1b(runs, true, results)
        click_floor = [python, "-c", "import click"]
        a, b = alternate(lambda: spawn_time(launch)[0], lambda: spawn_time(click_floor)[0], runs)
        report("1c", "CLI launch against the floor of any click program", a, b,
               "idrun --uidmap 0:0:1 -- true", "python -c 'import click'", results)
    if want("2"):
        c, d = alternate(lambda: spawn_time(launch)[0],
                         lambda: spawn_time([unshare, "-U", "-r", true])[0], runs)
        report(2, "CLI launch against util-linux (the C floor)", c, d,
               "idrun --uidmap 0:0:1 -- true", "unshare -U -r true", results)
    if want("3"):
        figure3(python, unshare, true, runs, results)
    if want("4"):
        with tempfile.TemporaryDirectory() as tmp:
            subuid = Path(tmp) / "subuid"
            values, _ = make_subid_file(subuid, "1000", 10)
            big = [idrun, "map", "--json", "--rootless", "--caller", "1000:1000",
                   "--subuid-file", str(subuid), "--subgid-file", str(subuid), *values]
            small = [idrun, "map", "--json", "--rootless", "--caller", "1000:1000",
                     "--subuid-file", str(subuid), "--subgid-file", str(subuid),
                     "--uidmap", "0:1:1"]
            a, b = alternate(lambda: spawn_time(big)[0], lambda: spawn_time(small)[0], runs)
            report(4, "resolution of 340 ranges (300 '+' values over a 10-line sub-id file)",
                   a, b, "idrun map --json --rootless (300 values)",
                   "idrun map --json --rootless --uidmap 0:1:1", results)
    if want("5"):
        click_floor = [python, "-c", "import click"]
        rss_launch = max(spawn_time(launch)[1] for _ in range(5))
        rss_click = max(spawn_time(click_floor)[1] for _ in range(5))
        delta = (rss_launch - rss_click) / 1024
        ok = delta <= TARGETS[5][1]
        results[5] = ok
        print("[5] peak memory of a launch (max RSS over 5 runs)")
        print(f"    idrun --uidmap 0:0:1 -- true {rss_launch / 1024:8.2f} MiB; "
              f"python -c 'import click' {rss_click / 1024:8.2f} MiB")
        print(f"    difference {delta:+.2f} MiB  target ≤ 2 MiB: {'OK' if ok else 'MISSED'}")
    if want("6"):
        figure6(user, runs, true, results)
    if want("7"):
        pid_launch = [idrun, "--uidmap", "0:0:1", "--pid", "--", true]
        a, b = alternate(lambda: spawn_time(pid_launch)[0], lambda: spawn_time(launch)[0], runs)
        report(7, "--pid launch (an init is PID 1, the command PID 2) against a plain launch",
               a, b, "idrun --uidmap 0:0:1 --pid -- true", "idrun --uidmap 0:0:1 -- true",
               results)
    if want("8"):
        figure8(idrun, runs, true, results)
    if want("9"):
        figure9(idrun, true, runs, results)
    if want("10"):
        figure10(idrun, user, runs, true, results)
    if want("11"):
        figure11(idrun, results)

    print("[import profile] idrun's launch-path imports, cumulative (python -X importtime):")
    print(importtime(python, []))
    missed = [str(n) for n, ok in results.items() if not ok]
    print(f"targets: {len(results) - len(missed)} met, {len(missed)} missed"
          + (f" ({', '.join(missed)})" if missed else ""))
    return 1 if missed else 0


def figure1b(runs: int, true: str, results: dict) -> None:
    """The .deb's /usr/bin/idrun against Debian's interpreter start."""
    deb = "/usr/bin/idrun"
    owner = subprocess.run(["dpkg-query", "-S", deb], capture_output=True, text=True)
    if owner.returncode or not owner.stdout.startswith("idrun:"):
        print("[1b] the .deb's /usr/bin/idrun: skipped (install dist/idrun_*.deb)")
        return
    launch = [deb, "--uidmap", "0:0:1", "--", true]
    floor = ["/usr/bin/python3", "-c", "pass"]
    a, b = alternate(lambda: spawn_time(launch)[0], lambda: spawn_time(floor)[0], runs)
    report("1b", "CLI launch (the .deb's /usr/bin/idrun) against the interpreter's start", a, b,
           "/usr/bin/idrun --uidmap 0:0:1 -- true", "/usr/bin/python3 -c pass", results)


def figure3(python: str, unshare: str, true: str, runs: int, results: dict) -> None:
    loop = 20
    # One call before the clock starts: the API loads its modules on first use,
    # as subprocess is imported before its clock starts.
    code_idrun = (f"import idrun,time,sys\nidrun.run(['{true}'], uidmap=['0:0:1'])\n"
                  "t=time.perf_counter()\n"
                  f"for _ in range({loop}): idrun.run(['{true}'], uidmap=['0:0:1'])\n"
                  "print(time.perf_counter()-t)")
    code_sub = (f"import subprocess,time\nsubprocess.run(['{unshare}','-U','-r','{true}'])\n"
                "t=time.perf_counter()\n"
                f"for _ in range({loop}): subprocess.run(['{unshare}','-U','-r','{true}'])\n"
                "print(time.perf_counter()-t)")

    def inproc(code: str) -> float:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"bench: in-process loop failed: {out.stderr.strip()}")
        return float(out.stdout) / loop
    a, b = alternate(lambda: inproc(code_idrun), lambda: inproc(code_sub), max(5, runs // 4),
                     warmup=1)
    report(3, f"in-process API launch (per call, loops of {loop})", a, b,
           "idrun.run(['true'], uidmap=['0:0:1'])",
           "subprocess.run(['unshare','-U','-r','true'])", results)


def figure8(idrun: str, runs: int, true: str, results: dict[int, bool]) -> None:
    """Ten idmapped volumes: one throwaway user namespace for the map, ten detached
    trees built before the fork, a mount namespace and ten move_mount calls."""
    with tempfile.TemporaryDirectory() as tmp:
        vols = []
        for i in range(10):
            for side in ("src", "dst"):
                os.mkdir(os.path.join(tmp, f"{side}{i}"))
            vols += ["--volume", f"{tmp}/src{i}:{tmp}/dst{i}:idmap"]
        plain = [idrun, "--uidmap", "0:100000:65536", "--user", "1000:1000", "--", true]
        mapped = [idrun, "--uidmap", "0:100000:65536", "--user", "1000:1000", *vols, "--", true]
        env = dict(os.environ)
        a, b = alternate(lambda: spawn_time(mapped, env)[0], lambda: spawn_time(plain, env)[0],
                         runs)
        report(8, "launch with 10 idmapped volumes against a plain launch", a, b,
               "idrun … 10× --volume SRC:DST:idmap -- true",
               "idrun --uidmap 0:100000:65536 -- true",
               results)
def figure9(idrun: str, true: str, runs: int, results: dict) -> None:
    """--userns=auto against the same launch with the map given explicitly: with
    5 000 other processes on the machine (9a) and with 100 live leases (9b)."""
    start = None
    for kind in ("uid", "gid"):
        try:
            with open(f"/etc/sub{kind}") as f:
                found = [int(ln.split(":")[1]) for ln in f if ln.startswith("containers:")]
        except OSError:
            found = []
        if not found:
            print(f"[9] --userns=auto launch: skipped (no range of the user containers in "
                  f"/etc/sub{kind}; add e.g. containers:2147483647:2147483648)")
            return
        start = found[0] if start is None else start
    sleep = shutil.which("sleep") or "/bin/sleep"
    with tempfile.TemporaryDirectory() as tmp:
        # A private registry: the bench's leases neither meet nor leave real ones.
        env = dict(os.environ, IDRUN_LEASE_DIR=os.path.join(tmp, "leases"))
        auto = [idrun, "--userns", "auto", "--", true]
        plain = [idrun, "--uidmap", f"0:{start}:1024", "--", true]
        crowd = [os.posix_spawn(sleep, [sleep, "3600"], os.environ) for _ in range(5000)]
        try:
            a, b = alternate(lambda: spawn_time(auto, env)[0],
                             lambda: spawn_time(plain, env)[0], runs)
        finally:
            _end(crowd)
        report("9a", "--userns=auto launch against an explicit map, 5 000 processes running",
               a, b, "idrun --userns auto -- true", f"idrun --uidmap 0:{start}:1024 -- true",
               results)
        holders = [os.posix_spawn(idrun, [idrun, "--userns", "auto", "--", sleep, "3600"], env)
                   for _ in range(100)]
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(_ns_of(p) != _ns_of(os.getpid()) for p in holders):
                    break
                time.sleep(0.1)
            a, b = alternate(lambda: spawn_time(auto, env)[0],
                             lambda: spawn_time(plain, env)[0], runs)
        finally:
            _end(holders)
        report("9b", "--userns=auto launch against an explicit map, 100 live leases",
               a, b, "idrun --userns auto -- true", f"idrun --uidmap 0:{start}:1024 -- true",
               results)


def _ns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return ""


def _end(pids: list[int]) -> None:
    """Kill and reap the processes this bench started."""
    import signal
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in pids:
        os.waitpid(p, 0)


def figure11(idrun: str, results: dict) -> None:
    """--files: the owners of 100 000 entries (100 directories of 999 files and the top
    one), read with scandir + lstat and translated through the mount's map."""
    with tempfile.TemporaryDirectory() as tmp:
        for d in range(100):
            os.mkdir(f"{tmp}/d{d}")
            for f in range(999):
                open(f"{tmp}/d{d}/f{f}", "w").close()
        ns = ["--uidmap", "0:0:1"] if os.geteuid() == 0 else ["-r"]
        vol = f"{tmp}:/mnt:idmap" if os.geteuid() == 0 else f"{tmp}:/mnt"
        argv = [idrun, "map", *ns, "-v", vol, "--files=100000"]
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if out.returncode or "100000 entries" not in out.stdout:
                raise SystemExit(f"bench: --files failed: {out.stderr.strip()}")
    took = med(times)
    ok = took <= TARGETS[11][1]
    results[11] = ok
    print("[11] idrun map -v TREE:/mnt --files=100000 over 100 000 entries (median of 5)")
    print(f"    {took:.3f} s  target ≤ 2 s: {'OK' if ok else 'MISSED'}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _system_src_env(tmp: str, home: str) -> dict | None:
    """A world-readable copy of idrun's source and an environment for /usr/bin/python3."""
    src = Path(__file__).resolve().parent.parent / "src"
    os.chmod(tmp, 0o755)
    shutil.copytree(src, Path(tmp) / "src")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(tmp) / "src"),
           "HOME": home, "LC_ALL": "C.UTF-8"}
    probe = subprocess.run(["/usr/bin/python3", "-c", "import click"], env=env,
                           capture_output=True)
    return None if probe.returncode else env


def figure6(user: str | None, runs: int, true: str, results: dict) -> None:
    """Rootless (newuidmap) launch against a root launch, same interpreter and tree.

    The unprivileged user cannot read root's interpreter or venv, so both sides
    run Debian's /usr/bin/python3 with a world-readable copy of idrun's source.
    """
    title = "[6] rootless launch through newuidmap against a root launch"
    if not user or not os.path.exists("/usr/bin/python3"):
        print(f"{title}\n    skipped: needs a user with sub-ids (--user) and /usr/bin/python3")
        return
    pw = pwd.getpwnam(user)
    with tempfile.TemporaryDirectory() as tmp:
        env = _system_src_env(tmp, pw.pw_dir)
        if env is None:
            print(f"{title}\n    skipped: /usr/bin/python3 lacks click (apt-get install "
                  "python3-click)")
            return
        rootless = ["/usr/bin/python3", "-m", "idrun", "--uidmap", "0:1:1000", "--", true]
        root = ["/usr/bin/python3", "-m", "idrun", "--uidmap", "0:100000:1000", "--", true]
        runner = AsUser(pw.pw_uid, pw.pw_gid)
        try:
            try:
                runner.run(rootless, env)
            except SystemExit as e:
                print(f"{title}\n    skipped: rootless launch failed as {user}: {e}")
                return
            a, b = alternate(lambda: runner.run(rootless, env),
                             lambda: spawn_time(root, env)[0], runs)
        finally:
            runner.close()
        report(6, f"rootless launch through newuidmap against a root launch (as {user}, "
               "/usr/bin/python3)", a, b,
               "rootless: idrun --uidmap 0:1:1000 -- true", "root: idrun --uidmap ... -- true",
               results)


def _bind_over(pairs: list[tuple[str, str]]):
    """A setup for AsUser: a private mount namespace where each SRC covers DST."""
    def setup() -> None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        ms_rec, ms_private, ms_bind = 0x4000, 1 << 18, 0x1000
        if libc.unshare(0x20000) or libc.mount(None, b"/", None, ms_rec | ms_private, None):
            raise OSError(ctypes.get_errno(), "unshare/mount")
        for src, dst in pairs:
            if libc.mount(src.encode(), dst.encode(), None, ms_bind, None):
                raise OSError(ctypes.get_errno(), f"bind {src} over {dst}")
    return setup


def figure10(idrun: str, user: str | None, runs: int, true: str, results: dict) -> None:
    """A 100 000-line sub-id file against a 10-line one: `idrun map` and a rootless
    launch (newuidmap reads the same files: they are bound over /etc/subuid and
    /etc/subgid in the runner's own mount namespace)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        files = {}
        for n in (100000, 10):
            f = Path(tmp) / f"sub{n}"
            make_subid_file(f, "1000", n)
            f.chmod(0o644)
            files[n] = f
        m = [idrun, "map", "--json", "--rootless", "--caller", "1000:1000", "--uidmap", "0:1:1000"]
        big = [*m, "--subuid-file", str(files[100000]), "--subgid-file", str(files[100000])]
        small = [*m, "--subuid-file", str(files[10]), "--subgid-file", str(files[10])]
        a, b = alternate(lambda: spawn_time(big)[0], lambda: spawn_time(small)[0], runs)
        report("10a", "idrun map with a 100 000-line sub-id file against a 10-line one", a, b,
               "idrun map --rootless, 100 000 lines", "idrun map --rootless, 10 lines", results)
        title = "[10b] rootless launch with a 100 000-line /etc/subuid against a 10-line one"
        if not user:
            print(f"{title}\n    skipped: needs a user with sub-ids (--user)")
            return
        pw = pwd.getpwnam(user)
        real = {k: "".join(ln for ln in Path(f"/etc/sub{k}").read_text().splitlines(True)
                           if ln.split(":")[0] in (user, str(pw.pw_uid)))
                for k in ("uid", "gid")}
        os.mkdir(os.path.join(tmp, "tree"))
        env = _system_src_env(os.path.join(tmp, "tree"), pw.pw_dir)
        if env is None or not real["uid"] or not real["gid"]:
            print(f"{title}\n    skipped: {user} has no sub-ids or /usr/bin/python3 lacks click")
            return
        runners = {}
        for n in (100000, 10):
            binds = []
            for k in ("uid", "gid"):
                f = Path(tmp) / f"etc-sub{k}-{n}"
                make_subid_file(f, "nobody-else", n, keep=real[k])
                f.chmod(0o644)
                binds.append((str(f), f"/etc/sub{k}"))
            runners[n] = AsUser(pw.pw_uid, pw.pw_gid, _bind_over(binds))
        launch = ["/usr/bin/python3", "-m", "idrun", "--uidmap", "0:1:1000", "--", true]
        try:
            a, b = alternate(lambda: runners[100000].run(launch, env),
                             lambda: runners[10].run(launch, env), runs)
        finally:
            for r in runners.values():
                r.close()
        report("10b", f"rootless launch (as {user}) with a 100 000-line /etc/subuid and "
               "/etc/subgid against 10-line ones", a, b, "100 000 lines", "10 lines", results)


if __name__ == "__main__":
    sys.exit(main())
