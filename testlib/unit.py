"""What tests/ adds to testlib: running this checkout's idrun, and the record of the
unprivileged test user (tests/conftest.py's ``testuser`` fixture builds it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
TEST_USER = os.environ.get("IDRUN_TEST_USER", "idrun-test")
TIMEOUT = 60


def is_root() -> bool:
    return os.geteuid() == 0


def idrun_argv() -> list[str]:
    """idrun as the current (root) user: this interpreter, this checkout."""
    return [sys.executable, "-m", "idrun"]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", TIMEOUT)
    return subprocess.run(argv, **kw)


class TestUser(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str
    python: str          # the venv's interpreter (Debian's /usr/bin/python3)
    idrun: str           # the venv's idrun entry point
    subuid: tuple[int, int]  # first delegated (start, count)
    subgid: tuple[int, int]

    def argv(self, *cmd: str, env: dict[str, str] | None = None,
             setpriv: tuple[str, ...] = ()) -> list[str]:
        """``cmd`` as this user, through setpriv (no PAM, no session), clean environment."""
        envs = [f"{k}={v}" for k, v in {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, "USER": self.name,
            "LOGNAME": self.name, "LANG": "C.UTF-8", **(env or {})}.items()]
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                *setpriv, "--", "env", "-i", *envs, *cmd]

    def run(self, *cmd: str, env: dict[str, str] | None = None,
            setpriv: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
        kw.setdefault("cwd", "/")
        return run(self.argv(*cmd, env=env, setpriv=setpriv), **kw)

    def idrun_run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(self.idrun, *args, **kw)


def first_range(path: str, name: str, uid: int) -> tuple[int, int]:
    with open(path) as f:
        for line in f:
            fields = line.strip().split(":")
            if len(fields) == 3 and fields[0] in (name, str(uid)):
                return int(fields[1]), int(fields[2])
    raise AssertionError(f"{path} has no line for {name}")
