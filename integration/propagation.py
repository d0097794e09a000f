"""Run a command as on a host whose / has a given propagation, and record leaked mounts.

Usage (as root): python3 propagation.py MODE LEAKS -- COMMAND...

A systemd host has / *shared*; the machines the suite runs on usually have it private,
and a mount test that only ran there has not tested the mount. This program makes a
mount namespace of its own (so nothing here touches the real host) whose / is

  private  every mount private (what unshare -m --propagation private gives)
  rshared  every mount shared, as systemd leaves it
  rslave   every mount a slave of a shared peer group (a namespace made by
           `unshare -m --propagation slave` on a systemd host)

then runs COMMAND (idrun) in it. That namespace plays the host: any mount that appears
in it while or after COMMAND runs came out of the launch. The mounts that appeared are
appended to the file LEAKS, one per line, and the status of COMMAND is passed on
(128+N for signal N). The test reads /proc/<this pid>/mountinfo to look during the run.
"""
import ctypes
import os
import subprocess
import sys

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        sys.exit(f"propagation.py: {what}: {os.strerror(err)}")


def _unshare() -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")


def _propagate(flag: int) -> None:
    _check(_libc.mount(None, b"/", None, MS_REC | flag, None), f"mount --make-r* / ({flag:#x})")


def mounts(path: str = "/proc/self/mountinfo") -> set[str]:
    """Mounts as 'root mountpoint fstype source' (ids left out: they are not stable)."""
    out = set()
    with open(path) as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            out.add(" ".join(fields[3:5] + fields[dash + 1:dash + 3]))
    return out


def main() -> int:
    mode, leaks = sys.argv[1], sys.argv[2]
    cmd = sys.argv[4:] if sys.argv[3] == "--" else sys.argv[3:]
    _unshare()
    _propagate(MS_PRIVATE)
    if mode in ("rshared", "rslave"):
        _propagate(MS_SHARED)
    if mode == "rslave":
        _unshare()                      # a copy in the same peer groups ...
        _propagate(MS_SLAVE)            # ... made their slave
    elif mode not in ("private", "rshared"):
        sys.exit(f"propagation.py: unknown mode {mode!r}")
    before = mounts()
    status = subprocess.run(cmd).returncode
    new = sorted(mounts() - before)
    if new:
        with open(leaks, "a") as f:
            f.writelines(f"{' '.join(cmd)!r}: {m}\n" for m in new)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
