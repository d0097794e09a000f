"""Soak of ``--userns auto`` (issue 19): leases live as long as their ids, whatever
happens to the launchers.

40 rounds of 6 concurrent launches in plain, ``--fork`` and ``--pid`` modes; half of
the commands leave a background job that outlives them by a random delay, and some
launchers get SIGKILL or SIGTERM at a random moment. While each round runs, a
monitor reads ``/proc/PID/uid_map`` and ``/proc/PID/ns/user`` of every live process of
the soak: no two live user namespaces may ever share a host uid. After each round
nothing of it may be left running (no orphan) and no launcher may hang; at the end
the registry holds no lease live on the soak's account.

Marked ``soak`` (registered in conftest): the host runs it in both passes, bounded to
about two minutes each; the VM guests, which run only ``kernel`` tests, do not. The
registry is private to the test (``IDRUN_LEASE_DIR``), as in test_auto.py; ids that
other suites' namespaces use are kept off by the process scan.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import testlib.integration as it

ROUNDS = 40
PER_ROUND = 6
MODES = ([], ["--fork"], ["--pid"])

pytestmark = pytest.mark.soak


def _soak_processes(token: str, own_ns: str) -> dict[str, set[tuple[int, int]]]:
    """user namespace -> host uid ranges, for every live process of the soak that is in
    a namespace with its maps written."""
    out: dict[str, set[tuple[int, int]]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() not in f.read():
                    continue
            ns = os.readlink(f"/proc/{pid}/ns/user")
            with open(f"/proc/{pid}/uid_map") as f:
                text = f.read()
        except OSError:
            continue
        if ns == own_ns or not text.strip():
            continue            # not unshared yet, or its maps are not written yet
        ranges = set()
        for line in text.splitlines():
            _, outside, count = (int(x) for x in line.split())
            ranges.add((outside, outside + count))
        out.setdefault(ns, set()).update(ranges)
    return out


def _clashes(seen: dict[str, set[tuple[int, int]]]) -> list[str]:
    items = list(seen.items())
    bad = []
    for i, (ns1, r1) in enumerate(items):
        for ns2, r2 in items[:i]:
            if any(a < d and c < b for a, b in r1 for c, d in r2):
                bad.append(f"{ns1} {sorted(r1)} and {ns2} {sorted(r2)}")
    return bad


class Monitor(threading.Thread):
    def __init__(self, token: str) -> None:
        super().__init__(daemon=True)
        self.token = token
        self.own_ns = os.readlink("/proc/self/ns/user")
        self.stop = threading.Event()
        self.clashes: list[str] = []
        self.samples = 0
        self.max_ns = 0

    def run(self) -> None:
        while not self.stop.is_set():
            seen = _soak_processes(self.token, self.own_ns)
            self.samples += 1
            self.max_ns = max(self.max_ns, len(seen))
            self.clashes += _clashes(seen)
            time.sleep(0.01)


def _alive_with(token: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def test_auto_soak(idrun):
    for kind in ("uid", "gid"):
        owner = it.Caller(-1, -1, "containers", (), True) if it.CALLER.privileged else it.CALLER
        if not it.read_subids(f"/etc/sub{kind}", owner):
            it.env_missing(f"no sub-{kind}s for --userns auto")
    base = tempfile.mkdtemp(prefix="idrun-soak-", dir="/tmp")
    env = dict(os.environ, IDRUN_LEASE_DIR=os.path.join(base, "leases"))
    rng = random.Random(int(os.environ.get("IDRUN_SOAK_SEED", str(time.time_ns()))))
    token = f"idrun-soak-{os.getpid()}-{rng.randrange(10**9)}"
    deadline = time.monotonic() + 240
    monitor = Monitor(token)
    monitor.start()
    stats = {"killed": 0, "jobs": 0, "mode": [0, 0, 0]}
    try:
        for rnd in range(ROUNDS):
            assert time.monotonic() < deadline, f"the soak took too long (round {rnd})"
            procs = []
            for i in range(PER_ROUND):
                # Staggered, so later launches start while earlier ones have ended and
                # left their jobs running: the case that reused a block.
                time.sleep(rng.uniform(0.0, 0.25))
                m = rng.randrange(3)
                stats["mode"][m] += 1
                run_for = rng.uniform(0.0, 0.3)
                script = f"sleep {run_for:.2f}"
                if rng.random() < 0.5:
                    stats["jobs"] += 1
                    job = f"sleep {run_for + rng.uniform(0.1, 0.8):.2f}"
                    # $0 carries the token, so the job is found as the soak's too.
                    script = (f"sh -c '{job}' {token}-job </dev/null >/dev/null 2>&1 & "
                              + script)
                procs.append(subprocess.Popen(
                    idrun.argv(["--userns", "auto", *MODES[m]], ["sh", "-c", script, token]),
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True, cwd="/"))
            for p in procs:
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.0, 0.15))
                    stats["killed"] += 1
                    p.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
            for p in procs:
                try:
                    _, err = p.communicate(timeout=it.TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    pytest.fail(f"round {rnd}: launcher {p.pid} hung")
                assert "Traceback" not in err, err
            # Every job ends by itself within a second; anything later is an orphan.
            assert it.wait_for(lambda: not _alive_with(token), 10), \
                f"round {rnd}: left running: {_alive_with(token)}"
            assert not monitor.clashes, monitor.clashes[:3]
    finally:
        monitor.stop.set()
        monitor.join(5)
        for pid in _alive_with(token):
            it.kill_quietly(pid)
    try:
        assert monitor.samples > ROUNDS and monitor.max_ns >= 2, \
            (monitor.samples, monitor.max_ns)        # the monitor really saw namespaces
        shown = json.loads(idrun.ok(["show", "--leases", "--json"], None, env=env))
        # Nothing of the soak runs any more, so no lease may be live on its account.
        # One may still be held by processes of other suites on this machine that run
        # with its ids (namespaces of another registry): holding too long is safe.
        for lease in shown["leases"]:
            assert not lease["owner_alive"] and lease["processes"], lease
            assert not set(lease["processes"]) & set(_alive_with(token)), lease
    finally:
        subprocess.run(["rm", "-rf", base], check=False)
    print(f"soak: {ROUNDS} rounds, {stats}, {monitor.samples} samples, "
          f"up to {monitor.max_ns} namespaces at once")
