"""idrun's benchmarks (``make bench``): issue 23's goals, one figure each.

How a figure is measured: the two sides A and B run as pairs in one run, the
order swapped every pair (A B, B A, A B, ...) so that drift and cache warmth hit
both alike; each command is started with posix_spawn and reaped with wait4, as
a shell starts it (a fork of this Python process would add about 1 ms to both
sides and shrink every ratio). A figure's ratio is the **median of the pair
ratios** A/B, its spread the interquartile range and the min-max of those pair
ratios; the sides' own medians are printed as absolute times. PASS/FAIL
compares the median pair ratio with the target. Figure 2 times calls inside one
Python process, twice as many pairs (a call costs a few ms).

 id  A / B                                                              target
 1a  ``idrun --uidmap 0:0:1 -- true`` (pip's console script) /
     ``python -c pass``                                                  ≤ 2.5
 1b  the .deb's launcher (``/usr/bin/idrun`` when the package is installed,
     else ``/usr/bin/python3 debian/idrun.launcher`` over this tree's src) /
     ``/usr/bin/python3 -c pass``                                        ≤ 2.0
 1c  rootless launch with sub-ids (newuidmap) / root launch, both with
     /usr/bin/python3 and this tree                                      ≤ 1.1
 2   ``idrun.run(['true'], uidmap=['0:0:1'])`` per call /
     ``subprocess.run(['unshare','-U','-r','true'])``, in one process    ≤ 1.3
 3   rootless launch with a 100 000-line /etc/subuid and /etc/subgid /
     10-line ones (generated files bound over /etc/sub[ug]id in a private
     mount namespace of the timing process; the real files are untouched) ≤ 1.2
 3m  ``idrun map --rootless --subuid-file`` 100 000 lines / 10 lines     ≤ 1.2
 4a  ``idrun --userns auto -- true`` / ``idrun --uidmap 0:S:1024 -- true``
     with 5 000 other processes running                                  ≤ 1.3
 4b  the same with 100 live leases                                       ≤ 1.3
 5a  ``--pid`` launch / plain launch                                     ≤ 1.2
 5b  launch with 10 id-mapped volumes / plain launch                     ≤ 1.3
 5c  ``idrun map --json --rootless`` 300 '+' values (340 ranges) / one   ≤ 1.15
 5d  peak RSS of a launch − peak RSS of ``python -c 'import click'``     ≤ 2 MiB
 5e  ``idrun map -v TREE:/mnt:idmap --files=100000`` (absolute time)     ≤ 2 s
 r1  launch / ``python -c 'import click'``                          (reported)
 r2  launch / util-linux ``unshare -U -r true``                     (reported)

Runs as root; as another user only 5c and 5e run (the rest SKIP with the
reason). 1c and 3 need a user with sub-ids (``--user``, default idrun-test when
it exists) and click for /usr/bin/python3; 4 needs the user ``containers`` in
/etc/subuid and /etc/subgid. The exit status is 0 whenever the figures were
measured, FAILs included (the last line names them): speed is not a test.
"""
import argparse
import json
import os
import pwd
import resource  # noqa: F401  os.wait4 imports it on first use: not as the user of AsUser
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional

ROOT = Path(__file__).resolve().parent.parent


class Figure(NamedTuple):
    fid: str
    title: str
    target: Optional[float]   # None: reported only
    unit: str                 # "x" a ratio, "MiB" a difference, "s" an absolute time


FIGURES = [
    Figure("1a", "CLI launch, pip's console script / python -c pass", 2.5, "x"),
    Figure("1b", "CLI launch, the .deb's launcher / /usr/bin/python3 -c pass", 2.0, "x"),
    Figure("1c", "rootless launch with sub-ids / root launch", 1.1, "x"),
    Figure("2", "API idrun.run per call / subprocess.run(unshare -U -r true)", 1.3, "x"),
    Figure("3", "rootless launch, 100 000-line /etc/subuid / 10 lines", 1.2, "x"),
    Figure("3m", "idrun map --rootless, 100 000-line sub-id file / 10 lines", 1.2, "x"),
    Figure("4a", "--userns auto / explicit map, 5 000 processes running", 1.3, "x"),
    Figure("4b", "--userns auto / explicit map, 100 live leases", 1.3, "x"),
    Figure("5a", "--pid launch / plain launch", 1.2, "x"),
    Figure("5b", "launch with 10 id-mapped volumes / plain launch", 1.3, "x"),
    Figure("5c", "idrun map, 340 ranges (300 '+' values) / one value", 1.15, "x"),
    Figure("5d", "peak RSS of a launch - peak RSS of python -c 'import click'", 2.0, "MiB"),
    Figure("5e", "idrun map --files=100000 over 100 000 entries (absolute)", 2.0, "s"),
    Figure("r1", "CLI launch / python -c 'import click'", None, "x"),
    Figure("r2", "CLI launch / unshare -U -r true (the C floor)", None, "x"),
]
BY_ID = {f.fid: f for f in FIGURES}


class Result(NamedTuple):
    fig: Figure
    verdict: str              # PASS, FAIL, INFO (no target) or SKIP
    value: Optional[float]    # the median pair ratio, the MiB difference or the seconds
    spread: str               # the pair ratios' IQR and min-max, "" when not a ratio
    a: str                    # side A and its median
    b: str
    note: str = ""            # why a figure was skipped, which launcher was measured


class BenchError(Exception):
    """The harness could not measure (a command failed): a bug to report, not a FAIL."""


# ----------------------------------------------------------------- statistics (pure)

def pair_stats(pairs: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """Median, lower and upper quartile, min and max of the pair ratios a/b."""
    ratios = sorted(a / b for a, b in pairs)
    if len(ratios) >= 2:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    else:
        q1 = q3 = ratios[0]
    return statistics.median(ratios), q1, q3, ratios[0], ratios[-1]


def verdict(fig: Figure, value: float) -> str:
    if fig.target is None:
        return "INFO"
    return "PASS" if value <= fig.target else "FAIL"


def ratio_result(fig: Figure, pairs: list[tuple[float, float]], a_name: str, b_name: str,
                 note: str = "") -> Result:
    med, q1, q3, lo, hi = pair_stats(pairs)
    a_ms = statistics.median(p[0] for p in pairs) * 1000
    b_ms = statistics.median(p[1] for p in pairs) * 1000
    return Result(fig, verdict(fig, med), med,
                  f"IQR {q1:.2f}–{q3:.2f}, min–max {lo:.2f}–{hi:.2f} ({len(pairs)} pairs)",
                  f"{a_name} {a_ms:.2f} ms", f"{b_name} {b_ms:.2f} ms", note)


def skip(fig: Figure, why: str) -> Result:
    return Result(fig, "SKIP", None, "", "", "", why)


# ----------------------------------------------------------------- output

def target_text(fig: Figure) -> str:
    if fig.target is None:
        return "reported"
    return f"≤ {fig.target:g}" + ("×" if fig.unit == "x" else f" {fig.unit}")


def value_text(r: Result) -> str:
    if r.value is None:
        return "—"
    if r.fig.unit == "x":
        return f"{r.value:.2f}×"
    if r.fig.unit == "MiB":
        return f"{r.value:+.2f} MiB"
    return f"{r.value:.2f} s"


def text_block(r: Result) -> str:
    lines = [f"[{r.fig.fid}] {r.fig.title}   target {target_text(r.fig)}"]
    if r.verdict == "SKIP":
        lines.append(f"     SKIP: {r.note}")
        return "\n".join(lines)
    lines.append(f"     A: {r.a}")
    if r.b:
        lines.append(f"     B: {r.b}")
    what = "median of pair ratios " if r.fig.unit == "x" else ""
    lines.append(f"     {what}{value_text(r)}" + (f"  ({r.spread})" if r.spread else "")
                 + f"  {r.verdict}")
    if r.note:
        lines.append(f"     note: {r.note}")
    return "\n".join(lines)


def md_table(results: list[Result]) -> str:
    rows = ["| # | figure | target | measured | spread of the pair ratios | A | B | result |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        note = f" ({r.note})" if r.note else ""
        if r.verdict == "SKIP":
            rows.append(f"| {r.fig.fid} | {r.fig.title} | {target_text(r.fig)} | — | — | — | — "
                        f"| SKIP: {r.note} |")
            continue
        rows.append(f"| {r.fig.fid} | {r.fig.title}{note} | {target_text(r.fig)} | "
                    f"{value_text(r)} | {r.spread or '—'} | {r.a} | {r.b or '—'} | {r.verdict} |")
    return "\n".join(rows)


def summary(results: list[Result]) -> str:
    by = {v: [r.fig.fid for r in results if r.verdict == v]
          for v in ("PASS", "FAIL", "SKIP", "INFO")}
    counts = ", ".join(f"{len(ids)} {v}" for v, ids in by.items() if ids)
    failed = ", ".join(by["FAIL"]) if by["FAIL"] else "none"
    return f"bench: FAILED: {failed} ({counts})"


def select(only: str) -> list[Figure]:
    """The figures named in ``only`` ("1a,3"; "1" means 1a, 1b and 1c), all when empty."""
    if not only.strip():
        return list(FIGURES)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    out = []
    for w in wanted:
        match = [f for f in FIGURES if f.fid == w or f.fid.rstrip("abcdem") == w]
        if not match:
            raise BenchError(f"no figure {w!r} (figures: {', '.join(BY_ID)})")
        out += [f for f in match if f not in out]
    return [f for f in FIGURES if f in out]


# ----------------------------------------------------------------- timing

_DEVNULL_OUT = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]


def spawn_time(argv: list[str], env: Optional[dict] = None) -> tuple[float, int]:
    """Wall time of one run of argv and its peak RSS (KiB), posix_spawn + wait4."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                         file_actions=_DEVNULL_OUT)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss


def timed(argv: list[str], env: Optional[dict] = None) -> Callable[[], float]:
    return lambda: spawn_time(argv, env)[0]


def run_pairs(a: Callable[[], float], b: Callable[[], float], n: int,
              warmup: int = 2) -> list[tuple[float, float]]:
    """n pairs (time of a, time of b), a first in even pairs and b first in odd ones."""
    for _ in range(warmup):
        a(), b()
    pairs = []
    for i in range(n):
        if i % 2 == 0:
            x = a()
            y = b()
        else:
            y = b()
            x = a()
        pairs.append((x, y))
    return pairs


class AsUser:
    """A runner process that became another user once and times commands with the
    same posix_spawn + wait4 (so neither side pays for the switch); ``setup`` runs
    in it first, still as root. It ends when its request pipe closes, also when this
    process dies."""

    def __init__(self, uid: int, gid: int, setup: Optional[Callable[[], None]] = None) -> None:
        req_r, self._req = os.pipe()
        self._ans, ans_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                for fd in map(int, os.listdir("/proc/self/fd")):
                    if fd > 2 and fd not in (req_r, ans_w):
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                with os.fdopen(req_r) as req, os.fdopen(ans_w, "w") as ans:
                    try:
                        if setup:
                            setup()
                        os.setgroups([])
                        os.setgid(gid)
                        os.setuid(uid)
                    except OSError as e:
                        ans.write(json.dumps(f"runner setup: {e}") + "\n")
                        ans.flush()
                        return      # through the finally: os._exit
                    for line in req:
                        env, argv = json.loads(line)
                        try:
                            t = spawn_time(argv, env)[0]
                        except BenchError as e:
                            t = str(e)
                        ans.write(json.dumps(t) + "\n")
                        ans.flush()
            except BaseException as e:
                # Tell the parent (its next readline), not a traceback on the terminal.
                try:
                    os.write(ans_w, (json.dumps(f"the runner failed: {e!r}") + "\n").encode())
                except OSError:
                    pass
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(ans_w)
        self._reader = os.fdopen(self._ans)
        # A no-op first, so that a failed setup shows here, not as a figure's time.
        os.write(self._req, (json.dumps([dict(os.environ), ["/bin/true"]]) + "\n").encode())
        first = json.loads(self._reader.readline() or '"the runner died"')
        self.setup_error = first if isinstance(first, str) else ""

    def run(self, argv: list[str], env: dict) -> float:
        os.write(self._req, (json.dumps([env, argv]) + "\n").encode())
        t = json.loads(self._reader.readline() or '"the runner died"')
        if isinstance(t, str):
            raise BenchError(t)
        return t

    def close(self) -> None:
        os.close(self._req)
        self._reader.close()
        os.waitpid(self.pid, 0)


def end_all(pids: list[int]) -> None:
    """Kill and reap the processes this bench started, with SIGINT and SIGTERM held
    off so that a second Ctrl-C cannot leave some of them behind."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in pids:
            try:
                os.waitpid(p, 0)
            except ChildProcessError:
                pass
        pids.clear()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ----------------------------------------------------------------- the context

class Ctx:
    def __init__(self, python: str, pairs: int, user: Optional[str], tmp: str) -> None:
        self.python = python
        self.idrun = str(Path(python).parent / "idrun")
        self.pairs = pairs
        self.tmp = tmp
        self.true = shutil.which("true") or "/bin/true"
        self.unshare = shutil.which("unshare") or "/usr/bin/unshare"
        self.root = os.geteuid() == 0
        self.pw = pwd.getpwnam(user) if user else None
        self.launch = [self.idrun, "--uidmap", "0:0:1", "--", self.true]
        self._tree: Optional[tuple[str, dict]] = None

    def tree(self) -> tuple[str, dict]:
        """A world-readable, compiled copy of this tree's src and the .deb's launcher,
        and an environment for /usr/bin/python3 (the unprivileged user cannot read
        root's interpreter or venv; both sides of 1b/1c/3 run the same copy)."""
        if self._tree is None:
            top = Path(self.tmp) / "tree"
            top.mkdir()
            shutil.copytree(ROOT / "src", top / "src",
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            shutil.copy(ROOT / "debian" / "idrun.launcher", top / "idrun")
            subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(top / "src")],
                           check=True)
            for d, _, files in os.walk(top):
                os.chmod(d, 0o755)
                for f in files:
                    os.chmod(os.path.join(d, f), 0o644)
            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(top / "src"), "LC_ALL": "C.UTF-8",
                   "HOME": self.pw.pw_dir if self.pw else "/"}
            self._tree = (str(top / "idrun"), env)
        return self._tree

    def system_click(self) -> bool:
        return os.path.exists("/usr/bin/python3") and subprocess.run(
            ["/usr/bin/python3", "-c", "import click"], capture_output=True).returncode == 0


# ----------------------------------------------------------------- the figures

def fig_1a(c: Ctx, f: Figure) -> Result:
    pairs = run_pairs(timed(c.launch), timed([c.python, "-c", "pass"]), c.pairs)
    return ratio_result(f, pairs, "idrun --uidmap 0:0:1 -- true", "python -c pass")


def fig_1b(c: Ctx, f: Figure) -> Result:
    if not c.system_click():
        return skip(f, "/usr/bin/python3 lacks click (apt-get install python3-click)")
    launcher, env = c.tree()
    owner = subprocess.run(["dpkg-query", "-S", "/usr/bin/idrun"], capture_output=True,
                           text=True)
    if owner.returncode == 0 and owner.stdout.startswith("idrun:"):
        argv, note = ["/usr/bin/idrun"], "the installed package's /usr/bin/idrun"
        env = {k: v for k, v in env.items() if k != "PYTHONPATH"}    # the package's own idrun
    else:
        argv, note = ["/usr/bin/python3", launcher], "debian/idrun.launcher over this tree"
    pairs = run_pairs(timed([*argv, "--uidmap", "0:0:1", "--", c.true], env),
                      timed(["/usr/bin/python3", "-c", "pass"], env), c.pairs)
    return ratio_result(f, pairs, "launcher --uidmap 0:0:1 -- true", "/usr/bin/python3 -c pass",
                        note)


def _subid_lines(c: Ctx) -> dict:
    """The unprivileged user's own lines of /etc/subuid and /etc/subgid."""
    assert c.pw is not None
    return {k: "".join(ln for ln in Path(f"/etc/sub{k}").read_text().splitlines(True)
                       if ln.split(":")[0] in (c.pw.pw_name, str(c.pw.pw_uid)))
            for k in ("uid", "gid")}


def _needs_user(c: Ctx) -> str:
    if c.pw is None:
        return "needs a user with sub-ids (--user NAME; idrun-test does not exist)"
    if not c.system_click():
        return "/usr/bin/python3 lacks click (apt-get install python3-click)"
    lines = _subid_lines(c)
    if not lines["uid"] or not lines["gid"]:
        return f"{c.pw.pw_name} has no lines in /etc/subuid and /etc/subgid"
    return ""


def fig_1c(c: Ctx, f: Figure) -> Result:
    why = _needs_user(c)
    if why:
        return skip(f, why)
    launcher, env = c.tree()
    rootless = ["/usr/bin/python3", launcher, "--uidmap", "0:1:1000", "--", c.true]
    root = ["/usr/bin/python3", launcher, "--uidmap", "0:100000:1000", "--", c.true]
    runner = AsUser(c.pw.pw_uid, c.pw.pw_gid)
    try:
        if runner.setup_error:
            raise BenchError(runner.setup_error)
        pairs = run_pairs(lambda: runner.run(rootless, env), timed(root, env), c.pairs)
    finally:
        runner.close()
    return ratio_result(f, pairs, f"as {c.pw.pw_name}: --uidmap 0:1:1000 -- true",
                        "root: --uidmap 0:100000:1000 -- true")


API_LOOP = """\
import json, subprocess, sys, time
import idrun
n, true, unshare = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def api():
    t = time.perf_counter()
    rc = idrun.run([true], uidmap=['0:0:1']).returncode
    d = time.perf_counter() - t
    assert rc == 0, rc
    return d
def sub():
    t = time.perf_counter()
    rc = subprocess.run([unshare, '-U', '-r', true]).returncode
    d = time.perf_counter() - t
    assert rc == 0, rc
    return d
for _ in range(3):
    api(), sub()
pairs = []
for i in range(n):
    if i % 2 == 0:
        x = api(); y = sub()
    else:
        y = sub(); x = api()
    pairs.append((x, y))
print(json.dumps(pairs))
"""


def fig_2(c: Ctx, f: Figure) -> Result:
    # Both sides in one process of their own (the API's caller is the child's
    # parent): this one holds runners and other state a caller would not have.
    out = subprocess.run([c.python, "-c", API_LOOP, str(c.pairs * 2), c.true, c.unshare],
                         capture_output=True, text=True)
    if out.returncode:
        raise BenchError(f"the API loop failed: {out.stderr.strip()[-500:]}")
    pairs = [tuple(p) for p in json.loads(out.stdout)]
    return ratio_result(f, pairs, "idrun.run(['true'], uidmap=['0:0:1'])",
                        "subprocess.run(['unshare','-U','-r','true'])")


def make_subid_file(path: Path, owner: str, nlines: int, keep: str = "") -> list[str]:
    """A sub-id file of ``nlines`` lines: generated users, ``owner``'s line first, the
    real lines ``keep`` last (where useradd appends a new user). Returns 300 '+'
    values over the owner's first 300 ids (340 ranges with the rest of a map)."""
    kept = keep.splitlines()
    lines = [f"{owner if i == 0 else f'user{i}'}:{1000000 + i * 1000}:1000"
             for i in range(max(0, nlines - len(kept)))]
    path.write_text("\n".join(lines + kept) + "\n")
    path.chmod(0o644)
    return [f"--uidmap=+{i}:@{1000000 + i}:1" for i in range(300)]


def _bind_over(pairs: list[tuple[str, str]]) -> Callable[[], None]:
    """A setup for AsUser: its own mount namespace, private from /, where each SRC
    covers DST (the host's files and mounts are untouched)."""
    def setup() -> None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        clone_newns, ms_rec, ms_private, ms_bind = 0x20000, 0x4000, 1 << 18, 0x1000
        if libc.unshare(clone_newns) or libc.mount(None, b"/", None, ms_rec | ms_private,
                                                   None):
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) or making / private")
        for src, dst in pairs:
            if libc.mount(src.encode(), dst.encode(), None, ms_bind, None):
                raise OSError(ctypes.get_errno(), f"bind {src} over {dst}")
    return setup


def fig_3(c: Ctx, f: Figure) -> Result:
    why = _needs_user(c)
    if why:
        return skip(f, why)
    launcher, env = c.tree()
    real = _subid_lines(c)
    runners: dict[int, AsUser] = {}
    try:
        for n in (100000, 10):
            binds = []
            for k in ("uid", "gid"):
                p = Path(c.tmp) / f"etc-sub{k}-{n}"
                make_subid_file(p, "nobody-else", n, keep=real[k])
                binds.append((str(p), f"/etc/sub{k}"))
            runners[n] = AsUser(c.pw.pw_uid, c.pw.pw_gid, _bind_over(binds))
            if runners[n].setup_error:
                raise BenchError(runners[n].setup_error)
        launch = ["/usr/bin/python3", launcher, "--uidmap", "0:1:1000", "--", c.true]
        pairs = run_pairs(lambda: runners[100000].run(launch, env),
                          lambda: runners[10].run(launch, env), c.pairs)
    finally:
        for r in runners.values():
            r.close()
    return ratio_result(f, pairs, f"as {c.pw.pw_name}, 100 000 lines", "10 lines")


def fig_3m(c: Ctx, f: Figure) -> Result:
    files = {}
    for n in (100000, 10):
        files[n] = Path(c.tmp) / f"sub-map-{n}"
        make_subid_file(files[n], "1000", n)
    m = [c.idrun, "map", "--json", "--rootless", "--caller", "1000:1000", "--uidmap", "0:1:1000"]
    big = [*m, "--subuid-file", str(files[100000]), "--subgid-file", str(files[100000])]
    small = [*m, "--subuid-file", str(files[10]), "--subgid-file", str(files[10])]
    pairs = run_pairs(timed(big), timed(small), c.pairs)
    return ratio_result(f, pairs, "idrun map --rootless, 100 000 lines", "10 lines")


def _containers_start() -> Optional[int]:
    start = None
    for k in ("uid", "gid"):
        try:
            with open(f"/etc/sub{k}") as fh:
                found = [int(ln.split(":")[1]) for ln in fh if ln.startswith("containers:")]
        except (OSError, ValueError, IndexError):
            found = []
        if not found:
            return None
        start = found[0] if start is None else start
    return start


class Crowd:
    """Processes this bench starts and always ends: each has the read end of a pipe
    only this process writes to as its stdin, so it also ends (EOF) when this
    process dies, however; ``close`` kills and reaps them."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.pids: list[int] = []

    def spawn(self, argv: list[str], env: Optional[dict] = None) -> None:
        self.pids.append(os.posix_spawn(
            argv[0], argv, env if env is not None else os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, self._r, 0), *_DEVNULL_OUT]))

    def close(self) -> None:
        end_all(self.pids)
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def _auto_pairs(c: Ctx, f: Figure, fill: Callable[[Crowd, dict], None], what: str) -> Result:
    start = _containers_start()
    if start is None:
        return skip(f, "no range of the user containers in /etc/subuid and /etc/subgid "
                       "(e.g. containers:2147483647:2147483648)")
    # A private lease registry: the bench's leases neither meet nor leave real ones.
    env = dict(os.environ, IDRUN_LEASE_DIR=os.path.join(c.tmp, f"leases-{f.fid}"))
    auto = [c.idrun, "--userns", "auto", "--", c.true]
    plain = [c.idrun, "--uidmap", f"0:{start}:1024", "--", c.true]
    crowd = Crowd()
    try:
        fill(crowd, env)
        pairs = run_pairs(timed(auto, env), timed(plain, env), c.pairs)
    finally:
        crowd.close()
    return ratio_result(f, pairs, f"idrun --userns auto -- true, {what}",
                        f"idrun --uidmap 0:{start}:1024 -- true")


def fig_4a(c: Ctx, f: Figure) -> Result:
    cat = shutil.which("cat") or "/bin/cat"

    def fill(crowd: Crowd, env: dict) -> None:
        for _ in range(5000):
            crowd.spawn([cat])
    return _auto_pairs(c, f, fill, "5 000 processes")


def fig_4b(c: Ctx, f: Figure) -> Result:
    cat = shutil.which("cat") or "/bin/cat"

    def fill(crowd: Crowd, env: dict) -> None:
        for _ in range(100):
            crowd.spawn([c.idrun, "--userns", "auto", "--", cat], env)
        own = _ns_of(os.getpid())
        deadline = time.monotonic() + 120
        while any(_ns_of(p) == own for p in crowd.pids):
            if time.monotonic() > deadline:
                raise BenchError("100 --userns auto holders did not all start in 120 s")
            time.sleep(0.1)
        leases = os.listdir(env["IDRUN_LEASE_DIR"])
        if len(leases) < 100:
            raise BenchError(f"100 holders started but {len(leases)} entries in the registry")
    return _auto_pairs(c, f, fill, "100 leases held")


def _ns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/user")
    except OSError:
        return ""


def fig_5a(c: Ctx, f: Figure) -> Result:
    pid = [c.idrun, "--uidmap", "0:0:1", "--pid", "--", c.true]
    pairs = run_pairs(timed(pid), timed(c.launch), c.pairs)
    return ratio_result(f, pairs, "idrun --uidmap 0:0:1 --pid -- true", "without --pid")


def fig_5b(c: Ctx, f: Figure) -> Result:
    vols = []
    for i in range(10):
        for side in ("src", "dst"):
            os.mkdir(os.path.join(c.tmp, f"vol-{side}{i}"))
        vols += ["--volume", f"{c.tmp}/vol-src{i}:{c.tmp}/vol-dst{i}:idmap"]
    plain = [c.idrun, "--uidmap", "0:100000:65536", "--user", "1000:1000", "--", c.true]
    mapped = [*plain[:-2], *vols, "--", c.true]
    pairs = run_pairs(timed(mapped), timed(plain), c.pairs)
    return ratio_result(f, pairs, "idrun --uidmap 0:100000:65536 … 10× -v SRC:DST:idmap",
                        "without the volumes")


def fig_5c(c: Ctx, f: Figure) -> Result:
    subuid = Path(c.tmp) / "sub-340"
    values = make_subid_file(subuid, "1000", 10)
    m = [c.idrun, "map", "--json", "--rootless", "--caller", "1000:1000",
         "--subuid-file", str(subuid), "--subgid-file", str(subuid)]
    pairs = run_pairs(timed([*m, *values]), timed([*m, "--uidmap", "0:1:1"]), c.pairs)
    return ratio_result(f, pairs, "idrun map --json --rootless, 300 '+' values",
                        "--uidmap 0:1:1")


RSS_PROBE = """\
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss if status == 0 else -1)
"""


def peak_rss(c: Ctx, argv: list[str]) -> float:
    """Peak RSS (MiB) of argv, started by a small interpreter of its own.

    The kernel counts the high-water mark of the memory a process had before its
    exec into its peak (ru_maxrss): spawned from here, every command would show
    this process's size. The probe (python -S, no site) is smaller than any
    command measured, so its own mark drops out of the maximum."""
    out = subprocess.run([c.python, "-S", "-c", RSS_PROBE, *argv], capture_output=True,
                         text=True)
    if out.returncode or int(out.stdout) < 0:
        raise BenchError(f"{' '.join(argv)} failed under the RSS probe: {out.stderr.strip()}")
    return int(out.stdout) / 1024


def fig_5d(c: Ctx, f: Figure) -> Result:
    rss_launch = max(peak_rss(c, c.launch) for _ in range(5))
    rss_click = max(peak_rss(c, [c.python, "-c", "import click"]) for _ in range(5))
    probe = max(peak_rss(c, ["/bin/true"]) for _ in range(3))
    delta = rss_launch - rss_click
    return Result(f, verdict(f, delta), delta, "", f"launch {rss_launch:.2f} MiB",
                  f"python -c 'import click' {rss_click:.2f} MiB",
                  f"max of 5 runs each; the probe's own floor {probe:.2f} MiB")


def fig_5e(c: Ctx, f: Figure) -> Result:
    tree = os.path.join(c.tmp, "files")
    os.mkdir(tree)
    for d in range(100):
        os.mkdir(f"{tree}/d{d}")
        for i in range(999):
            open(f"{tree}/d{d}/f{i}", "w").close()
    ns = ["--uidmap", "0:0:1"] if c.root else ["-r"]
    vol = f"{tree}:/mnt:idmap" if c.root else f"{tree}:/mnt"
    argv = [c.idrun, "map", *ns, "-v", vol, "--files=100000"]
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if out.returncode or "100000 entries" not in out.stdout:
            raise BenchError(f"--files failed: {out.stderr.strip()}")
    took = statistics.median(times)
    return Result(f, verdict(f, took), took, "", f"{' '.join(argv[1:4])} … {took:.3f} s", "",
                  "median of 5 runs")


def fig_r1(c: Ctx, f: Figure) -> Result:
    pairs = run_pairs(timed(c.launch), timed([c.python, "-c", "import click"]), c.pairs)
    return ratio_result(f, pairs, "idrun --uidmap 0:0:1 -- true", "python -c 'import click'")


def fig_r2(c: Ctx, f: Figure) -> Result:
    pairs = run_pairs(timed(c.launch), timed([c.unshare, "-U", "-r", c.true]), c.pairs)
    return ratio_result(f, pairs, "idrun --uidmap 0:0:1 -- true", "unshare -U -r true")


RUN = {"1a": fig_1a, "1b": fig_1b, "1c": fig_1c, "2": fig_2, "3": fig_3, "3m": fig_3m,
       "4a": fig_4a, "4b": fig_4b, "5a": fig_5a, "5b": fig_5b, "5c": fig_5c, "5d": fig_5d,
       "5e": fig_5e, "r1": fig_r1, "r2": fig_r2}
ANY_USER = {"3m", "5c", "5e"}     # the rest launch as root or switch users


def importtime(python: str) -> str:
    """The 15 costliest imports of the launch path, cumulative (python -X importtime)."""
    res = subprocess.run([python, "-X", "importtime", "-c", "import idrun.console"],
                         capture_output=True, text=True)
    rows = []
    for line in res.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].strip()))
    rows.sort(reverse=True)
    return "\n".join(f"    {us / 1000:7.2f} ms  {name}" for us, name in rows[:15])


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _on_term(signum: int, frame: object) -> None:
    # SIGTERM ends the bench as Ctrl-C does: through every finally, so the
    # processes it started are killed and reaped and its files removed.
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--only", default="",
                    help="figures to run, e.g. 1a,3 (1 is 1a,1b,1c; 3 is 3 and 3m)")
    ap.add_argument("--pairs", type=int, default=40, help="A/B pairs per figure (40)")
    ap.add_argument("--format", choices=("text", "md"), default="text",
                    help="md: the README's table on stdout, progress on stderr")
    ap.add_argument("--user", default=None, help="a user with sub-ids for 1c and 3 "
                    "(default idrun-test when it exists)")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter with idrun installed (its idrun script is used)")
    ap.add_argument("--output", default=None, metavar="FILE",
                    help="also write the closing report (the md table) to FILE")
    ap.add_argument("--importtime", action="store_true",
                    help="also print the launch path's costliest imports")
    args = ap.parse_args(argv)
    if args.pairs < 2:
        ap.error("--pairs must be at least 2 (a spread needs two pairs)")
    try:
        figures = select(args.only)
    except BenchError as e:
        ap.error(str(e))
    idrun = Path(args.python).parent / "idrun"
    if not idrun.exists():
        ap.error(f"no idrun script next to {args.python}")
    user = args.user or ("idrun-test" if _user_exists("idrun-test") else None)
    if user and not _user_exists(user):
        ap.error(f"no user {user!r}")
    md = args.format == "md"
    out = sys.stderr if md else sys.stdout

    def log(s: str) -> None:
        print(s, file=out, flush=True)
    u = os.uname()
    head = (f"idrun benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}: {u.nodename}, "
            f"{u.sysname} {u.release}, {os.cpu_count()} cpus, Python "
            f"{sys.version.split()[0]} ({args.python}), {args.pairs} alternating pairs a "
            "figure, posix_spawn + wait4, ratio = median of the pair ratios")
    log(head)
    signal.signal(signal.SIGTERM, _on_term)
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="idrun-bench-") as tmp:
            os.chmod(tmp, 0o755)    # the unprivileged user reads the tree copy and files
            c = Ctx(args.python, args.pairs, user, tmp)
            for f in figures:
                if not c.root and f.fid not in ANY_USER:
                    r = skip(f, "needs root")
                else:
                    r = RUN[f.fid](c, f)
                results.append(r)
                log(text_block(r))
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    if args.importtime:
        log("[imports] the launch path's costliest imports, cumulative (python -X importtime):")
        log(importtime(args.python))
    report = [head, "", md_table(results)] if md else []
    report.append(summary(results))
    print("\n".join(report))
    if args.output:
        Path(args.output).write_text("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
