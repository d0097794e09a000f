"""Bad input through the real launcher: exit 125, one line, no traceback, nothing started.

Each case asks idrun to run a command that would leave a marker file; the
marker must not exist afterwards. As root the launcher is the real one; the
rootless cases resolve against sub-id files the test writes (``idrun map
--rootless --caller``), since their refusal happens before any process exists.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

IDRUN = str(Path(sys.executable).parent / "idrun")
BIG = [f"--uidmap={2 * i}:{2 * i}:1" for i in range(341)]
WIDE = [f"--uidmap={4000000000 + 2 * i}:{4000000000 + 2 * i}:1" for i in range(200)]

LAUNCH_CASES = [
    (["--uidmap", "a:0"], 'unknown flag "a"'),
    (["--uidmap", "0:abc"], "not a decimal"),
    (["--uidmap", "0:0x10"], "not a decimal"),
    (["--uidmap", "0:-1"], "not a decimal"),
    (["--uidmap", "-0:1"], 'unknown flag "-"'),
    (["--uidmap", "0: 1"], "not a decimal"),
    (["--uidmap", "x0:1"], 'unknown flag "x"'),
    (["--uidmap", "+ug:1"], "not followed by a container id"),
    (["--uidmap", "0:1:2:3"], "4 fields"),
    (["--uidmap", "0:1:2:3:4"], "5 fields"),
    (["--uidmap", ""], "no id at all"),
    (["--uidmap", "0:1000:0"], "amount is 0"),
    (["--uidmap", "0:4294967295"], "4294967295"),
    (["--uidmap", "0:4294967290:10"], "4294967295"),
    (["--uidmap", "0:4294967296"], "larger than 4294967295"),
    (["--uidmap", "0:0:10", "--uidmap", "5:100:1"], "both map container uids 5"),
    (["--uidmap", "0:0:10", "--uidmap", "20:5:1"], "both map host uids 5"),
    (BIG, "341 lines"),
    (WIDE, "bytes"),
    (["--userns", "keep-id", "--uidmap", "0:0:1"], "cannot be combined"),
    (["--userns", "sideways"], "unknown --userns mode"),
    (["--userns", "auto:bogus=1"], 'unknown option "bogus"'),
    (["--uidmap", "0:0:10", "--user", "50"], "container uid 50"),
    (["--uidmap", "0:0:10", "--user", "x"], "is not a decimal number"),
    (["--uidmap", "0:0:10", "--frobnicate"], "No such option"),
    (["--uidmap", "1000:501", "--uidmap", "1001:502"], "does not know which uid"),
    # issue 11: checked before anything starts, not by the kernel or never
    (["-r", "--mount-proc"], "--mount-proc needs --pid"),
    (["-r", "--json"], "--json only changes what --dry-run prints"),
    (["-r", "--preserve-fds", "5"], "descriptor 3 is not open"),
    (["-r", "--preserve-fds", "99999999999999999999"], "larger than"),
    (["-r", "--preserve-fds", "20000000"], "open-files limit"),
    (["-r", "--preserve-fds", "-1"], "not a decimal number"),
    (["-r", "--hostname", "h" * 70], "at most 64"),
    (["-r", "--hostname", ""], "--hostname is empty"),
    (["--uidmap", "0:" + "9" * 5000 + ":1"], "5000 characters"),
    (["-r", "--user", "9" * 5000], "larger than 4294967294"),
    # issue 19: refused like -v "", not taken as "not given"
    (["-r", "--rootfs", ""], "DIR is empty"),
    (["-r", "-w", ""], "the directory is empty"),
    (["-r", "-v", ""], "has no DST"),
]


@pytest.mark.parametrize("args,match", LAUNCH_CASES,
                         ids=[" ".join(a)[:40] for a, _ in LAUNCH_CASES])
def test_bad_launch_input(args, match, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the launcher's rootful path needs root")
    marker = tmp_path / "started"
    res = subprocess.run([IDRUN, *args, "--", "touch", str(marker)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 125, (res.stdout, res.stderr)
    assert match in res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("idrun: error: "), err
    assert "Traceback" not in res.stderr
    assert not marker.exists(), "the command ran despite the error"


@pytest.mark.parametrize("path", ["/dev/zero", "fifo", "/"])
def test_subid_file_must_be_regular(path, tmp_path):
    """Issue 11: /dev/zero or a FIFO hung or grew memory (the API's subuid_file= too)."""
    from idrun import IdrunError
    from idrun.api import plan_for
    if path == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    res = subprocess.run([IDRUN, "map", "--rootless", "-r", "--subuid-file", path],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 125 and "is not a regular file" in res.stderr, res.stderr
    with pytest.raises(IdrunError, match="is not a regular file"):
        plan_for("0:0:1", rootless=True, subuid_file=path)


def test_directory_as_command_and_help_word(tmp_path):
    res = subprocess.run([IDRUN, "-r", "--", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 126
    assert "is a directory" in res.stderr and "chmod" not in res.stderr
    res = subprocess.run([IDRUN, "help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("Usage: idrun [OPTIONS]")
    res = subprocess.run([IDRUN, "help", "map"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("Usage: idrun map")
    # an unknown word is an error naming the commands, not the launcher's help
    res = subprocess.run([IDRUN, "help", "bogus"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 125 and res.stdout == "", res.stdout
    assert res.stderr.count("\n") == 1 and "no command \"bogus\"" in res.stderr
    assert all(sub in res.stderr for sub in ("map", "check", "show")), res.stderr
    res = subprocess.run([IDRUN, "--frobnicate"], capture_output=True, text=True, timeout=60)
    assert res.stderr.strip().endswith("; hint: see 'idrun --help'")
    assert ".;" not in res.stderr


def test_version_from_a_source_tree():
    """Issue 11: `python -m idrun --version` from a source tree raised RuntimeError."""
    src = Path(__file__).resolve().parents[1] / "src"
    res = subprocess.run(["/usr/bin/python3", "-m", "idrun", "--version"], cwd=src,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    if res.returncode and "No module named 'click'" in res.stderr:
        pytest.skip("click is not installed for /usr/bin/python3")
    assert res.returncode == 0 and res.stdout.startswith("idrun "), res.stderr


def _subid(tmp_path: Path, text: str) -> str:
    p = tmp_path / "subids"
    p.write_text(text)
    return str(p)


ROOTLESS_CASES = [
    ("", ["--uidmap", "0:1:10"], "does not exist"),
    ("1000:100000:65536\n", ["--uidmap", "0:@200000:1"], "host uid 200000 is not delegated"),
    ("1000:100000:65536\n", ["--uidmap", "0:0:65538"], "beyond the 65537 ids"),
    ("1000:100000:10\n1000:100005:10\n", ["--uidmap", "0:0:1"], "line 2 (100005:10) overlaps"),
    ("1000:990:20\n", ["--uidmap", "0:0:1"], "contains your own uid 1000"),
    ("1000:100000\n", ["--uidmap", "0:0:1"], "line 1"),
    ("1000:0x1000:10\n", ["--uidmap", "0:0:1"], "octal"),
    ("1000:100000:65536\n", ["--uidmap", "0:0:1", "--setgroups", "allow"], "setgroups"),
    ("1000:100000:65536\n", ["--userns", "nomap", "--user", "70000"], "container uid 70000"),
    ("1000:100000:65536\n", ["--userns", "auto:size=70000"], "free sizes 65536"),
    # issue 19: 5000 digits went to int() and ended in a ValueError traceback
    ("1000:100000:65536\n", ["--userns", "auto:size=" + "1" * 5000], "is not a decimal id"),
]


@pytest.mark.parametrize("text,args,match", ROOTLESS_CASES)
def test_bad_rootless_input(text, args, match, tmp_path):
    f = _subid(tmp_path, text) if text else str(tmp_path / "missing")
    res = subprocess.run([IDRUN, "map", "--rootless", "--caller", "1000:1000", "--subuid-file",
                          f, "--subgid-file", f, *args], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 125, (res.stdout, res.stderr)
    assert match in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_check_user_with_5000_digits_is_one_line():
    """Issue 19: `idrun check --user <5000 digits>` ended in a ValueError traceback."""
    res = subprocess.run([IDRUN, "check", "--user", "1" * 5000], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 125, (res.stdout, res.stderr)
    assert "no such user" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_user_env_is_not_trusted_for_subids(tmp_path):
    """$USER naming someone else must not select their ranges."""
    f = _subid(tmp_path, "mallory:100000:65536\n")
    env = dict(os.environ, USER="mallory", LOGNAME="mallory")
    res = subprocess.run([IDRUN, "map", "--rootless", "--caller", "1000:1000", "--subuid-file",
                          f, "--subgid-file", f, "--uidmap", "0:1:10"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 125 and "beyond" in res.stderr


def test_warns_when_the_terminal_is_not_reachable_inside():
    """Issue 11: with the caller's uid unmapped, the terminal shows as nobody inside."""
    if os.geteuid() != 0:
        pytest.skip("the launcher's rootful path needs root")
    master, slave = os.openpty()
    try:
        os.chmod(os.ttyname(slave), 0o620)
        res = subprocess.run([IDRUN, "--uidmap", "0:100000:1", "--", "true"], stdin=slave,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "warning: stdin is /dev/pts/" in res.stderr and "not map" in res.stderr
        res = subprocess.run([IDRUN, "--uidmap", "0:0:1", "--", "true"], stdin=slave,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "warning" not in res.stderr, res.stderr
    finally:
        os.close(slave)
        os.close(master)


def test_e2big_hint_is_about_the_argument_limit():
    """Issue 11: E2BIG got the hint 'the container user may lack permission'."""
    import errno
    from idrun.system.diagnose import exec_error
    e = exec_error(OSError(errno.E2BIG, os.strerror(errno.E2BIG)), "true", "/usr/bin/true")
    assert e.exit_status == 126
    assert "ARG_MAX" in str(e) and "permission" not in str(e)


SIGINT_IN_IMPORTS = r"""
import builtins, os, signal, sys
real = builtins.__import__
def hook(name, *a, **kw):
    # the plain launch's first heavy import (click is not loaded by a plain launch)
    if name.endswith("prelaunch"):
        builtins.__import__ = real
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *a, **kw)
builtins.__import__ = hook
sys.argv = ["idrun", "-r", "--", "touch", sys.argv[1]]
from idrun.console import main
raise SystemExit(main())
"""


def test_sigint_during_startup_imports_is_quiet(tmp_path):
    """Issue 19: a ^C while idrun loads its modules printed a KeyboardInterrupt traceback.
    The SIGINT is sent from inside the import of the prelaunch step, so it lands there every time;
    idrun must end as a death by SIGINT (130 in a shell), quietly, with nothing run."""
    marker = tmp_path / "started"
    res = subprocess.run([sys.executable, "-c", SIGINT_IN_IMPORTS, str(marker)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == -2, (res.returncode, res.stderr)
    assert res.stderr == "" and not marker.exists()
    # A SIGINT the caller ignores stays ignored (nohup, `&` in a script): no change.
    res = subprocess.run([sys.executable, "-c", SIGINT_IN_IMPORTS, str(marker)],
                         capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: __import__("signal").signal(2, 1))
    assert res.returncode != -2 and "Traceback" not in res.stderr
